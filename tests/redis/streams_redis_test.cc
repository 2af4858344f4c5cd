// SPDX-License-Identifier: MIT
// RedisStreams where Redis itself matters: int64 keys through Lua (whose numbers are doubles),
// collection in bounded batches, the listener half of a step, and transient listeners of a
// process that died or closed. Two RedisStreams on one Redis act as two Fabric processes.
// Runs on a standalone server and on a 3-master cluster.
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/leases.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/redis/redis_streams.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using perper::testing::RedisCli;
using perper::testing::RedisCluster;
using perper::testing::RedisProcess;

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

class Recorder final : public ChangeObserver {
 public:
  void OnChange(const Change& change) override {
    absl::MutexLock lock(&mu_);
    changes_.push_back(change);
  }
  std::vector<Change> Take() {
    absl::MutexLock lock(&mu_);
    return std::move(changes_);
  }

 private:
  absl::Mutex mu_;
  std::vector<Change> changes_;
};

// One Fabric process's view: its pool (with its process ID), notifier and streams.
struct Process {
  std::unique_ptr<ClientPool> pool;
  RedisNotifier notifier;
  Recorder recorder;
  std::unique_ptr<RedisStreams> streams;
  const std::string& pid() const { return pool->process_id(); }
};

class RedisStreamsTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void TearDownTestSuite() {
    delete standalone_;
    standalone_ = nullptr;
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    // Started when first needed: ctest runs each test in a process of its own.
    if (GetParam() == "standalone" && standalone_ == nullptr) {
      standalone_ = new RedisProcess();
      ASSERT_TRUE(standalone_->Start().ok());
    }
    if (GetParam() == "cluster" && cluster_ == nullptr) {
      cluster_ = new RedisCluster(3, 0);
      absl::Status started = cluster_->Start();
      ASSERT_TRUE(started.ok()) << started;
    }
    for (int port : Ports()) {
      auto flushed = RedisCli({"-p", std::to_string(port), "FLUSHALL"});
      ASSERT_TRUE(flushed.ok()) << flushed.status();
    }
  }

  std::vector<int> Ports() {
    if (GetParam() == "standalone") return {standalone_->port()};
    std::vector<int> ports;
    for (auto& node : cluster_->nodes()) ports.push_back(node->port());
    return ports;
  }

  // With `lease`, the sweeper runs (a few times per lease).
  std::unique_ptr<Process> Open(std::optional<std::chrono::milliseconds> lease = std::nullopt) {
    RedisStoreOptions options;
    options.cluster.seeds = {{"127.0.0.1", Ports()[0]}};
    if (lease.has_value()) options.lease = *lease;
    auto process = std::make_unique<Process>();
    auto pool = ClientPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    if (!pool.ok()) return nullptr;
    process->pool = std::move(pool).value();
    process->notifier.SetObserver(&process->recorder);
    process->streams = std::make_unique<RedisStreams>(*process->pool, process->notifier);
    if (lease.has_value()) {
      EXPECT_TRUE(process->streams->Start().ok());
    }
    return process;
  }

  // Sets (or, with 0 ms, removes) the lease of process `pid`, as the executions part does.
  void Lease(Process& via, const std::string& pid, int ms) {
    std::string key = LeaseKey(pid);
    auto reply = ms > 0 ? via.pool->Run(key, {"SET", key, "1", "PX", std::to_string(ms)})
                        : via.pool->Run(key, {"DEL", key});
    ASSERT_TRUE(reply.ok()) << reply.status();
  }

  static void Create(RedisStreams& streams, const std::string& id, bool ephemeral) {
    StreamRecord record;
    record.stream = id;
    record.ephemeral = ephemeral;
    auto created = streams.CreateStream(record);
    ASSERT_TRUE(created.ok()) << created.status();
  }

  static void Write(RedisStreams& streams, const std::string& id, std::vector<int64_t> keys) {
    std::vector<ItemToWrite> items;
    for (int64_t key : keys) items.push_back(ItemToWrite{key, "v" + std::to_string(key)});
    auto written = streams.WriteItems(id, std::move(items));
    ASSERT_TRUE(written.ok()) << written.status();
  }

  static std::vector<int64_t> Keys(RedisStreams& streams, const std::string& id,
                                   int64_t from = kMin) {
    auto items = streams.ReadItems(id, from, 1 << 20, 1 << 30);
    EXPECT_TRUE(items.ok()) << items.status();
    std::vector<int64_t> keys;
    if (items.ok()) {
      for (const StreamItem& item : *items) {
        EXPECT_EQ(item.value, "v" + std::to_string(item.key));
        keys.push_back(item.key);
      }
    }
    return keys;
  }

  static RedisProcess* standalone_;
  static RedisCluster* cluster_;
};

