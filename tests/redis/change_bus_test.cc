// SPDX-License-Identifier: MIT
// ChangeBus between two buses standing for two Fabric processes, on one standalone Redis and on
// a 3-master cluster: delivery with every field, order per topic key, no echo, resynchronisation
// after a lost subscription and after a bucket's slot moves, prompt stop. The failover case is in
// change_bus_slow_test.cc.
#include "perper/storage/redis/change_bus.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/cluster_client.h"
#include "perper/storage/redis/key_slot.h"
#include "perper/storage/redis/redis_connection.h"
#include "perper/storage/redis/redis_notifier.h"
#include "tests/redis/change_bus_test_util.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using Clock = std::chrono::steady_clock;
using perper::testing::RedisCluster;
using perper::testing::RedisProcess;

TEST(ChangeBusWireTest, MessagesRoundTripEveryField) {
  Change change;
  change.kind = Change::Kind::kReservationReleased;
  change.id = std::string("exec\0-}{1", 9);
  change.agent = "agent{x}";
  change.instance = "inst%";
  change.delegate = "delegate";
  change.workgroup = std::string(300, 'w');  // a length over one varint byte
  for (int64_t key : {int64_t{0}, int64_t{-1}, int64_t{1}, INT64_MIN, INT64_MAX}) {
    change.key = key;
    const std::string message = ChangeBus::EncodeMessage("0123456789abcdef", change);
    std::string origin;
    Change decoded;
    ASSERT_TRUE(ChangeBus::DecodeMessage(message, &origin, &decoded));
    EXPECT_EQ(origin, "0123456789abcdef");
    ExpectSameChange(decoded, change);
    // Any truncation is refused.
    for (size_t cut = 0; cut < message.size(); ++cut) {
      EXPECT_FALSE(ChangeBus::DecodeMessage(message.substr(0, cut), &origin, &decoded)) << cut;
    }
  }
  Change stream;
  stream.kind = Change::Kind::kListenerChanged;
  stream.id = "s";
  std::string origin;
  Change decoded;
  ASSERT_TRUE(ChangeBus::DecodeMessage(ChangeBus::EncodeMessage("p", stream), &origin, &decoded));
  ExpectSameChange(decoded, stream);
  // kResync does not travel: its message does not decode.
  Change resync;
  resync.kind = Change::Kind::kResync;
  EXPECT_FALSE(ChangeBus::DecodeMessage(ChangeBus::EncodeMessage("p", resync), &origin, &decoded));
  EXPECT_FALSE(ChangeBus::DecodeMessage("garbage", &origin, &decoded));
}

TEST(ChangeBusWireTest, TopicKeyIsTheAgentOrTheStream) {
  Change execution;
  execution.kind = Change::Kind::kExecutionCompleted;
  execution.id = "exec-1";
  execution.agent = "agent";
  EXPECT_EQ(ChangeBus::TopicKey(execution), "agent");
  Change stream;
  stream.kind = Change::Kind::kStreamItemsWritten;
  stream.id = "agent";
  EXPECT_EQ(ChangeBus::TopicKey(stream), "agent");
  EXPECT_EQ(ChangeBus::Bucket(execution), ChangeBus::Bucket(stream));
  EXPECT_EQ(ChangeBus::Bucket(execution), Crc16("agent") % kChangeBuckets);
  EXPECT_EQ(ChangeBus::Channel(3), "perper:changes:{b3}");
  // Every bucket is reachable with some stream name.
  for (int b = 0; b < kChangeBuckets; ++b) {
    Change c = StreamChange(Change::Kind::kStreamCreated, StreamInBucket(b), 0);
    EXPECT_EQ(ChangeBus::Bucket(c), b);
  }
}

TEST(ChangeBusCreateTest, UnreachableRedisFails) {
  RecordingObserver observer;
  ChangeBusOptions options;
  options.cluster.seeds = {{"127.0.0.1", 1}};
  options.process_id = "p";
  auto bus = ChangeBus::Create(options, &observer);
  EXPECT_EQ(bus.status().code(), absl::StatusCode::kUnavailable) << bus.status();
}

