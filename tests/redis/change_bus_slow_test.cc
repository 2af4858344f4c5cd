// SPDX-License-Identifier: MIT
// ChangeBus across a failover: a master of a 3-master/3-replica cluster is killed (SIGKILL);
// after its replica is promoted the subscribers subscribe again, deliver kResync, and changes
// published afterwards on every bucket arrive. About 10 s.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "perper/storage/redis/change_bus.h"
#include "perper/storage/redis/cluster_client.h"
#include "perper/storage/redis/key_slot.h"
#include "tests/redis/change_bus_test_util.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using perper::testing::RedisCluster;

TEST(ChangeBusFailoverTest, SubscribersResyncAfterTheMasterDiesAndChangesFlowAgain) {
  RedisCluster cluster(3, 1);
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  ChangeBusOptions options;
  options.cluster.seeds = {{"127.0.0.1", cluster.nodes()[0]->port()}};
  BusPair buses;
  ASSERT_NO_FATAL_FAILURE(buses.Start(options));
  ChangeBus& a = *buses.a;
  RecordingObserver& seen_by_a = buses.seen_by_a;
  RecordingObserver& seen_by_b = buses.seen_by_b;

  PublishOnEveryBucket(a, Change::Kind::kStreamItemsWritten, 1);
  ASSERT_TRUE(seen_by_b.WaitForCount(kChangeBuckets, std::chrono::seconds(20)));

  ClusterOptions client_options;
  client_options.seeds = options.cluster.seeds;
  auto client = ClusterClient::Create(client_options);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string victim = (*client)->NodeForSlot(KeySlot(ChangeBus::Channel(0)));
  ASSERT_NE(cluster.NodeByPort(PortOf(victim)), nullptr);
  cluster.NodeByPort(PortOf(victim))->Kill();

  // cluster-node-timeout is 1 s: the replica is promoted within a few seconds. A resync when
  // the loss is seen, another once subscribed to the promoted replica.
  ASSERT_TRUE(seen_by_b.WaitForResyncs(2, std::chrono::seconds(30)));
  ASSERT_TRUE(seen_by_a.WaitForResyncs(2, std::chrono::seconds(30)));
  const size_t before = seen_by_b.Count();
  PublishOnEveryBucket(a, Change::Kind::kStreamItemsWritten, 2);
  ASSERT_TRUE(seen_by_b.WaitForCount(before + kChangeBuckets, std::chrono::seconds(30)))
      << seen_by_b.Count() - before << " of " << kChangeBuckets;
  std::vector<Change> received = seen_by_b.Changes();
  for (int bucket = 0; bucket < kChangeBuckets; ++bucket) {
    const std::string stream = StreamInBucket(bucket);
    bool found = false;
    for (size_t i = before; i < received.size(); ++i)
      found = found || (received[i].id == stream && received[i].key == 2);
    EXPECT_TRUE(found) << "bucket " << bucket;
  }
  EXPECT_GE(buses.b->stats().losses, 1);
  EXPECT_EQ(seen_by_b.ResyncCount(), 2 * buses.b->stats().losses);
  EXPECT_EQ(seen_by_a.Count(), 0u);  // its own changes never come back
}

}  // namespace
}  // namespace perper::storage::redis
