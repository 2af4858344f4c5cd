// SPDX-License-Identifier: MIT
// Conformance tests of StreamStore, run against every backend.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "perper/common/values.h"
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::Change;
using storage::ItemToWrite;
using storage::kPositionNotStarted;
using storage::kPositionTrigger;
using storage::StreamItem;
using storage::StreamRecord;

StreamRecord Record(const std::string& id, bool ephemeral, int64_t stride) {
  StreamRecord record;
  record.stream = id;
  record.ephemeral = ephemeral;
  record.stride = stride;
  return record;
}

class StreamStoreTest : public StoreTest {
 protected:
  storage::StreamStore& streams() { return store().streams(); }

  std::vector<int64_t> StoredKeys(const std::string& id) {
    auto items = streams().ReadItems(id, std::numeric_limits<int64_t>::min(), 1 << 20, 1 << 30);
    EXPECT_TRUE(items.ok()) << items.status();
    std::vector<int64_t> keys;
    if (items.ok()) {
      for (const StreamItem& item : *items) keys.push_back(item.key);
    }
    return keys;
  }
};

TEST_P(StreamStoreTest, CreateIsIdempotentAndRejectsDifferentOptions) {
  CreateStream("s", true, 0);
  StreamRecord same = Record("s", true, 0);
  auto again = streams().CreateStream(same);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  auto different = streams().CreateStream(Record("s", false, 0));
  EXPECT_EQ(different.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(different.status().message().find("s"), std::string::npos);
  auto stride = streams().CreateStream(Record("s", true, 2));
  EXPECT_EQ(stride.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(streams().CreateStream(Record("", true, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(StreamStoreTest, CreateOfACompletedStreamIsAlreadyExists) {
  CreateStream("s", true);
  ASSERT_TRUE(streams().CompleteStream("s", std::nullopt).ok());
  EXPECT_EQ(streams().CreateStream(Record("s", true, 0)).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_P(StreamStoreTest, UnknownStreamIsNotFound) {
  EXPECT_EQ(streams().GetStream("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().WriteItems("nope", {ItemToWrite{1, ""}}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().ReadItems("nope", 0, 10, 100).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().LastKey("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().CompleteStream("nope", std::nullopt).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().RegisterListener("nope", "l", 0, false).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().MoveListener("nope", "l", 0).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(streams().DeleteListener("nope", "l").status().code(), absl::StatusCode::kNotFound);
  auto deleted = streams().DeleteStream("nope");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
}

TEST_P(StreamStoreTest, ItemsAreReadInKeyOrderWithLimits) {
  CreateStream("s", false);
  WriteKeys("s", {5, 1, 3});
  WriteKeys("s", {2});
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{1, 2, 3, 5}));
  auto from3 = streams().ReadItems("s", 3, 10, 1000);
  ASSERT_TRUE(from3.ok());
  ASSERT_EQ(from3->size(), 2u);
  EXPECT_EQ((*from3)[0].key, 3);
  EXPECT_EQ((*from3)[0].value, "v3");
  auto two = streams().ReadItems("s", 0, 2, 1000);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->size(), 2u);
  auto one_byte = streams().ReadItems("s", 0, 10, 1);
  ASSERT_TRUE(one_byte.ok());
  EXPECT_EQ(one_byte->size(), 1u);  // Always at least one item.
  auto last = streams().LastKey("s");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, std::optional<int64_t>(5));
}

TEST_P(StreamStoreTest, DuplicateKeysAreRejectedAtomically) {
  CreateStream("s", false);
  WriteKeys("s", {1});
  auto dup = streams().WriteItems("s", {ItemToWrite{2, "a"}, ItemToWrite{1, "b"}});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(dup.status().message().find("key 1"), std::string::npos) << dup.status();
  EXPECT_NE(dup.status().message().find("stream s"), std::string::npos) << dup.status();
  EXPECT_NE(dup.status().message().find("already holds a different value"), std::string::npos)
      << dup.status();
  auto twice = streams().WriteItems("s", {ItemToWrite{7, "a"}, ItemToWrite{7, "b"}});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{1}));  // Nothing of either batch.
}

TEST_P(StreamStoreTest, AutoKeysStrictlyIncreaseAboveTicksAndExplicitKeys) {
  CreateStream("s", false);
  int64_t before = NowTicks();
  auto keys =
      streams().WriteItems("s", {ItemToWrite{std::nullopt, "a"}, ItemToWrite{std::nullopt, "b"},
                                 ItemToWrite{std::nullopt, "c"}});
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_GE((*keys)[0], before);
  EXPECT_LT((*keys)[0], (*keys)[1]);
  EXPECT_LT((*keys)[1], (*keys)[2]);
  // An explicit key far in the future: the next auto key goes above it.
  int64_t future = NowTicks() + int64_t{1000000000000};
  WriteKeys("s", {future});
  auto next = streams().WriteItems("s", {ItemToWrite{std::nullopt, "d"}});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*next)[0], future + 1);
}

TEST_P(StreamStoreTest, AutoKeysKeepIncreasingAfterCollectionAndReopen) {
  CreateStream("s", true);
  int64_t future = NowTicks() + int64_t{1000000000000};
  WriteKeys("s", {future});
  ASSERT_TRUE(streams().RegisterListener("s", "l", kPositionNotStarted, false).ok());
  ASSERT_TRUE(streams().DeleteListener("s", "l").ok());  // Last listener: every item goes.
  EXPECT_TRUE(StoredKeys("s").empty());
  if (IsDurable()) Reopen();
  auto next = streams().WriteItems("s", {ItemToWrite{std::nullopt, "x"}});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*next)[0], future + 1);
}