// Two buses on one deployment, standalone (false) or a 3-master cluster (true).
class ChangeBusTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      cluster_ = std::make_unique<RedisCluster>(3, 0);
      absl::Status started = cluster_->Start();
      ASSERT_TRUE(started.ok()) << started;
      for (auto& node : cluster_->nodes()) ports_.push_back(node->port());
    } else {
      server_ = std::make_unique<RedisProcess>();
      absl::Status started = server_->Start();
      ASSERT_TRUE(started.ok()) << started;
      ports_.push_back(server_->port());
    }
    a_ = Bus("aaaaaaaaaaaaaaaa", &seen_by_a_);
    b_ = Bus("bbbbbbbbbbbbbbbb", &seen_by_b_);
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
  }

  std::unique_ptr<ChangeBus> Bus(const std::string& process_id, RecordingObserver* observer) {
    ChangeBusOptions options;
    options.cluster.seeds = {{"127.0.0.1", ports_[0]}};
    options.process_id = process_id;
    auto bus = ChangeBus::Create(options, observer);
    EXPECT_TRUE(bus.ok()) << bus.status();
    return bus.ok() ? *std::move(bus) : nullptr;
  }

  // A client of the deployment, to read its slot map.
  std::unique_ptr<ClusterClient> Client() {
    ClusterOptions options;
    options.seeds = {{"127.0.0.1", ports_[0]}};
    auto client = ClusterClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // Runs `argv` on every node of the deployment.
  void OnEveryNode(const std::vector<std::string_view>& argv) {
    for (int port : ports_) {
      auto connection = RedisConnection::Connect("127.0.0.1", port);
      ASSERT_TRUE(connection.ok()) << connection.status();
      auto reply = (*connection)->Run(argv);
      ASSERT_TRUE(reply.ok()) << reply.status();
    }
  }

  std::unique_ptr<RedisProcess> server_;
  std::unique_ptr<RedisCluster> cluster_;
  std::vector<int> ports_;
  RecordingObserver seen_by_a_;
  RecordingObserver seen_by_b_;
  std::unique_ptr<ChangeBus> a_;
  std::unique_ptr<ChangeBus> b_;
};

INSTANTIATE_TEST_SUITE_P(Deployments, ChangeBusTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "cluster" : "standalone"; });

TEST_P(ChangeBusTest, ChangesReachTheOtherProcessInOrderPerTopicAndAreNotEchoed) {
  // Executions of three agents and items of three streams, interleaved.
  std::vector<Change> sent;
  for (int i = 0; i < 300; ++i) {
    Change execution;
    execution.kind =
        i % 2 == 0 ? Change::Kind::kExecutionCreated : Change::Kind::kExecutionCompleted;
    execution.id = "exec-" + std::to_string(i);
    execution.agent = "agent-" + std::to_string(i % 3);
    execution.instance = "instance-" + std::to_string(i % 5);
    execution.delegate = "delegate-" + std::to_string(i % 7);
    execution.workgroup = i % 4 == 0 ? "workgroup" : "";
    execution.key = i;
    sent.push_back(execution);
    sent.push_back(StreamChange(Change::Kind::kStreamItemsWritten,
                                "stream-" + std::to_string(i % 3), -1000000000000LL * i));
  }
  for (const Change& change : sent) a_->Publish(change);
  ASSERT_TRUE(seen_by_b_.WaitForCount(sent.size(), std::chrono::seconds(20)))
      << seen_by_b_.Count() << " of " << sent.size();
  // Per topic key, B saw exactly what A sent, in A's order, field by field.
  std::vector<Change> received = seen_by_b_.Changes();
  ASSERT_EQ(received.size(), sent.size());
  std::vector<std::string> topics;
  for (const Change& c : sent) topics.emplace_back(ChangeBus::TopicKey(c));
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  EXPECT_EQ(topics.size(), 6u);
  for (const std::string& topic : topics) {
    std::vector<Change> expected, got;
    for (const Change& c : sent) {
      if (ChangeBus::TopicKey(c) == topic) expected.push_back(c);
    }
    for (const Change& c : received) {
      if (ChangeBus::TopicKey(c) == topic) got.push_back(c);
    }
    ASSERT_EQ(got.size(), expected.size()) << topic;
    for (size_t i = 0; i < got.size(); ++i) ExpectSameChange(got[i], expected[i]);
  }

  // B answers on every bucket. Each bucket is one channel kept in order, so once A has B's
  // answers, its own changes (published earlier on the same channels) have reached it too.
  std::vector<Change> answers = PublishOnEveryBucket(*b_, Change::Kind::kStreamCreated, 5);
  ASSERT_TRUE(seen_by_a_.WaitForCount(answers.size(), std::chrono::seconds(20)));
  std::vector<Change> at_a = seen_by_a_.Changes();
  ASSERT_EQ(at_a.size(), answers.size());
  for (size_t i = 0; i < at_a.size(); ++i) {
    auto it = std::find_if(answers.begin(), answers.end(),
                           [&](const Change& c) { return c.id == at_a[i].id; });
    ASSERT_NE(it, answers.end()) << at_a[i].id;
    ExpectSameChange(at_a[i], *it);
  }
  EXPECT_EQ(a_->stats().own_ignored, static_cast<int64_t>(sent.size()));
  // B's own answers come back to it on its own connections, at their own pace.
  EXPECT_TRUE(WaitUntil([&] { return b_->stats().own_ignored == 16; }, std::chrono::seconds(20)))
      << b_->stats().own_ignored;
  EXPECT_EQ(a_->stats().published, static_cast<int64_t>(sent.size()));
  EXPECT_EQ(b_->stats().received, static_cast<int64_t>(sent.size()));
  EXPECT_EQ(seen_by_a_.ResyncCount(), 0);  // the first subscription is not a resynchronisation
  EXPECT_EQ(seen_by_b_.ResyncCount(), 0);
}

