// SPDX-License-Identifier: MIT
// kill -9 of a Redis master under a write load through three Fabrics started with
// --redis-wait-replicas 1 on a 3-master/3-replica cluster: its replica is promoted, every write a
// Fabric acknowledged (stream items, dictionary sets) is readable afterwards, and a call during
// the failover either succeeds or says UNAVAILABLE, never OK for a write that was not kept.
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/key_slot.h"
#include "tests/cluster/cluster_support.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using storage::redis::KeySlot;

constexpr std::chrono::seconds kCallTimeout(30);

// What the writers were told. Thread-safe.
struct Outcomes {
  absl::Mutex mu;
  std::map<std::string, std::vector<int64_t>> items ABSL_GUARDED_BY(mu);  // stream → acked keys
  std::map<std::pair<std::string, std::string>, int64_t> sets ABSL_GUARDED_BY(mu);
  std::map<int, int> codes ABSL_GUARDED_BY(mu);  // status code → count
  std::vector<std::string> unexpected ABSL_GUARDED_BY(mu);
  std::atomic<int> acked{0};

  void Record(const std::string& what, const grpc::Status& status) {
    absl::MutexLock lock(&mu);
    ++codes[status.error_code()];
    if (!status.ok() && status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      unexpected.push_back(absl::StrCat(what, ": ", Describe(status)));
    }
  }
};

// `count` names "<prefix><i>" whose tag {<kind>:<name>} (the Redis mode's key layout) lives on
// the master `port` (`on` true) or elsewhere (`on` false). Only picks which Redis node the test
// hits; the assertions do not depend on it.
std::vector<std::string> NamesServedBy(const std::vector<int>& owners, int port, bool on,
                                       const std::string& kind, const std::string& prefix,
                                       int count) {
  std::vector<std::string> names;
  for (int i = 0; static_cast<int>(names.size()) < count; ++i) {
    std::string name = absl::StrCat(prefix, i);
    if ((owners[KeySlot(absl::StrCat("{", kind, ":", name, "}"))] == port) == on) {
      names.push_back(name);
    }
  }
  return names;
}

