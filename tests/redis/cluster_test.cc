// SPDX-License-Identifier: MIT
// ClusterClient against a real 3-master Redis Cluster: routing over every slot, MOVED after a
// slot migration, ASK and TRYAGAIN during one, CLUSTERDOWN, scripts inside one hash tag.
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/cluster_client.h"
#include "perper/storage/redis/key_slot.h"
#include "perper/storage/redis/redis_connection.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using perper::testing::RedisCluster;

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = cluster_.Start();
    ASSERT_TRUE(started.ok()) << started;
    client_ = Client();
    ASSERT_NE(client_, nullptr);
    ASSERT_TRUE(client_->cluster_mode());
  }

  std::unique_ptr<ClusterClient> Client(
      std::chrono::milliseconds retry_deadline = std::chrono::milliseconds(10000)) {
    ClusterOptions options;
    options.seeds = {{"127.0.0.1", cluster_.nodes()[0]->port()}};
    options.retry_deadline = retry_deadline;
    auto client = ClusterClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // A direct connection to the node at "127.0.0.1:port".
  std::unique_ptr<RedisConnection> Direct(const std::string& address) {
    int port = 0;
    EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port));
    auto connection = RedisConnection::Connect("127.0.0.1", port);
    EXPECT_TRUE(connection.ok()) << connection.status();
    return connection.ok() ? *std::move(connection) : nullptr;
  }

  std::string MyId(RedisConnection& node) {
    auto id = node.Run({"CLUSTER", "MYID"});
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? id->str : "";
  }

  // A master other than `address`.
  std::string OtherMaster(const std::string& address) {
    for (int slot = 0; slot < kSlotCount; ++slot) {
      std::string node = client_->NodeForSlot(slot);
      if (node != address) return node;
    }
    return "";
  }

  // Moves `slot` (and `keys` in it) from its master to another master, as a reshard does;
  // answers the new master's address.
  std::string MoveSlotToAnotherMaster(int slot, const std::vector<std::string>& keys);

  void ExpectOk(const absl::StatusOr<RedisReply>& reply) {
    EXPECT_TRUE(reply.ok()) << reply.status();
    if (reply.ok()) {
      EXPECT_FALSE(reply->is_error()) << reply->str;
    }
  }

  RedisCluster cluster_{3, 0};
  std::unique_ptr<ClusterClient> client_;
};

TEST_F(ClusterTest, KeySlotsMatchTheServer) {
  auto node = Direct(cluster_.nodes()[0]->address());
  ASSERT_NE(node, nullptr);
  std::vector<std::string> keys = {"foo", "{user}.a", "x{}{y}", "a{b", "{{c}}", "", "123456789"};
  for (int i = 0; i < 200; ++i) keys.push_back("key:" + std::to_string(i * 7919));
  for (const std::string& key : keys) {
    auto slot = node->Run({"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(slot.ok()) << slot.status();
    EXPECT_EQ(KeySlot(key), slot->integer) << key;
  }
}

TEST_F(ClusterTest, SetAndGetInEverySlotThroughOneClient) {
  // One key per slot.
  std::vector<std::string> key_of_slot(kSlotCount);
  int found = 0;
  for (int i = 0; found < kSlotCount; ++i) {
    std::string key = "k" + std::to_string(i);
    std::string& slot_key = key_of_slot[KeySlot(key)];
    if (slot_key.empty()) {
      slot_key = key;
      ++found;
    }
  }
  for (int slot = 0; slot < kSlotCount; ++slot) {
    ExpectOk(client_->Command(key_of_slot[slot], {"SET", key_of_slot[slot], std::to_string(slot)}));
  }
  for (int slot = 0; slot < kSlotCount; ++slot) {
    auto get = client_->CommandInSlot(slot, {"GET", key_of_slot[slot]});
    ASSERT_TRUE(get.ok()) << get.status();
    ASSERT_EQ(get->str, std::to_string(slot));
  }
  EXPECT_EQ(client_->stats().moved, 0);
  // The keys really are spread over the three masters.
  int64_t total = 0;
  for (auto& process : cluster_.nodes()) {
    auto node = Direct(process->address());
    auto size = node->Run({"DBSIZE"});
    ASSERT_TRUE(size.ok());
    EXPECT_GT(size->integer, kSlotCount / 4);
    total += size->integer;
  }
  EXPECT_EQ(total, kSlotCount);
}

// Moves `slot` with its keys from `source` to `target` as redis-cli --cluster reshard does.
void MigrateSlot(int slot, RedisConnection& source, RedisConnection& target, int target_port,
                 const std::vector<std::string>& keys, std::vector<RedisConnection*> all_masters,
                 const std::string& source_id, const std::string& target_id) {
  std::string s = std::to_string(slot);
  ASSERT_TRUE(target.Run({"CLUSTER", "SETSLOT", s, "IMPORTING", source_id}).ok());
  ASSERT_TRUE(source.Run({"CLUSTER", "SETSLOT", s, "MIGRATING", target_id}).ok());
  for (const std::string& key : keys) {
    auto migrated =
        source.Run({"MIGRATE", "127.0.0.1", std::to_string(target_port), key, "0", "5000"});
    ASSERT_TRUE(migrated.ok()) << migrated.status();
  }
  for (RedisConnection* master : all_masters) {
    ASSERT_TRUE(master->Run({"CLUSTER", "SETSLOT", s, "NODE", target_id}).ok());
  }
}

std::string ClusterTest::MoveSlotToAnotherMaster(int slot, const std::vector<std::string>& keys) {
  const std::string source_address = client_->NodeForSlot(slot);
  const std::string target_address = OtherMaster(source_address);
  auto source = Direct(source_address);
  auto target = Direct(target_address);
  std::vector<std::unique_ptr<RedisConnection>> masters;
  std::vector<RedisConnection*> all;
  for (auto& process : cluster_.nodes()) {
    masters.push_back(Direct(process->address()));
    all.push_back(masters.back().get());
  }
  int target_port = std::stoi(target_address.substr(target_address.rfind(':') + 1));
  MigrateSlot(slot, *source, *target, target_port, keys, all, MyId(*source), MyId(*target));
  return target_address;
}

TEST_F(ClusterTest, FollowsMovedAfterASlotMigration) {
  const std::string key = "moved-key";
  const int slot = KeySlot(key);
  ExpectOk(client_->Command(key, {"SET", key, "before"}));
  const std::string target_address = MoveSlotToAnotherMaster(slot, {key});
  auto target = Direct(target_address);

  auto get = client_->Command(key, {"GET", key});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->str, "before");
  EXPECT_EQ(client_->stats().moved, 1);
  EXPECT_EQ(client_->NodeForSlot(slot), target_address);
  // The map now knows: no second redirection.
  ExpectOk(client_->Command(key, {"SET", key, "after"}));
  EXPECT_EQ(client_->stats().moved, 1);
  auto direct = target->Run({"GET", key});
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->str, "after");
}

