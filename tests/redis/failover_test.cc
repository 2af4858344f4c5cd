// SPDX-License-Identifier: MIT
// ClusterClient across a failover: a master of a 3-master/3-replica cluster is killed, its
// replica is promoted after cluster-node-timeout (1000 ms), and the client refreshes its slot
// map and goes on without the caller retrying.
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/cluster_client.h"
#include "perper/storage/redis/key_slot.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using perper::testing::RedisCluster;

TEST(ClusterFailoverTest, ClientFollowsThePromotedReplica) {
  RedisCluster cluster(3, 1);
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  ClusterOptions options;
  options.seeds = {{"127.0.0.1", cluster.nodes()[0]->port()}};
  options.retry_deadline = std::chrono::seconds(20);
  auto created = ClusterClient::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  ClusterClient& client = **created;

  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("fo:" + std::to_string(i));
  for (const std::string& key : keys) {
    auto set = client.Command(key, {"SET", key, key + "-v"});
    ASSERT_TRUE(set.ok()) << set.status();
    // Replication is asynchronous: wait for the replica so the failover keeps every key.
    auto replicated = client.Command(key, {"WAIT", "1", "2000"});
    ASSERT_TRUE(replicated.ok()) << replicated.status();
    ASSERT_EQ(replicated->integer, 1);
  }

  const std::string victim_key = keys[0];
  const int slot = KeySlot(victim_key);
  const std::string old_master = client.NodeForSlot(slot);
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(old_master.substr(old_master.rfind(':') + 1), &port));
  ASSERT_NE(cluster.NodeByPort(port), nullptr);
  cluster.NodeByPort(port)->Kill();

  // One call: the client retries, refreshes the map and lands on the promoted replica.
  auto start = std::chrono::steady_clock::now();
  auto set = client.Command(victim_key, {"SET", victim_key, "after-failover"});
  ASSERT_TRUE(set.ok()) << set.status();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, options.retry_deadline);
  EXPECT_NE(client.NodeForSlot(slot), old_master);
  EXPECT_GT(client.stats().refreshes, 0);

  auto get = client.Command(victim_key, {"GET", victim_key});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->str, "after-failover");
  for (size_t i = 1; i < keys.size(); ++i) {
    auto value = client.Command(keys[i], {"GET", keys[i]});
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(value->str, keys[i] + "-v");
  }
}

}  // namespace
}  // namespace perper::storage::redis