TEST(ClusterFailoverTest, AcknowledgedWritesAreReadableAfterAMasterFailsOver) {
  FabricsOnCluster setup(
      {.masters = 3, .replicas_per_master = 1, .fabrics = 3, .wait_replicas = 1});
  ASSERT_TRUE(setup.Start());
  RedisCluster& cluster = setup.cluster();
  const std::vector<int> masters = MasterPorts(cluster);
  ASSERT_EQ(masters.size(), 3u);
  const int victim = masters[0];
  const int replica = ReplicaOf(cluster, victim);
  ASSERT_NE(replica, 0);
  const std::vector<int> owners = SlotOwners(cluster);

  // Each writer (one per Fabric) has streams and dictionaries on the victim and elsewhere.
  std::vector<std::vector<std::string>> streams(3);
  std::vector<std::vector<std::string>> dictionaries(3);
  std::set<std::string> on_victim;
  for (int w = 0; w < 3; ++w) {
    for (bool on : {true, false}) {
      for (const std::string& name :
           NamesServedBy(owners, victim, on, "s", absl::StrCat("fo-", w, on ? "-v" : "-o"), 2)) {
        streams[w].push_back(name);
        if (on) on_victim.insert(name);
      }
      for (const std::string& name :
           NamesServedBy(owners, victim, on, "d", absl::StrCat("fd-", w, on ? "-v" : "-o"), 1)) {
        dictionaries[w].push_back(name);
        if (on) on_victim.insert(name);
      }
    }
    auto stub = grpc2::FabricStreams::NewStub(setup.channel(w));
    for (const std::string& stream : streams[w]) {
      grpc2::StreamsCreateRequest create;
      create.mutable_stream()->set_stream(stream);
      google::protobuf::Empty empty;
      grpc::Status created = stub->Create(DeadlineContext(kCallTimeout).get(), create, &empty);
      ASSERT_TRUE(created.ok()) << stream << " " << Describe(created);
    }
  }

  Outcomes outcomes;
  std::atomic<bool> stop{false};
  ThreadGroup writers([&] { stop.store(true); });
  for (int w = 0; w < 3; ++w) {
    writers.Add([&, w] {
      auto streams_stub = grpc2::FabricStreams::NewStub(setup.channel(w));
      auto dictionary_stub = grpc2::FabricStatesDictionary::NewStub(setup.channel(w));
      for (int64_t j = 1; !stop.load(); ++j) {
        const std::string& stream = streams[w][j % streams[w].size()];
        grpc2::StreamsWriteItemRequest write;
        write.mutable_stream()->set_stream(stream);
        write.set_key(j);
        *write.mutable_value() = Int64Value(j);
        google::protobuf::Empty empty;
        grpc::Status written =
            streams_stub->WriteItem(DeadlineContext(kCallTimeout).get(), write, &empty);
        outcomes.Record(absl::StrCat("WriteItem ", stream, " ", j), written);
        if (written.ok()) {
          absl::MutexLock lock(&outcomes.mu);
          outcomes.items[stream].push_back(j);
          outcomes.acked.fetch_add(1);
        }

        const std::string& dictionary = dictionaries[w][j % dictionaries[w].size()];
        const std::string key = absl::StrCat("k", j);
        grpc::Status set = DictionarySet(*dictionary_stub, dictionary, key, j, kCallTimeout);
        outcomes.Record(absl::StrCat("Operate ", dictionary, " ", key), set);
        if (set.ok()) {
          absl::MutexLock lock(&outcomes.mu);
          outcomes.sets[{dictionary, key}] = j;
          outcomes.acked.fetch_add(1);
        }
      }
    });
  }

  ASSERT_TRUE(WaitFor([&] { return outcomes.acked.load() >= 600; }, std::chrono::seconds(60)));
  cluster.NodeByPort(victim)->Kill();
  // The replica takes over after cluster-node-timeout (1 s) and an election.
  ASSERT_TRUE(WaitFor([&] { return IsMaster(replica); }, std::chrono::seconds(30)));
  absl::Status settled = cluster.WaitUntilOk(std::chrono::seconds(30));
  ASSERT_TRUE(settled.ok()) << settled;
  // The load goes on after the failover, where it can: a write to the promoted master waits up
  // to the Fabric's WAIT timeout for a replica it no longer has, then fails.
  const int at_failover = outcomes.acked.load();
  ASSERT_TRUE(
      WaitFor([&] { return outcomes.acked.load() >= at_failover + 60; }, std::chrono::seconds(60)))
      << setup.Logs();
  stop.store(true);
  writers.JoinAll();

  {
    absl::MutexLock lock(&outcomes.mu);
    EXPECT_TRUE(outcomes.unexpected.empty()) << outcomes.unexpected.front();
    std::string codes;
    for (const auto& [code, count] : outcomes.codes) absl::StrAppend(&codes, code, "×", count, " ");
    RecordProperty("status_codes", codes);
    for (const auto& [stream, keys] : outcomes.items) EXPECT_FALSE(keys.empty()) << stream;
  }

  // The promoted master has no replica left, so a write there cannot be confirmed by one: it is
  // UNAVAILABLE, not OK.
  {
    auto streams_stub = grpc2::FabricStreams::NewStub(setup.channel(0));
    const std::string& stream = streams[0][0];
    ASSERT_EQ(on_victim.count(stream), 1u);
    grpc2::StreamsWriteItemRequest write;
    write.mutable_stream()->set_stream(stream);
    write.set_key(1'000'000'000);
    *write.mutable_value() = Int64Value(0);
    google::protobuf::Empty empty;
    grpc::Status written =
        streams_stub->WriteItem(DeadlineContext(kCallTimeout).get(), write, &empty);
    EXPECT_EQ(written.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(written);
    auto dictionary_stub = grpc2::FabricStatesDictionary::NewStub(setup.channel(0));
    grpc::Status set = DictionarySet(*dictionary_stub, dictionaries[0][0], "late", 1, kCallTimeout);
    EXPECT_EQ(set.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(set);
  }

  // A new replica for the promoted master: its slots take writes again (and listen calls, which
  // register a listener, a write too).
  {
    cluster.nodes().push_back(std::make_unique<RedisProcess>(/*cluster_node=*/true));
    RedisProcess& added = *cluster.nodes().back();
    absl::Status started = added.Start();
    ASSERT_TRUE(started.ok()) << started;
    auto joined =
        RedisCli({"--cluster", "add-node", added.address(), absl::StrCat("127.0.0.1:", replica),
                  "--cluster-slave", "--cluster-master-id", NodeId(replica)});
    ASSERT_TRUE(joined.ok()) << joined.status();
    ASSERT_TRUE(WaitFor([&] { return ReplicaOf(cluster, replica) == added.port(); },
                        std::chrono::seconds(30)));
    absl::Status synced = cluster.WaitUntilOk(std::chrono::seconds(30));
    ASSERT_TRUE(synced.ok()) << synced;
    auto dictionary_stub = grpc2::FabricStatesDictionary::NewStub(setup.channel(1));
    grpc::Status set = DictionarySet(*dictionary_stub, dictionaries[0][0], "late", 2, kCallTimeout);
    EXPECT_TRUE(set.ok()) << Describe(set);
  }

  // Every acknowledged write is there, read through another Fabric than its writer's.
  absl::MutexLock lock(&outcomes.mu);
  for (int w = 0; w < 3; ++w) {
    auto streams_stub = grpc2::FabricStreams::NewStub(setup.channel((w + 1) % 3));
    for (const std::string& stream : streams[w]) {
      const std::vector<int64_t>& acked = outcomes.items[stream];
      if (acked.empty()) continue;
      grpc2::StreamsListenItemsRequest request;
      request.mutable_stream()->set_stream(stream);
      auto context = DeadlineContext(std::chrono::seconds(60));
      auto reader = streams_stub->ListenItems(context.get(), request);
      std::set<int64_t> read;
      int64_t last = 0;
      grpc2::StreamsListenItemsResponse item;
      while (last < acked.back() && reader->Read(&item)) {
        EXPECT_GT(item.key(), last) << stream;
        EXPECT_EQ(IntOf(item.value()), item.key()) << stream;
        last = item.key();
        read.insert(last);
      }
      context->TryCancel();
      grpc::Status listened = reader->Finish();
      for (int64_t key : acked) {
        ASSERT_EQ(read.count(key), 1u) << stream << " lost " << key << " (read " << read.size()
                                       << " items, then " << Describe(listened) << ")";
      }
    }
  }
  for (const auto& [where, value] : outcomes.sets) {
    const auto& [dictionary, key] = where;
    auto stub = grpc2::FabricStatesDictionary::NewStub(setup.channel(value % 3));
    auto read = DictionaryGet(*stub, dictionary, key);
    ASSERT_TRUE(read.ok()) << read.status();
    ASSERT_EQ(*read, std::optional<int64_t>(value)) << dictionary << " lost " << key;
  }
}

}  // namespace
}  // namespace perper::testing