TEST_P(StreamStoreTest, NullItemsAreStored) {
  CreateStream("s", false);
  WriteKeys("s", {});
  auto written = streams().WriteItems("s", {ItemToWrite{4, ""}});
  ASSERT_TRUE(written.ok());
  auto items = streams().ReadItems("s", 0, 10, 100);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].key, 4);
  EXPECT_EQ((*items)[0].value, "");
}

TEST_P(StreamStoreTest, CompletionStopsWritesAndCannotRepeat) {
  CreateStream("s", false);
  ASSERT_TRUE(streams().CompleteStream("s", std::string("boom")).ok());
  auto record = streams().GetStream("s");
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->completed);
  EXPECT_EQ(record->error, std::optional<std::string>("boom"));
  EXPECT_EQ(streams().CompleteStream("s", std::nullopt).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(streams().WriteItems("s", {ItemToWrite{1, ""}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Restart and reopen tests need a durable backend.
class StreamStoreDurabilityTest : public StreamStoreTest {};

TEST_P(StreamStoreDurabilityTest, ReopenKeepsItemsListenersCompletionAndOptions) {
  CreateStream("p", false, 3);
  WriteKeys("p", {0, 3, 6});
  ASSERT_TRUE(streams().RegisterListener("p", "durable", 3, false).ok());
  ASSERT_TRUE(streams().RegisterListener("p", "transient", 0, true).ok());
  ASSERT_TRUE(streams().MoveListener("p", "moved", 6).ok());
  ASSERT_TRUE(streams().CompleteStream("p", std::string("bad")).ok());
  CreateStream("e", true);
  WriteKeys("e", {1});
  const uint64_t retained = streams().ListStreams("e", 1).value()[0].retained_bytes;
  EXPECT_GT(retained, 0u);
  Reopen();
  EXPECT_EQ(streams().ListStreams("e", 1).value()[0].retained_bytes, retained);  // Counted on load.
  auto record = streams().GetStream("p");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_FALSE(record->ephemeral);
  EXPECT_EQ(record->stride, 3);
  EXPECT_TRUE(record->completed);
  EXPECT_EQ(record->error, std::optional<std::string>("bad"));
  EXPECT_EQ(StoredKeys("p"), (std::vector<int64_t>{0, 3, 6}));
  auto items = streams().ReadItems("p", 3, 1, 100);
  ASSERT_TRUE(items.ok());
  EXPECT_EQ((*items)[0].value, "v3");
  auto listeners = streams().ListListeners("p");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 2u);  // The transient listener is gone.
  EXPECT_EQ((*listeners)[0].name, "durable");
  EXPECT_EQ((*listeners)[0].position, 3);
  EXPECT_FALSE((*listeners)[0].transient);
  EXPECT_EQ((*listeners)[1].name, "moved");
  EXPECT_EQ((*listeners)[1].position, 6);
  auto e = streams().GetStream("e");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->ephemeral);
  EXPECT_FALSE(e->completed);
  EXPECT_EQ(StoredKeys("e"), (std::vector<int64_t>{1}));
}

TEST_P(StreamStoreTest, DeleteRemovesEverythingDurably) {
  CreateStream("s", false);
  WriteKeys("s", {1, 2});
  ASSERT_TRUE(streams().RegisterListener("s", "l", 0, false).ok());
  auto deleted = streams().DeleteStream("s");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(*deleted);
  EXPECT_EQ(streams().GetStream("s").status().code(), absl::StatusCode::kNotFound);
  if (IsDurable()) Reopen();
  EXPECT_EQ(streams().GetStream("s").status().code(), absl::StatusCode::kNotFound);
  // The ID can be used again, from scratch.
  CreateStream("s", true);
  EXPECT_TRUE(StoredKeys("s").empty());
  auto listeners = streams().ListListeners("s");
  ASSERT_TRUE(listeners.ok());
  EXPECT_TRUE(listeners->empty());
}

TEST_P(StreamStoreTest, RegisterKeepsAnExistingListener) {
  CreateStream("s", true);
  auto first = streams().RegisterListener("s", "l", 5, false);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->position, 5);
  auto second = streams().RegisterListener("s", "l", 1, false);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->position, 5);
  EXPECT_EQ(streams().RegisterListener("s", "", 1, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(StreamStoreTest, EphemeralCollectionKeepsTheItemAtTheLowestPosition) {
  CreateStream("s", true);
  WriteKeys("s", {1, 2, 3, 4, 5});
  ASSERT_TRUE(streams().MoveListener("s", "a", 3).ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{3, 4, 5}));
  ASSERT_TRUE(streams().MoveListener("s", "b", 4).ok());  // a is still at 3.
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{3, 4, 5}));
  ASSERT_TRUE(streams().MoveListener("s", "a", 5).ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{4, 5}));
  ASSERT_TRUE(streams().DeleteListener("s", "b").ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{5}));
  if (IsDurable()) {
    Reopen();
    EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{5}));
  }
}