RedisProcess* RedisStreamsTest::standalone_ = nullptr;
RedisCluster* RedisStreamsTest::cluster_ = nullptr;

// Lua numbers are doubles: keys beyond 2^53, near both ends of int64 and negative ones must
// still be exact and in numeric order.
TEST_P(RedisStreamsTest, LargeAndNegativeKeysRoundTripInOrder) {
  auto p = Open();
  RedisStreams& streams = *p->streams;
  Create(streams, "big", /*ephemeral=*/true);
  const int64_t two53 = int64_t{1} << 53;
  const int64_t two62 = int64_t{1} << 62;
  Write(streams, "big", {two62 + 7, -1, kMin + 1, two53 + 1, 0, -two62 - 3, two53, 1, two62 + 6});
  const std::vector<int64_t> all = {kMin + 1, -two62 - 3, -1,        0,        1,
                                    two53,    two53 + 1,  two62 + 6, two62 + 7};
  EXPECT_EQ(Keys(streams, "big"), all);
  EXPECT_EQ(Keys(streams, "big", two53 + 1),
            (std::vector<int64_t>{two53 + 1, two62 + 6, two62 + 7}));
  EXPECT_EQ(Keys(streams, "big", -two62),
            (std::vector<int64_t>{-1, 0, 1, two53, two53 + 1, two62 + 6, two62 + 7}));
  // Replays and conflicts are told apart exactly next to a large key.
  EXPECT_TRUE(
      streams.WriteItems("big", {ItemToWrite{two53 + 1, "v" + std::to_string(two53 + 1)}}).ok());
  EXPECT_EQ(streams.WriteItems("big", {ItemToWrite{two53 + 1, "other"}}).status().code(),
            absl::StatusCode::kAlreadyExists);

  // A listener at a negative position keeps that item; at 2^62 + 7 it keeps exactly that one.
  ASSERT_TRUE(streams.MoveListener("big", "l", -1).ok());
  EXPECT_EQ(Keys(streams, "big"),
            (std::vector<int64_t>{-1, 0, 1, two53, two53 + 1, two62 + 6, two62 + 7}));
  ASSERT_TRUE(streams.MoveListener("big", "l", two62 + 7).ok());
  EXPECT_EQ(Keys(streams, "big"), std::vector<int64_t>{two62 + 7});
  auto position = streams.ListenerPosition("big", "l");
  ASSERT_TRUE(position.ok()) << position.status();
  EXPECT_EQ(*position, two62 + 7);
  // The collected floor is exact too: 2^62 + 6 is a replay now, 2^62 + 8 is not.
  Write(streams, "big", {two62 + 6, two62 + 8});
  EXPECT_EQ(Keys(streams, "big"), (std::vector<int64_t>{two62 + 7, two62 + 8}));

  // Auto keys go one past the largest key, up to the very last one.
  Write(streams, "big", {kMax - 1});
  auto last = streams.WriteItems("big", {ItemToWrite{std::nullopt, "x"}});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, std::vector<int64_t>{kMax});
  EXPECT_EQ(streams.WriteItems("big", {ItemToWrite{std::nullopt, "y"}}).status().code(),
            absl::StatusCode::kOutOfRange);
  auto progress = streams.GetProgress("big");
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_EQ(progress->last_key, std::optional<int64_t>(kMax));
  EXPECT_EQ(progress->written_count, 12u);
  auto last_key = streams.LastKey("big");
  ASSERT_TRUE(last_key.ok());
  EXPECT_EQ(*last_key, std::optional<int64_t>(kMax));
}

