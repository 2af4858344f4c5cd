// SPDX-License-Identifier: MIT
// The `perper` inspection commands against each Fabric process of a cluster: every process sees
// everything, and `perper instances` says which slot and master hold each instance.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/key_slot.h"
#include "perper/storage/redis/redis_keys.h"
#include "tests/cluster/cluster_support.h"
#include "tests/integration/executions_helpers.h"
#include "tests/scaler/process_helpers.h"
#include "tests/support/fabric_fixture.h"
#include <nlohmann/json.hpp>

namespace perper::testing {
namespace {

using nlohmann::json;

constexpr int kInstances = 24;

class ClusterCliTest : public ClusterFabricsFixture {
 protected:
  // `perper ARGS --json --fabric <process i>`, parsed.
  json PerperJson(int i, std::vector<std::string> args) {
    std::vector<std::string> argv = {PERPER_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--json", "--fabric", setup_.fabric(i).address()});
    std::string out, err;
    int code = RunToCompletion(argv, {}, &out, &err);
    EXPECT_EQ(code, 0) << err;
    return code == 0 ? json::parse(out) : json();
  }
};

TEST_F(ClusterCliTest, EveryProcessListsEveryInstanceWithItsSlotAndMaster) {
  auto executions = grpc2::FabricExecutions::NewStub(setup_.channel(0));
  for (int n = 0; n < kInstances; ++n) {
    grpc::Status s =
        CreateExecution(*executions, absl::StrCat("Counter-", n), "Registry", "Counter", "Run", {});
    ASSERT_TRUE(s.ok()) << Describe(s);
  }
  std::set<std::string> masters;
  for (const auto& node : setup_.cluster().nodes()) masters.insert(node->address());

  for (int i = 0; i < setup_.fabric_count(); ++i) {
    SCOPED_TRACE(absl::StrCat("through Fabric process ", i));
    json rows = PerperJson(i, {"instances", "--agent", "Counter"});
    ASSERT_EQ(rows.size(), static_cast<size_t>(kInstances)) << rows.dump();
    std::set<std::string> nodes_used;
    for (const json& row : rows) {
      std::string instance = row["instance"];
      EXPECT_EQ(row["agent"], "Counter");
      ASSERT_TRUE(row.contains("slot")) << row.dump();
      EXPECT_EQ(row["slot"].get<int>(),
                storage::redis::KeySlot(storage::redis::InstanceTag(instance)))
          << instance;
      std::string node = row["node"];
      EXPECT_EQ(masters.count(node), 1u) << node;
      nodes_used.insert(node);
    }
    // 24 instances hashed over 3 masters land on more than one of them.
    EXPECT_GT(nodes_used.size(), 1u);
  }
}

TEST_F(ClusterCliTest, StreamsWrittenThroughOneProcessAreListedByEveryOther) {
  auto streams = grpc2::FabricStreams::NewStub(setup_.channel(0));
  for (const char* id : {"alpha", "beta"}) {
    grpc2::StreamsCreateRequest request;
    request.mutable_stream()->set_stream(id);
    request.set_ephemeral(false);
    google::protobuf::Empty empty;
    ASSERT_TRUE(streams->Create(Context().get(), request, &empty).ok()) << id;
    for (int key = 1; key <= 3; ++key) {
      grpc2::StreamsWriteItemRequest write;
      write.mutable_stream()->set_stream(id);
      write.set_key(key);
      *write.mutable_value() = Int64Value(key);
      ASSERT_TRUE(streams->WriteItem(Context().get(), write, &empty).ok());
    }
  }
  for (int i = 1; i < setup_.fabric_count(); ++i) {
    SCOPED_TRACE(absl::StrCat("through Fabric process ", i));
    json rows = PerperJson(i, {"streams"});
    ASSERT_EQ(rows.size(), 2u) << rows.dump();
    EXPECT_EQ(rows[0]["stream"], "alpha");
    EXPECT_EQ(rows[0]["item_count"], 3);
    EXPECT_EQ(rows[1]["stream"], "beta");
    EXPECT_EQ(rows[1]["item_count"], 3);
  }
}

}  // namespace
}  // namespace perper::testing