TEST_F(ClusterTest, FollowsAskAndRetriesTryAgainDuringAMigration) {
  const std::string migrated_key = "{mig}.a";
  const std::string staying_key = "{mig}.b";
  const int slot = KeySlot(migrated_key);
  ExpectOk(client_->Command(migrated_key, {"SET", migrated_key, "A"}));
  ExpectOk(client_->Command(staying_key, {"SET", staying_key, "B"}));
  const std::string source_address = client_->NodeForSlot(slot);
  const std::string target_address = OtherMaster(source_address);
  auto source = Direct(source_address);
  auto target = Direct(target_address);
  const std::string source_id = MyId(*source);
  const std::string target_id = MyId(*target);
  const std::string s = std::to_string(slot);
  const std::string target_port = target_address.substr(target_address.rfind(':') + 1);
  ASSERT_TRUE(target->Run({"CLUSTER", "SETSLOT", s, "IMPORTING", source_id}).ok());
  ASSERT_TRUE(source->Run({"CLUSTER", "SETSLOT", s, "MIGRATING", target_id}).ok());
  ASSERT_TRUE(source->Run({"MIGRATE", "127.0.0.1", target_port, migrated_key, "0", "5000"}).ok());

  // The moved key: the source answers ASK, the client asks the target once.
  auto get = client_->Command(migrated_key, {"GET", migrated_key});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->str, "A");
  EXPECT_EQ(client_->stats().ask, 1);
  EXPECT_EQ(client_->NodeForSlot(slot), source_address);  // ASK does not change the map
  // The key still on the source is served there.
  auto staying = client_->Command(staying_key, {"GET", staying_key});
  ASSERT_TRUE(staying.ok());
  EXPECT_EQ(staying->str, "B");
  EXPECT_EQ(client_->stats().ask, 1);

  // A multi-key command over keys split by the migration: TRYAGAIN, retried until the deadline.
  auto impatient = Client(std::chrono::milliseconds(300));
  ASSERT_NE(impatient, nullptr);
  auto both = impatient->Command(migrated_key, {"MGET", migrated_key, staying_key});
  EXPECT_TRUE(absl::IsUnavailable(both.status())) << both.status();
  EXPECT_TRUE(absl::StrContains(both.status().message(), "TRYAGAIN")) << both.status();
  EXPECT_GT(impatient->stats().retries, 0);

  // Finish the migration; the same command then succeeds after one MOVED.
  ASSERT_TRUE(source->Run({"MIGRATE", "127.0.0.1", target_port, staying_key, "0", "5000"}).ok());
  for (auto& process : cluster_.nodes()) {
    auto master = Direct(process->address());
    ASSERT_TRUE(master->Run({"CLUSTER", "SETSLOT", s, "NODE", target_id}).ok());
  }
  auto after = impatient->Command(migrated_key, {"MGET", migrated_key, staying_key});
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->elements.size(), 2u);
  EXPECT_EQ(after->elements[0].str, "A");
  EXPECT_EQ(after->elements[1].str, "B");
  EXPECT_EQ(impatient->NodeForSlot(slot), target_address);
}

