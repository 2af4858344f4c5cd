// SPDX-License-Identifier: MIT
// The perper-fabric binary's redis options: listed by --help, bad values refused with exit code 2
// and a message naming the option, a Redis that cannot be reached (or refuses the credentials,
// or is not what --redis-cluster says) named in the message of exit code 1, and a Fabric that
// starts on a real redis-server with the given user and password.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/fabric_process.h"
#include "tests/support/redis_process.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

// A loopback port where nothing listens: bound to port 0 by the system, then closed.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  return ntohs(address.sin_port);
}

TEST(FabricRedisOptionsTest, HelpListsTheRedisOptions) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--help"}, &output), 0);
  for (const char* option :
       {"--redis", "--redis-username", "--redis-password", "--redis-cluster", "--redis-lease-ms",
        "--redis-wait-replicas", "PERPER_REDIS", "PERPER_REDIS_PASSWORD"}) {
    EXPECT_THAT(output, HasSubstr(option));
  }
  EXPECT_THAT(output, HasSubstr("redis (a Redis deployment"));
}

TEST(FabricRedisOptionsTest, BadValuesExitWithCodeTwoNamingTheOption) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "redis"}, &output), 2);
  EXPECT_THAT(output, HasSubstr("storage redis needs the Redis address"));
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--redis", "localhost"}, &output), 2);
  EXPECT_THAT(output, HasSubstr("--redis: 'localhost' is not host:port"));
  EXPECT_EQ(RunFabricBinary(
                {"--storage", "redis", "--redis", "127.0.0.1:1", "--redis-cluster", "sometimes"},
                &output),
            2);
  EXPECT_THAT(output, HasSubstr("--redis-cluster: expected auto, yes or no, got 'sometimes'"));
  EXPECT_EQ(RunFabricBinary(
                {"--storage", "redis", "--redis", "127.0.0.1:1", "--redis-lease-ms", "0"}, &output),
            2);
  EXPECT_THAT(output, HasSubstr("--redis-lease-ms: expected milliseconds"));
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--redis", "127.0.0.1:1"}, &output,
                            {"PERPER_REDIS_WAIT_REPLICAS=all"}),
            2);
  EXPECT_THAT(output, HasSubstr("PERPER_REDIS_WAIT_REPLICAS: expected a number of replicas"));
}

TEST(FabricRedisOptionsTest, UnreachableRedisExitsWithCodeOneNamingTheAddress) {
  std::string address = "127.0.0.1:" + std::to_string(ClosedPort());
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--listen", "127.0.0.1:0"}, &output,
                            {"PERPER_REDIS=" + address}),
            1);
  EXPECT_THAT(output, HasSubstr("cannot open storage redis at " + address));
}

// A standalone redis-server with an ACL user "perper", password "secret".
class FabricOnRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.Start().ok());
    auto created = RedisCli({"-p", std::to_string(redis_.port()), "ACL", "SETUSER", "perper", "on",
                             ">secret", "~*", "&*", "+@all"});
    ASSERT_TRUE(created.ok()) << created.status();
  }
  RedisProcess redis_;
};

TEST_F(FabricOnRedisTest, StartsWithItsUserAndPasswordAndStopsCleanly) {
  FabricProcess fabric({"--storage", "redis", "--redis", redis_.address(), "--redis-username",
                        "perper", "--redis-cluster", "no"},
                       {"PERPER_REDIS_PASSWORD=secret"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();
  fabric.Kill(SIGTERM);
  EXPECT_EQ(fabric.Wait(), 0) << fabric.Log();
}

TEST_F(FabricOnRedisTest, WrongPasswordExitsWithCodeOneNamingTheAddress) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--listen", "127.0.0.1:0", "--redis",
                             redis_.address(), "--redis-username", "perper"},
                            &output, {"PERPER_REDIS_PASSWORD=wrong"}),
            1);
  EXPECT_THAT(output, HasSubstr("cannot open storage redis at " + redis_.address()));
}

TEST_F(FabricOnRedisTest, ClusterYesOnAStandaloneServerExitsWithCodeOne) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--listen", "127.0.0.1:0", "--redis",
                             redis_.address(), "--redis-cluster", "yes"},
                            &output),
            1);
  EXPECT_THAT(output, HasSubstr("is a standalone server"));
}

}  // namespace
}  // namespace perper::testing
