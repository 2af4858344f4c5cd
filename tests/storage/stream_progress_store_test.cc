// SPDX-License-Identifier: MIT
// Conformance tests of StreamStore::GetProgress (where a stream stands, for a producer that is
// run again), run against every backend: the largest key and the count of items ever written
// survive garbage collection and, with a durable backend, a reopen.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::ItemToWrite;
using storage::kPositionNotStarted;
using storage::StreamProgress;
using storage::StreamRecord;

class StreamProgressStoreTest : public StoreTest {
 protected:
  storage::StreamStore& streams() { return store().streams(); }

  StreamProgress Progress(const std::string& id) {
    auto progress = streams().GetProgress(id);
    EXPECT_TRUE(progress.ok()) << progress.status();
    return progress.ok() ? *progress : StreamProgress{};
  }

  // Reopens a durable backend; the memory backend keeps going (it has nothing to reopen).
  void ReopenIfDurable() {
    if (IsDurable()) Reopen();
  }
};

TEST_P(StreamProgressStoreTest, UnknownStreamIsNotFound) {
  auto progress = streams().GetProgress("nope");
  EXPECT_EQ(progress.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(progress.status().message().find("nope"), std::string::npos);
}

TEST_P(StreamProgressStoreTest, AFreshStreamHasNoItems) {
  CreateStream("s", true);
  StreamProgress progress = Progress("s");
  EXPECT_FALSE(progress.last_key.has_value());
  EXPECT_EQ(progress.written_count, 0u);
  EXPECT_FALSE(progress.completed);
  EXPECT_FALSE(progress.error.has_value());
}

TEST_P(StreamProgressStoreTest, CountsWritesButNotReplays) {
  CreateStream("s", false);
  WriteKeys("s", {1, 2, 3});
  WriteKeys("s", {2, 3});  // Identical rewrites: replays.
  WriteKeys("s", {3, 4});  // One replay, one new item.
  StreamProgress progress = Progress("s");
  EXPECT_EQ(progress.last_key, std::optional<int64_t>(4));
  EXPECT_EQ(progress.written_count, 4u);
  auto autos = streams().WriteItems("s", {ItemToWrite{std::nullopt, "a"}});
  ASSERT_TRUE(autos.ok());
  progress = Progress("s");
  EXPECT_EQ(progress.last_key, std::optional<int64_t>((*autos)[0]));
  EXPECT_EQ(progress.written_count, 5u);
}

TEST_P(StreamProgressStoreTest, SurvivesCollectionOfAnEphemeralStreamAndReopen) {
  CreateStream("e", true);
  WriteKeys("e", {10, 20, 30, 40});
  ASSERT_TRUE(streams().MoveListener("e", "l", 30).ok());  // Collects 10 and 20.
  StreamProgress progress = Progress("e");
  EXPECT_EQ(progress.last_key, std::optional<int64_t>(40));
  EXPECT_EQ(progress.written_count, 4u);
  ReopenIfDurable();
  progress = Progress("e");
  EXPECT_EQ(progress.last_key, std::optional<int64_t>(40));
  EXPECT_EQ(progress.written_count, 4u);
  // Replays below the collected floor do not count either, before or after a reopen.
  WriteKeys("e", {10, 20});
  WriteKeys("e", {50});
  EXPECT_EQ(Progress("e").written_count, 5u);
  ASSERT_TRUE(streams().DeleteListener("e", "l").ok());  // The last listener: every item goes.
  ReopenIfDurable();
  progress = Progress("e");
  EXPECT_EQ(progress.last_key, std::optional<int64_t>(50));
  EXPECT_EQ(progress.written_count, 5u);
  // ListStreams reports the same count, while no item is stored.
  std::vector<storage::StreamSummary> summaries = streams().ListStreams("e", 1).value();
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].item_count, 0u);
  EXPECT_EQ(summaries[0].written_count, 5u);
}

TEST_P(StreamProgressStoreTest, RepeatedCollectionsAddUp) {
  CreateStream("e", true);
  ASSERT_TRUE(streams().RegisterListener("e", "l", kPositionNotStarted, false).ok());
  for (int64_t key = 1; key <= 5; ++key) {
    WriteKeys("e", {key});
    ASSERT_TRUE(streams().MoveListener("e", "l", key + 1).ok());  // Collects `key`.
    if (key == 3) ReopenIfDurable();
  }
  StreamProgress progress = Progress("e");
  EXPECT_EQ(progress.written_count, 5u);
  EXPECT_EQ(progress.last_key, std::optional<int64_t>(5));
  EXPECT_EQ(streams().ListStreams("e", 1).value()[0].item_count, 0u);
}

TEST_P(StreamProgressStoreTest, ReportsCompletionAndItsError) {
  CreateStream("s", false);
  WriteKeys("s", {7});
  ASSERT_TRUE(streams().CompleteStream("s", std::string("bad input")).ok());
  ReopenIfDurable();
  StreamProgress progress = Progress("s");
  EXPECT_TRUE(progress.completed);
  EXPECT_EQ(progress.error, std::optional<std::string>("bad input"));
  EXPECT_EQ(progress.last_key, std::optional<int64_t>(7));
  EXPECT_EQ(progress.written_count, 1u);
}

TEST_P(StreamProgressStoreTest, ADeletedStreamStartsAfreshWhenCreatedAgain) {
  CreateStream("s", true);
  WriteKeys("s", {1, 2});
  ASSERT_TRUE(streams().DeleteStream("s").ok());
  EXPECT_EQ(streams().GetProgress("s").status().code(), absl::StatusCode::kNotFound);
  CreateStream("s", true);
  ReopenIfDurable();
  StreamProgress progress = Progress("s");
  EXPECT_FALSE(progress.last_key.has_value());
  EXPECT_EQ(progress.written_count, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamProgressStoreTest, StoreBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