TEST_P(StreamStoreTest, NotStartedKeepsAllAndTriggerKeepsNone) {
  CreateStream("s", true);
  WriteKeys("s", {1, 2, 3});
  ASSERT_TRUE(streams().RegisterListener("s", "new", kPositionNotStarted, false).ok());
  ASSERT_TRUE(streams().MoveListener("s", "a", 3).ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{1, 2, 3}));
  ASSERT_TRUE(streams().DeleteListener("s", "new").ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{3}));
  ASSERT_TRUE(streams().MoveListener("s", "trigger", kPositionTrigger).ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{3}));  // a still protects 3.
  ASSERT_TRUE(streams().DeleteListener("s", "a").ok());
  EXPECT_TRUE(StoredKeys("s").empty());  // Only the trigger is left: it protects nothing.
}

TEST_P(StreamStoreTest, DeletingTheLastListenerDeletesEveryItem) {
  CreateStream("s", true);
  WriteKeys("s", {1, 2, 3});
  ASSERT_TRUE(streams().RegisterListener("s", "t", 1, true).ok());
  auto deleted = streams().DeleteListener("s", "t");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(*deleted);
  EXPECT_TRUE(StoredKeys("s").empty());
  auto again = streams().DeleteListener("s", "t");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
}

TEST_P(StreamStoreTest, RewritingAKeyWithTheSameBytesIsAReplay) {
  CreateStream("s", false);
  WriteKeys("s", {1, 2});
  TakeChanges();
  // The same bytes again: answered with the keys, nothing stored twice, nobody woken.
  auto again = streams().WriteItems("s", {ItemToWrite{1, "v1"}, ItemToWrite{2, "v2"}});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(TakeChanges().empty());
  // A batch of replays and new keys stores the new ones only.
  auto mixed = streams().WriteItems("s", {ItemToWrite{2, "v2"}, ItemToWrite{3, "v3"}});
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{1, 2, 3}));
  auto items = streams().ReadItems("s", 0, 10, 1 << 20);
  ASSERT_TRUE(items.ok());
  EXPECT_EQ((*items)[2].value, "v3");
  // Different bytes under a stored key: refused, and nothing of the batch is written.
  auto conflict = streams().WriteItems("s", {ItemToWrite{4, "v4"}, ItemToWrite{1, "other"}});
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{1, 2, 3}));
  // A completed stream still answers replays, and refuses new keys.
  ASSERT_TRUE(streams().CompleteStream("s", std::nullopt).ok());
  EXPECT_TRUE(streams().WriteItems("s", {ItemToWrite{3, "v3"}}).ok());
  EXPECT_EQ(streams().WriteItems("s", {ItemToWrite{9, "v9"}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  if (IsDurable()) {
    Reopen();
    EXPECT_TRUE(streams().WriteItems("s", {ItemToWrite{1, "v1"}}).ok());
    EXPECT_EQ(streams().WriteItems("s", {ItemToWrite{1, "v2"}}).status().code(),
              absl::StatusCode::kAlreadyExists);
  }
}

TEST_P(StreamStoreTest, PersistentStreamsAreNeverCollected) {
  CreateStream("s", false);
  WriteKeys("s", {1, 2, 3});
  ASSERT_TRUE(streams().MoveListener("s", "a", 3).ok());
  ASSERT_TRUE(streams().DeleteListener("s", "a").ok());
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{1, 2, 3}));
}