TEST_P(RedisStreamsTest, CollectsMoreThanOneBatchInOneMove) {
  auto p = Open();
  RedisStreams& streams = *p->streams;
  Create(streams, "many", /*ephemeral=*/true);
  std::vector<int64_t> keys;
  for (int64_t key = 1; key <= 2500; ++key) keys.push_back(key);
  Write(streams, "many", keys);
  ASSERT_TRUE(streams.MoveListener("many", "l", 2400).ok());
  EXPECT_EQ(Keys(streams, "many").size(), 101u);
  ASSERT_TRUE(streams.DeleteListener("many", "l").ok());  // The last one: everything goes.
  auto summaries = streams.ListStreams("many", 1);
  ASSERT_TRUE(summaries.ok()) << summaries.status();
  ASSERT_EQ(summaries->size(), 1u);
  EXPECT_EQ((*summaries)[0].item_count, 0u);
  EXPECT_EQ((*summaries)[0].retained_bytes, 0u);
  EXPECT_EQ((*summaries)[0].written_count, 2500u);
  Write(streams, "many", {2500});  // At the floor: a replay.
  EXPECT_TRUE(Keys(streams, "many").empty());
}

TEST_P(RedisStreamsTest, AdvanceListenerMovesForwardOnly) {
  auto p = Open();
  RedisStreams& streams = *p->streams;
  EXPECT_EQ(streams.ListenerPosition("nope", "l").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(streams.AdvanceListener("nope", "l", 1).status().code(), absl::StatusCode::kNotFound);
  Create(streams, "s", /*ephemeral=*/true);
  Write(streams, "s", {1, 2, 3, 4});
  auto absent = streams.ListenerPosition("s", "l");
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(*absent, kPositionNotStarted);
  p->recorder.Take();

  auto created = streams.AdvanceListener("s", "l", 2);  // Created durable, collects 1.
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(*created, 2);
  EXPECT_EQ(Keys(streams, "s"), (std::vector<int64_t>{2, 3, 4}));
  auto back = streams.AdvanceListener("s", "l", 1);  // Never back.
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, 2);
  auto same = streams.AdvanceListener("s", "l", 2);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, 2);
  std::vector<Change> changes = p->recorder.Take();
  ASSERT_EQ(changes.size(), 1u);  // Only the move that moved.
  EXPECT_EQ(changes[0].kind, Change::Kind::kListenerChanged);

  ASSERT_TRUE(streams.RegisterListener("s", "t", 2, /*transient=*/true).ok());
  auto moved = streams.AdvanceListener("s", "t", 3);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 3);
  auto listeners = streams.ListListeners("s");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 2u);
  EXPECT_EQ((*listeners)[0].name, "l");
  EXPECT_FALSE((*listeners)[0].transient);
  EXPECT_EQ((*listeners)[1].name, "t");
  EXPECT_TRUE((*listeners)[1].transient);  // Stays transient.
  EXPECT_EQ((*listeners)[1].position, 3);
}

// A dead Fabric's transient listeners must not pin an ephemeral stream: once its lease is gone,
// another process removes them and collects what they held; a live one's are kept.
TEST_P(RedisStreamsTest, TransientListenersOfADeadProcessAreSwept) {
  auto a = Open();
  auto b = Open();
  Lease(*b, b->pid(), 60000);
  Create(*a->streams, "e", /*ephemeral=*/true);
  Write(*a->streams, "e", {1, 2, 3});
  ASSERT_TRUE(b->streams->RegisterListener("e", "call", 1, /*transient=*/true).ok());
  ASSERT_TRUE(a->streams->MoveListener("e", "durable", 3).ok());
  EXPECT_EQ(Keys(*a->streams, "e"), (std::vector<int64_t>{1, 2, 3}));  // b's call holds them.

  auto kept = a->streams->SweepDeadProcesses();
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 0u);  // b is alive.
  EXPECT_EQ(Keys(*a->streams, "e"), (std::vector<int64_t>{1, 2, 3}));

  Lease(*a, b->pid(), 0);  // b's lease runs out.
  auto unleased = a->streams->SweepDeadProcesses();
  ASSERT_TRUE(unleased.ok()) << unleased.status();
  EXPECT_EQ(*unleased, 0u);  // a holds no lease itself: it judges nobody.
  EXPECT_EQ(Keys(*a->streams, "e"), (std::vector<int64_t>{1, 2, 3}));

  Lease(*a, a->pid(), 60000);
  a->recorder.Take();
  auto swept = a->streams->SweepDeadProcesses();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 1u);
  EXPECT_EQ(Keys(*a->streams, "e"), std::vector<int64_t>{3});
  auto listeners = a->streams->ListListeners("e");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 1u);
  EXPECT_EQ((*listeners)[0].name, "durable");
  std::vector<Change> changes = a->recorder.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, Change::Kind::kListenerChanged);
  EXPECT_EQ(changes[0].id, "e");
  auto again = a->streams->SweepDeadProcesses();  // Nothing left to find.
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
}