TEST_P(ChangeBusTest, StoreNotifiersDeliverLocallyAtOnceAndToTheOtherProcess) {
  // Two stores' wiring: pool, notifier, bus.
  RedisStoreOptions options;
  options.cluster.seeds = {{"127.0.0.1", ports_[0]}};
  auto pool_1 = ClientPool::Create(options);
  auto pool_2 = ClientPool::Create(options);
  ASSERT_TRUE(pool_1.ok() && pool_2.ok());
  ASSERT_NE((*pool_1)->process_id(), (*pool_2)->process_id());
  RedisNotifier notifier_1, notifier_2;
  RecordingObserver local_1, local_2;
  notifier_1.SetObserver(&local_1);
  notifier_2.SetObserver(&local_2);
  ChangeBus bus_1(**pool_1, notifier_1), bus_2(**pool_2, notifier_2);
  ASSERT_TRUE(bus_1.Start().ok());
  ASSERT_TRUE(bus_2.Start().ok());
  notifier_1.SetBus(&bus_1);
  notifier_2.SetBus(&bus_2);

  Change change;
  change.kind = Change::Kind::kExecutionCreated;
  change.id = "exec";
  change.agent = "agent";
  change.instance = "instance";
  change.delegate = "delegate";
  notifier_1.Notify(change);
  ASSERT_EQ(local_1.Count(), 1u);  // before Notify returned
  ASSERT_TRUE(local_2.WaitForCount(1, std::chrono::seconds(20)));
  ExpectSameChange(local_2.Changes()[0], change);
  notifier_1.SetBus(nullptr);
  notifier_2.SetBus(nullptr);
}

TEST_P(ChangeBusTest, BucketsAreSpreadOverTheMasters) {
  if (!GetParam()) GTEST_SKIP() << "one node";
  std::unique_ptr<ClusterClient> client = Client();
  ASSERT_NE(client, nullptr);
  std::vector<std::string> nodes;
  for (int b = 0; b < kChangeBuckets; ++b)
    nodes.push_back(client->NodeForSlot(KeySlot(ChangeBus::Channel(b))));
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  EXPECT_EQ(nodes.size(), 3u);
}

TEST_P(ChangeBusTest, LostSubscriptionIsRestoredWithAResync) {
  // Redis closes every pub/sub connection, as when a node restarts.
  OnEveryNode({"CLIENT", "KILL", "TYPE", "pubsub"});
  // One resync when the loss is seen, one when every bucket is subscribed again.
  ASSERT_TRUE(seen_by_b_.WaitForResyncs(2, std::chrono::seconds(20)));
  ASSERT_TRUE(seen_by_a_.WaitForResyncs(2, std::chrono::seconds(20)));
  EXPECT_GE(b_->stats().losses, 1);
  EXPECT_GE(b_->stats().subscriptions, 2);
  // The second resync is delivered once every bucket is subscribed again: all later changes
  // arrive.
  std::vector<Change> sent = PublishOnEveryBucket(*a_, Change::Kind::kStreamCompleted, 9);
  ASSERT_TRUE(seen_by_b_.WaitForCount(sent.size(), std::chrono::seconds(20)));
  EXPECT_EQ(seen_by_b_.ResyncCount(), 2 * b_->stats().losses);
}

