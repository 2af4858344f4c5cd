// SPDX-License-Identifier: MIT
// The derived IDs every Perper SDK makes inside an execution.
#include "sdk/cpp/src/perper/agent/ids.h"

#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace perper::internal {
namespace {

using ::testing::MatchesRegex;

TEST(IdsTest, DerivedUuidIsTheFirst16BytesOfSha256AsAUuid) {
  // "Run-" + str(uuid.UUID(bytes=hashlib.sha256(b"e\n1").digest()[:16])), as the Python SDK
  // computes it.
  EXPECT_EQ("Run-" + DerivedUuid("e", 1), "Run-7093e4cd-5795-3d51-06df-e223eaa8f7c4");
}

TEST(IdsTest, DerivedUuidsDifferByExecutionAndCount) {
  std::set<std::string> seen;
  for (const char* execution : {"e", "f", "Add-1"}) {
    for (uint64_t n = 1; n <= 100; ++n) {
      std::string uuid = DerivedUuid(execution, n);
      EXPECT_THAT(uuid,
                  MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"));
      EXPECT_TRUE(seen.insert(uuid).second) << uuid;
    }
  }
  EXPECT_EQ(DerivedUuid("e", 7), DerivedUuid("e", 7));
}

TEST(IdsTest, OutsideAnExecutionIdsAreRandom) {
  bool derived = true;
  std::string a = NewId("Run", &derived);
  EXPECT_FALSE(derived);
  EXPECT_NE(a, NewId("Run"));
  EXPECT_THAT(a, MatchesRegex("Run-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"));
}

}  // namespace
}  // namespace perper::internal