// Every listener passed a collected key: a write there is the replay of a producer that ran
// again, answered with its key and dropped (what the key held is gone, so it cannot be compared).
TEST_P(StreamStoreTest, ExplicitKeysAtOrBelowTheCollectedFloorAreReplaysAndDropped) {
  CreateStream("s", true);
  WriteKeys("s", {10, 20, 30});
  ASSERT_TRUE(streams().MoveListener("s", "a", 30).ok());  // Collects 10 and 20.
  TakeChanges();
  auto below = streams().WriteItems("s", {ItemToWrite{15, "x"}, ItemToWrite{20, "v20"}});
  ASSERT_TRUE(below.ok()) << below.status();
  EXPECT_EQ(*below, (std::vector<int64_t>{15, 20}));
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{30}));
  EXPECT_TRUE(TakeChanges().empty());  // Nobody is woken for nothing.
  EXPECT_TRUE(streams().WriteItems("s", {ItemToWrite{25, ""}}).ok());  // Above the floor.
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{25, 30}));
  if (IsDurable()) {
    Reopen();
    EXPECT_TRUE(streams().WriteItems("s", {ItemToWrite{5, ""}}).ok());
    EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{25, 30}));
    auto positions = streams().ListListeners("s");
    ASSERT_TRUE(positions.ok());
    ASSERT_EQ(positions->size(), 1u);
    EXPECT_EQ((*positions)[0].position, 30);
  }
}

TEST_P(StreamStoreDurabilityTest, TransientListenersAreNotDurable) {
  CreateStream("s", true);
  ASSERT_TRUE(streams().RegisterListener("s", "t", 0, true).ok());
  ASSERT_TRUE(streams().MoveListener("s", "t", 4).ok());
  auto listeners = streams().ListListeners("s");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 1u);
  EXPECT_TRUE((*listeners)[0].transient);
  EXPECT_EQ((*listeners)[0].position, 4);
  Reopen();
  listeners = streams().ListListeners("s");
  ASSERT_TRUE(listeners.ok());
  EXPECT_TRUE(listeners->empty());
}

TEST_P(StreamStoreTest, ReportsIdOnlyChanges) {
  TakeChanges();
  CreateStream("s", true);
  WriteKeys("s", {3, 9, 4});
  ASSERT_TRUE(streams().RegisterListener("s", "l", 0, false).ok());
  ASSERT_TRUE(streams().MoveListener("s", "l", 4).ok());
  ASSERT_TRUE(streams().DeleteListener("s", "l").ok());
  ASSERT_TRUE(streams().CompleteStream("s", std::nullopt).ok());
  ASSERT_TRUE(streams().DeleteStream("s").ok());
  std::vector<Change> changes = TakeChanges();
  std::vector<Change::Kind> kinds;
  for (const Change& change : changes) {
    EXPECT_EQ(change.id, "s");
    kinds.push_back(change.kind);
  }
  EXPECT_EQ(kinds, (std::vector<Change::Kind>{
                       Change::Kind::kStreamCreated, Change::Kind::kStreamItemsWritten,
                       Change::Kind::kListenerChanged, Change::Kind::kListenerChanged,
                       Change::Kind::kListenerChanged, Change::Kind::kStreamCompleted,
                       Change::Kind::kStreamDeleted}));
  ASSERT_GE(changes.size(), 2u);
  EXPECT_EQ(changes[1].key, 9);  // The largest key written.
  // Refused writes report nothing.
  CreateStream("t", false);
  TakeChanges();
  EXPECT_FALSE(streams().WriteItems("t", {ItemToWrite{1, ""}, ItemToWrite{1, ""}}).ok());
  EXPECT_TRUE(TakeChanges().empty());
}