TEST(ChangeBusAuthTest, BusesAuthenticateWithAnAclUser) {
  RedisProcess server;
  absl::Status started = server.Start();
  ASSERT_TRUE(started.ok()) << started;
  auto admin = RedisConnection::Connect("127.0.0.1", server.port());
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(
      (*admin)->Run({"ACL", "SETUSER", "fabric", "on", ">s3cret", "~*", "&*", "+@all"}).ok());
  ASSERT_TRUE((*admin)->Run({"ACL", "SETUSER", "default", "off"}).ok());
  ChangeBusOptions options;
  options.cluster.seeds = {{"127.0.0.1", server.port()}};
  options.cluster.connection.username = "fabric";
  options.cluster.connection.password = "s3cret";
  BusPair buses;
  ASSERT_NO_FATAL_FAILURE(buses.Start(options));
  std::vector<Change> sent = PublishOnEveryBucket(*buses.a, Change::Kind::kStreamCreated, 3);
  ASSERT_TRUE(buses.seen_by_b.WaitForCount(sent.size(), std::chrono::seconds(20)));

  // Without the password nothing subscribes.
  options.cluster.connection.password = "wrong";
  options.start_timeout = std::chrono::milliseconds(500);
  RecordingObserver unused;
  EXPECT_FALSE(ChangeBus::Create(options, &unused).ok());
}

// One bus on a standalone server that the test stops (SIGSTOP) to play a node that hangs, with
// a short command timeout.
class ChangeBusSilenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = server_.Start();
    ASSERT_TRUE(started.ok()) << started;
    options_.cluster.seeds = {{"127.0.0.1", server_.port()}};
    options_.cluster.connection.command_timeout = std::chrono::milliseconds(300);
    options_.process_id = "p";
  }

  // Creates the bus with `options_` and reads the server's process ID.
  void Start() {
    auto bus = ChangeBus::Create(options_, &seen_);
    ASSERT_TRUE(bus.ok()) << bus.status();
    bus_ = *std::move(bus);
    auto connection = RedisConnection::Connect("127.0.0.1", server_.port());
    ASSERT_TRUE(connection.ok());
    auto info = (*connection)->Run({"INFO", "server"});
    ASSERT_TRUE(info.ok());
    const size_t at = info->str.find("process_id:");
    ASSERT_NE(at, std::string::npos);
    const size_t from = at + std::string_view("process_id:").size();
    ASSERT_TRUE(absl::SimpleAtoi(info->str.substr(from, info->str.find('\r', at) - from), &pid_));
  }

  RedisProcess server_;
  ChangeBusOptions options_;
  RecordingObserver seen_;
  std::unique_ptr<ChangeBus> bus_;
  int pid_ = 0;
};

TEST_F(ChangeBusSilenceTest, SilentNodeIsNoticedByPing) {
  options_.ping_interval = std::chrono::milliseconds(100);
  ASSERT_NO_FATAL_FAILURE(Start());

  // A stopped server keeps its connections open but answers nothing, like a node cut off by
  // the network: only the unanswered PING tells.
  ASSERT_EQ(kill(pid_, SIGSTOP), 0);
  const bool lost = WaitUntil([&] { return bus_->stats().losses >= 1; }, std::chrono::seconds(10));
  ASSERT_EQ(kill(pid_, SIGCONT), 0);
  ASSERT_TRUE(lost);
  // One resync for the loss, one once the server answers again and the bus is subscribed.
  ASSERT_TRUE(seen_.WaitForResyncs(2, std::chrono::seconds(20)));
  EXPECT_GE(bus_->stats().subscriptions, 2);
}