TEST_P(RedisStreamsTest, TheSweeperThreadRemovesThemOnceTheLeaseExpires) {
  auto a = Open(std::chrono::milliseconds(300));  // Sweeps every 100 ms.
  auto b = Open();
  Lease(*a, a->pid(), 60000);
  Lease(*b, b->pid(), 300);
  Create(*a->streams, "e", /*ephemeral=*/true);
  Write(*a->streams, "e", {1, 2});
  ASSERT_TRUE(b->streams->RegisterListener("e", "call", kPositionNotStarted, true).ok());
  // Polls the condition against a deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto listeners = a->streams->ListListeners("e");
    ASSERT_TRUE(listeners.ok());
    if (listeners->empty()) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "b's listener was never swept";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(Keys(*a->streams, "e").empty());  // Its last listener went: every item went.
}

TEST_P(RedisStreamsTest, AClosedProcessRemovesItsTransientListeners) {
  auto a = Open();
  auto b = Open();
  Lease(*b, b->pid(), 60000);
  Create(*a->streams, "e", /*ephemeral=*/true);
  ASSERT_TRUE(b->streams->RegisterListener("e", "call", 0, /*transient=*/true).ok());
  ASSERT_TRUE(b->streams->RegisterListener("e", "kept", 0, /*transient=*/false).ok());
  b.reset();
  auto listeners = a->streams->ListListeners("e");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 1u);
  EXPECT_EQ((*listeners)[0].name, "kept");
}

// A script whose reply is lost with its connection is resent by ClusterClient. Redis drops a
// connection whose pending reply passes client-output-buffer-limit (only replies past the 16 KB
// client buffer count), after running the command: so a write of 3,000 auto-key items runs,
// loses its reply, is resent, runs again and loses its reply again. It must be stored once.
TEST(RedisStreamsResendTest, AnAutoKeyWriteResentAfterALostReplyIsStoredOnce) {
  RedisProcess server;
  ASSERT_TRUE(server.Start().ok());
  RedisStoreOptions options;
  options.cluster.seeds = {{"127.0.0.1", server.port()}};
  auto pool = ClientPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  RedisNotifier notifier;
  RedisStreams streams(**pool, notifier);
  StreamRecord record;
  record.stream = "s";
  record.ephemeral = false;
  ASSERT_TRUE(streams.CreateStream(record).ok());
  std::vector<ItemToWrite> items(3000, ItemToWrite{std::nullopt, "x"});

  const std::string port = std::to_string(server.port());
  ASSERT_TRUE(
      RedisCli({"-p", port, "CONFIG", "SET", "client-output-buffer-limit", "normal 1 1 0"}).ok());
  auto lost = streams.WriteItems("s", items);
  ASSERT_TRUE(
      RedisCli({"-p", port, "CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0"}).ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable) << lost.status();

  auto progress = streams.GetProgress("s");
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_EQ(progress->written_count, 3000u);  // Not 6,000.
  // The next write is a new one: stored, above the keys of the first.
  auto next = streams.WriteItems("s", {ItemToWrite{std::nullopt, "y"}});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GT((*next)[0], progress->last_key.value());
  progress = streams.GetProgress("s");
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->written_count, 3001u);
}

INSTANTIATE_TEST_SUITE_P(Deployments, RedisStreamsTest,
                         ::testing::Values(std::string("standalone"), std::string("cluster")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace perper::storage::redis