TEST_F(ClusterTest, KeepsWorkingWhileRedisCliReshardsASlot) {
  const std::string key = "resharded";
  ExpectOk(client_->Command(key, {"SET", key, "1"}));
  const std::string source_address = client_->NodeForSlot(KeySlot(key));
  const std::string target_address = OtherMaster(source_address);
  auto source = Direct(source_address);
  auto target = Direct(target_address);
  auto moved = perper::testing::RedisCli({"--cluster", "reshard", source_address, "--cluster-from",
                                          MyId(*source), "--cluster-to", MyId(*target),
                                          "--cluster-slots", "1", "--cluster-yes"});
  ASSERT_TRUE(moved.ok()) << moved.status();
  // Which slot moved is redis-cli's choice: ask the target which slot it owns that the
  // client's (not yet updated) map still gives to the source.
  auto slots = target->Run({"CLUSTER", "SLOTS"});
  ASSERT_TRUE(slots.ok()) << slots.status();
  const int target_port = std::stoi(target_address.substr(target_address.rfind(':') + 1));
  int moved_slot = -1;
  for (const RedisReply& range : slots->elements) {
    if (range.elements[2].elements[1].integer != target_port) continue;
    for (long long s = range.elements[0].integer; s <= range.elements[1].integer; ++s) {
      if (client_->NodeForSlot(static_cast<int>(s)) == source_address) moved_slot = s;
    }
  }
  ASSERT_GE(moved_slot, 0);
  std::string moved_key;
  // Find a key in that slot, then write and read it through the client.
  for (int i = 0;; ++i) {
    std::string candidate = "r" + std::to_string(i);
    if (KeySlot(candidate) == moved_slot) {
      moved_key = candidate;
      break;
    }
  }
  ExpectOk(client_->Command(moved_key, {"SET", moved_key, "x"}));
  EXPECT_EQ(client_->stats().moved, 1);
  EXPECT_EQ(client_->NodeForSlot(moved_slot), target_address);
  auto direct = target->Run({"GET", moved_key});
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->str, "x");
  auto untouched = client_->Command(key, {"GET", key});
  ASSERT_TRUE(untouched.ok());
  EXPECT_EQ(untouched->str, "1");
}

TEST_F(ClusterTest, RetriesClusterDownUntilTheSlotIsServedAgain) {
  const std::string key = "down-key";
  const std::string slot = std::to_string(KeySlot(key));
  ExpectOk(client_->Command(key, {"SET", key, "kept"}));
  auto owner = Direct(client_->NodeForSlot(KeySlot(key)));
  ASSERT_NE(owner, nullptr);
  ASSERT_TRUE(owner->Run({"CLUSTER", "DELSLOTS", slot}).ok());

  // Nobody serves the slot: CLUSTERDOWN, retried (with map reloads) until the deadline.
  auto impatient = Client(std::chrono::milliseconds(300));
  ASSERT_NE(impatient, nullptr);
  auto down = impatient->Command(key, {"GET", key});
  EXPECT_TRUE(absl::IsUnavailable(down.status())) << down.status();
  EXPECT_TRUE(absl::StrContains(down.status().message(), "CLUSTERDOWN")) << down.status();
  EXPECT_GT(impatient->stats().retries, 0);
  EXPECT_GT(impatient->stats().refreshes, 0);

  // Served again: the patient client's call goes through once the node says so.
  ASSERT_TRUE(owner->Run({"CLUSTER", "ADDSLOTS", slot}).ok());
  auto get = client_->Command(key, {"GET", key});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->str, "kept");
}