TEST_F(ChangeBusSilenceTest, StopsPromptlyWhenRedisHangs) {
  options_.max_batch = 100;
  ASSERT_NO_FATAL_FAILURE(Start());
  // A stopped server accepts connections (the kernel does) and answers nothing: each attempt
  // costs a command timeout. Of the 50 batches waiting, one is tried; the rest are dropped.
  ASSERT_EQ(kill(pid_, SIGSTOP), 0);
  for (int i = 0; i < 5000; ++i)
    bus_->Publish(StreamChange(Change::Kind::kStreamItemsWritten, "s", i));
  const Clock::time_point start = Clock::now();
  bus_.reset();
  const auto took = Clock::now() - start;
  ASSERT_EQ(kill(pid_, SIGCONT), 0);
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

TEST_P(ChangeBusTest, MovedBucketIsFollowedWithAResync) {
  if (!GetParam()) GTEST_SKIP() << "slots move only in a cluster";
  std::unique_ptr<ClusterClient> client = Client();
  ASSERT_NE(client, nullptr);
  const int bucket = 5;
  const int slot = KeySlot(ChangeBus::Channel(bucket));
  const std::string source = client->NodeForSlot(slot);
  std::string target;
  for (int port : ports_) {
    if ("127.0.0.1:" + std::to_string(port) != source) target = "127.0.0.1:" + std::to_string(port);
  }
  auto target_connection = RedisConnection::Connect("127.0.0.1", PortOf(target));
  ASSERT_TRUE(target_connection.ok());
  auto target_id = (*target_connection)->Run({"CLUSTER", "MYID"});
  ASSERT_TRUE(target_id.ok());
  // The slot holds no key: assigning it is the whole migration (target first, as redis-cli does).
  auto source_connection = RedisConnection::Connect("127.0.0.1", PortOf(source));
  ASSERT_TRUE(source_connection.ok());
  const std::string s = std::to_string(slot);
  for (RedisConnection* node : {target_connection->get(), source_connection->get()}) {
    auto set = node->Run({"CLUSTER", "SETSLOT", s, "NODE", target_id->str});
    ASSERT_TRUE(set.ok()) << set.status();
  }
  // The loss of the moved bucket's subscription, then the subscription to its new owner.
  ASSERT_TRUE(seen_by_b_.WaitForResyncs(2, std::chrono::seconds(20)));

  // Both the publisher (MOVED) and the subscriber now use the new owner.
  Change change = StreamChange(Change::Kind::kStreamItemsWritten, StreamInBucket(bucket), 77);
  a_->Publish(change);
  ASSERT_TRUE(seen_by_b_.WaitForCount(1, std::chrono::seconds(20)));
  ExpectSameChange(seen_by_b_.Changes()[0], change);
}

TEST_P(ChangeBusTest, ThroughputAndLatency) {
  // Latency: one change at a time, from Publish to the other bus's observer.
  constexpr int kRoundTrips = 300;
  std::vector<double> micros;
  for (int i = 0; i < kRoundTrips; ++i) {
    const Clock::time_point start = Clock::now();
    a_->Publish(StreamChange(Change::Kind::kStreamItemsWritten, "latency", i));
    ASSERT_TRUE(seen_by_b_.WaitForCount(i + 1, std::chrono::seconds(10)));
    micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::sort(micros.begin(), micros.end());
  // Throughput: a burst over every bucket.
  constexpr int kBurst = 50000;
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < kBurst; ++i) {
    a_->Publish(StreamChange(Change::Kind::kStreamItemsWritten, "s" + std::to_string(i % 64), i));
  }
  ASSERT_TRUE(seen_by_b_.WaitForCount(kRoundTrips + kBurst, std::chrono::seconds(60)))
      << seen_by_b_.Count();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "[ change bus %s ] latency median %.0f us, p99 %.0f us; %d changes in %.2f s: "
      "%.0f changes/s in %lld rounds\n",
      GetParam() ? "cluster" : "standalone", micros[micros.size() / 2],
      micros[micros.size() * 99 / 100], kBurst, seconds, kBurst / seconds,
      static_cast<long long>(a_->stats().publish_rounds));
  EXPECT_EQ(a_->stats().dropped, 0);
}

TEST_P(ChangeBusTest, StopsPromptlyEvenWhenRedisIsGone) {
  // Healthy: immediate.
  Clock::time_point start = Clock::now();
  a_.reset();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  // Redis gone while changes wait to be published and the subscriber is reconnecting.
  if (server_ != nullptr) server_->Kill();
  if (cluster_ != nullptr) {
    for (auto& node : cluster_->nodes()) node->Kill();
  }
  for (int i = 0; i < 100; ++i)
    b_->Publish(StreamChange(Change::Kind::kStreamItemsWritten, "s" + std::to_string(i), i));
  start = Clock::now();
  b_.reset();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

}  // namespace
}  // namespace perper::storage::redis
