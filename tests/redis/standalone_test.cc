// SPDX-License-Identifier: MIT
// RedisConnection and ClusterClient against one real standalone redis-server.
#include <string>

#include "absl/strings/match.h"
#include <gtest/gtest.h>

#include "perper/storage/redis/cluster_client.h"
#include "perper/storage/redis/redis_connection.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using perper::testing::RedisProcess;

class StandaloneTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start().ok()); }

  std::unique_ptr<RedisConnection> Connect() {
    auto connection = RedisConnection::Connect("127.0.0.1", server_.port());
    EXPECT_TRUE(connection.ok()) << connection.status();
    return connection.ok() ? *std::move(connection) : nullptr;
  }

  std::unique_ptr<ClusterClient> Client() {
    ClusterOptions options;
    options.seeds = {{"127.0.0.1", server_.port()}};
    auto client = ClusterClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  RedisProcess server_;
};

TEST_F(StandaloneTest, CommandsAreBinarySafe) {
  auto connection = Connect();
  ASSERT_NE(connection, nullptr);
  std::string key("k\0ey", 4);
  std::string value("v\0a\r\nl", 6);
  auto set = connection->Run({"SET", key, value});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->type, RedisReply::Type::kStatus);
  EXPECT_EQ(set->str, "OK");
  auto get = connection->Run({"GET", key});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->type, RedisReply::Type::kString);
  EXPECT_EQ(get->str, value);
  auto missing = connection->Run({"GET", "absent"});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->type, RedisReply::Type::kNil);
}

TEST_F(StandaloneTest, PipelineReturnsOneReplyPerCommandInOrder) {
  auto connection = Connect();
  ASSERT_NE(connection, nullptr);
  auto replies = connection->Pipeline({{"RPUSH", "list", "a", "b"},
                                       {"INCR", "counter"},
                                       {"INCR", "list"},
                                       {"LRANGE", "list", "0", "-1"}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 4u);
  EXPECT_EQ((*replies)[0].integer, 2);
  EXPECT_EQ((*replies)[1].integer, 1);
  // An error reply stays one reply of the pipeline, the others go on.
  EXPECT_TRUE((*replies)[2].is_error());
  EXPECT_TRUE(absl::IsFailedPrecondition(ReplyStatus((*replies)[2])));
  ASSERT_EQ((*replies)[3].elements.size(), 2u);
  EXPECT_EQ((*replies)[3].elements[0].str, "a");
  EXPECT_EQ((*replies)[3].elements[1].str, "b");
}

TEST_F(StandaloneTest, ErrorRepliesMapToStatuses) {
  auto connection = Connect();
  ASSERT_NE(connection, nullptr);
  ASSERT_TRUE(connection->Run({"SET", "s", "x"}).ok());
  auto wrong_type = connection->Run({"LPUSH", "s", "y"});
  EXPECT_TRUE(absl::IsFailedPrecondition(wrong_type.status())) << wrong_type.status();
  auto unknown = connection->Run({"NOSUCHCOMMAND"});
  EXPECT_TRUE(absl::IsInternal(unknown.status())) << unknown.status();

  // A script's error text is the server's; the Status keeps it bounded.
  std::string long_error(10000, 'x');
  auto raised = connection->Run({"EVAL", "return redis.error_reply(ARGV[1])", "0", long_error});
  EXPECT_FALSE(raised.ok());
  EXPECT_LE(raised.status().message().size(), kMaxErrorMessageBytes + 3);

  ASSERT_TRUE(connection->Run({"CONFIG", "SET", "maxmemory", "1"}).ok());
  auto oom = connection->Run({"SET", "big", "value"});
  EXPECT_TRUE(absl::IsResourceExhausted(oom.status())) << oom.status();
  ASSERT_TRUE(connection->Run({"CONFIG", "SET", "maxmemory", "0"}).ok());
}

TEST_F(StandaloneTest, AuthWithUsernameAndPassword) {
  auto admin = Connect();
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin->Run({"ACL", "SETUSER", "fabric", "on", ">s3cret", "~*", "+@all"}).ok());
  ConnectionOptions options;
  options.username = "fabric";
  options.password = "s3cret";
  auto connection = RedisConnection::Connect("127.0.0.1", server_.port(), options);
  ASSERT_TRUE(connection.ok()) << connection.status();
  auto whoami = (*connection)->Run({"ACL", "WHOAMI"});
  ASSERT_TRUE(whoami.ok());
  EXPECT_EQ(whoami->str, "fabric");

  options.password = "wrong";
  auto refused = RedisConnection::Connect("127.0.0.1", server_.port(), options);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
}

TEST_F(StandaloneTest, ClusterClientDetectsStandaloneAndRunsScripts) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->cluster_mode());
  ASSERT_TRUE(client->Command("a", {"SET", "a", "1"}).ok());
  auto get = client->Command("a", {"GET", "a"});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->str, "1");

  const char* script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
  auto first = client->RunScript(script, {"{t}n"}, {"5"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->integer, 5);
  // The server forgets its scripts: EVALSHA answers NOSCRIPT and the client falls back to EVAL.
  auto connection = Connect();
  ASSERT_TRUE(connection->Run({"SCRIPT", "FLUSH"}).ok());
  auto second = client->RunScript(script, {"{t}n"}, {"2"});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->integer, 7);

  // Refused even though a standalone server would accept it: both deployments behave alike.
  auto cross = client->RunScript(script, {"{t}n", "{u}n"}, {"1"});
  EXPECT_TRUE(absl::IsInvalidArgument(cross.status())) << cross.status();
  // Unless asked for by name: a standalone server runs a script over any keys.
  auto both = client->RunStandaloneScript(
      "redis.call('SET', KEYS[2], ARGV[1]); return redis.call('INCRBY', KEYS[1], ARGV[1])",
      {"{t}n", "{u}n"}, {"1"});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->integer, 8);
  EXPECT_EQ(client->Command("{u}n", {"GET", "{u}n"})->str, "1");
}

TEST_F(StandaloneTest, LostServerIsUnavailableNamingTheAddress) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto connection = Connect();
  ASSERT_NE(connection, nullptr);
  server_.Kill();
  auto lost = connection->Run({"PING"});
  EXPECT_TRUE(absl::IsUnavailable(lost.status())) << lost.status();
  EXPECT_TRUE(absl::StrContains(lost.status().message(), server_.address())) << lost.status();
  EXPECT_TRUE(connection->broken());
  auto through_client = client->Command("a", {"GET", "a"});
  EXPECT_TRUE(absl::IsUnavailable(through_client.status())) << through_client.status();
  EXPECT_TRUE(absl::StrContains(through_client.status().message(), server_.address()));
}

TEST(RedisUnreachableTest, ConnectAndCreateAreUnavailableNamingTheAddress) {
  int port = 0;
  {
    RedisProcess probe;
    ASSERT_TRUE(probe.Start().ok());
    port = probe.port();
  }  // killed: the port is now refused
  std::string address = "127.0.0.1:" + std::to_string(port);
  auto connection = RedisConnection::Connect("127.0.0.1", port);
  EXPECT_TRUE(absl::IsUnavailable(connection.status())) << connection.status();
  EXPECT_TRUE(absl::StrContains(connection.status().message(), address)) << connection.status();
  ClusterOptions options;
  options.seeds = {{"127.0.0.1", port}};
  auto client = ClusterClient::Create(options);
  EXPECT_TRUE(absl::IsUnavailable(client.status())) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), address)) << client.status();
}

}  // namespace
}  // namespace perper::storage::redis