TEST_F(ClusterTest, ScriptRunsInsideOneHashTag) {
  const char* script =
      "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]);"
      "return redis.call('MGET', KEYS[1], KEYS[2])";
  auto reply = client_->RunScript(script, {"{order:1}.status", "{order:1}.result"}, {"done", "42"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->elements.size(), 2u);
  EXPECT_EQ(reply->elements[0].str, "done");
  EXPECT_EQ(reply->elements[1].str, "42");

  // Another tag lives on another node whose script cache lacks the script: NOSCRIPT → EVAL.
  std::string other_tag;
  const std::string first_node = client_->NodeForSlot(KeySlot("{order:1}"));
  for (int i = 2;; ++i) {
    other_tag = "{order:" + std::to_string(i) + "}";
    if (client_->NodeForSlot(KeySlot(other_tag)) != first_node) break;
  }
  auto elsewhere =
      client_->RunScript(script, {other_tag + ".status", other_tag + ".result"}, {"open", "0"});
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.status();
  EXPECT_EQ(elsewhere->elements[0].str, "open");

  auto failing = client_->RunScript("return redis.call('INCR', KEYS[1])", {"{order:1}.status"}, {});
  EXPECT_FALSE(failing.ok());
}

TEST_F(ClusterTest, RunScriptsAnswersEachScriptInOrderWhateverItsNode) {
  const char* script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";
  // Tags on every master, one key migrated after the map was learned (MOVED), one script
  // failing on the server and one refused before sending.
  std::vector<std::string> keys;
  for (int i = 0; i < 24; ++i) keys.push_back("{batch:" + std::to_string(i) + "}.k");
  const std::string moved_key = keys[5];
  const int moved_slot = KeySlot(moved_key);
  const std::string target_address = MoveSlotToAnotherMaster(moved_slot, {});
  ExpectOk(client_->Command("{batch:wrong}.k", {"SET", "{batch:wrong}.k", "text"}));

  std::vector<std::string> values;
  std::vector<ClusterClient::Script> scripts;
  for (size_t i = 0; i < keys.size(); ++i) values.push_back("value " + std::to_string(i));
  for (size_t i = 0; i < keys.size(); ++i) scripts.push_back({script, {keys[i]}, {values[i]}});
  scripts.push_back({"return redis.call('INCR', KEYS[1])", {"{batch:wrong}.k"}, {}});
  scripts.push_back({script, {"{a}.x", "{b}.x"}, {"never"}});

  std::vector<absl::StatusOr<RedisReply>> replies = client_->RunScripts(scripts);
  ASSERT_EQ(replies.size(), keys.size() + 2);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(replies[i].ok()) << i << ": " << replies[i].status();
    EXPECT_EQ(replies[i]->str, values[i]);
    auto stored = client_->Command(keys[i], {"GET", keys[i]});
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->str, values[i]);
  }
  EXPECT_EQ(replies[keys.size()].status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(replies[keys.size() + 1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->stats().moved, 1);
  EXPECT_EQ(client_->NodeForSlot(moved_slot), target_address);
}

TEST_F(ClusterTest, AnyReachableSeedIsEnough) {
  int dead_port = 0;
  {
    perper::testing::RedisProcess gone;
    ASSERT_TRUE(gone.Start().ok());
    dead_port = gone.port();
  }
  ClusterOptions options;
  options.seeds = {{"127.0.0.1", dead_port}, {"127.0.0.1", cluster_.nodes()[2]->port()}};
  auto client = ClusterClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->cluster_mode());
  ExpectOk((*client)->Command("seeded", {"SET", "seeded", "1"}));
  auto get = client_->Command("seeded", {"GET", "seeded"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->str, "1");
  EXPECT_EQ((*client)->stats().moved, 0);
}

TEST_F(ClusterTest, OneClientSharedByThreads) {
  // The internal mutex serialises calls: every increment lands exactly once.
  constexpr int kThreads = 4;
  constexpr int kIncrements = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this] {
      for (int i = 0; i < kIncrements; ++i) {
        std::string key = "shared:" + std::to_string(i % 10);
        auto incr = client_->Command(key, {"INCR", key});
        ASSERT_TRUE(incr.ok()) << incr.status();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int k = 0; k < 10; ++k) {
    std::string key = "shared:" + std::to_string(k);
    auto value = client_->Command(key, {"GET", key});
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(value->str, std::to_string(kThreads * kIncrements / 10));
  }
}

TEST_F(ClusterTest, CrossSlotScriptIsRefusedBeforeSending) {
  auto reply = client_->RunScript("return 1", {"{a}.x", "{b}.x"}, {});
  EXPECT_TRUE(absl::IsInvalidArgument(reply.status())) << reply.status();
  // A script meant for a standalone server only is refused by name in a cluster.
  auto standalone = client_->RunStandaloneScript("return 1", {"{a}.x", "{b}.x"}, {});
  EXPECT_TRUE(absl::IsFailedPrecondition(standalone.status())) << standalone.status();
  ClusterStats stats = client_->stats();
  EXPECT_EQ(stats.moved + stats.ask + stats.retries, 0);
}

}  // namespace
}  // namespace perper::storage::redis