TEST_P(StreamStoreTest, ListStreamsByPrefixWithSummaries) {
  CreateStream("a-1", true);
  CreateStream("a-2", false, 2);
  CreateStream("b-1", true);
  WriteKeys("a-2", {2, 4, 6});
  ASSERT_TRUE(streams().MoveListener("a-2", "l", 4).ok());
  std::vector<storage::StreamSummary> list = streams().ListStreams("a-", 10).value();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].record.stream, "a-1");
  EXPECT_EQ(list[1].record.stream, "a-2");
  EXPECT_EQ(list[1].item_count, 3u);
  EXPECT_EQ(list[1].first_key, std::optional<int64_t>(2));
  EXPECT_EQ(list[1].last_key, std::optional<int64_t>(6));
  ASSERT_EQ(list[1].listeners.size(), 1u);
  EXPECT_EQ(list[1].listeners[0].position, 4);
  EXPECT_EQ(streams().ListStreams("", 2).value().size(), 2u);
  EXPECT_EQ(streams().ListStreams("", 10).value().size(), 3u);
}

TEST_P(StreamStoreTest, ConcurrentAutoKeyWritersGetDistinctIncreasingKeys) {
  CreateStream("s", false);
  constexpr int kThreads = 4;
  const int kPerThread = IsDurable() ? 100 : 500;  // Each durable write is an fsync.
  std::vector<std::vector<int64_t>> keys(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto written = streams().WriteItems("s", {ItemToWrite{std::nullopt, "x"}});
        ASSERT_TRUE(written.ok()) << written.status();
        keys[t].push_back((*written)[0]);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<int64_t> all;
  for (const auto& k : keys) {
    EXPECT_TRUE(std::is_sorted(k.begin(), k.end()));
    all.insert(all.end(), k.begin(), k.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(StoredKeys("s").size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_P(StreamStoreTest, BoundedWriteRefusesPastTheRetentionLimitAndKeepsTheItems) {
  CreateStream("s", /*ephemeral=*/true);
  ASSERT_TRUE(streams().MoveListener("s", "slow", 0).ok());
  const size_t per_item = storage::RetainedBytes(std::string(100, 'v'));
  const size_t limit = 3 * per_item;
  for (int64_t key = 1; key <= 3; ++key) {
    std::vector<ItemToWrite> items{ItemToWrite{key, std::string(100, 'v')}};
    ASSERT_TRUE(streams().WriteItemsBounded("s", items, limit).ok()) << key;
  }
  EXPECT_EQ(streams().ListStreams("s", 1).value()[0].retained_bytes, limit);

  std::vector<ItemToWrite> items{ItemToWrite{4, std::string(100, 'w')}};
  auto refused = streams().WriteItemsBounded("s", items, limit);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("listener slow at position 0"), std::string::npos)
      << refused.status();
  ASSERT_EQ(items.size(), 1u);  // Left for a retry.
  EXPECT_EQ(items[0].value, std::string(100, 'w'));
  EXPECT_EQ(streams().ListStreams("s", 1).value()[0].item_count, 3u);

  // Collection makes room, and the same items go through.
  ASSERT_TRUE(streams().MoveListener("s", "slow", 2).ok());
  EXPECT_EQ(streams().ListStreams("s", 1).value()[0].retained_bytes, 2 * per_item);
  auto written = streams().WriteItemsBounded("s", items, limit);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, std::vector<int64_t>{4});
  EXPECT_EQ(streams().ListStreams("s", 1).value()[0].retained_bytes, limit);
}

TEST_P(StreamStoreTest, BoundedWriteTakesAnyItemIntoAnEmptyStreamAndIgnoresPersistentOnes) {
  CreateStream("e", /*ephemeral=*/true);
  CreateStream("p", /*ephemeral=*/false);
  for (const char* id : {"e", "p"}) {
    std::vector<ItemToWrite> big{ItemToWrite{1, std::string(1000, 'b')}};
    EXPECT_TRUE(streams().WriteItemsBounded(id, big, 10).ok()) << id;
  }
  std::vector<ItemToWrite> more{ItemToWrite{2, "x"}};
  EXPECT_EQ(streams().WriteItemsBounded("e", more, 10).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(streams().WriteItemsBounded("p", more, 10).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamStoreTest, StoreBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, StreamStoreDurabilityTest, DurableBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
