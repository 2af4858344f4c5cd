// SPDX-License-Identifier: MIT
// The perper-fabric binary's redis options: listed by --help, bad values refused with exit code 2
// and a message naming the option, and a Redis that cannot be reached at start named in the
// message of exit code 1.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/fabric_process.h"

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
  for (const char* option : {"--redis", "--redis-username", "--redis-password", "--redis-cluster",
                             "--redis-lease-ms", "--redis-wait-replicas", "PERPER_REDIS",
                             "PERPER_REDIS_PASSWORD"}) {
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
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--redis", "127.0.0.1:1", "--redis-cluster",
                             "sometimes"},
                            &output),
            2);
  EXPECT_THAT(output, HasSubstr("--redis-cluster: expected auto, yes or no, got 'sometimes'"));
  EXPECT_EQ(RunFabricBinary({"--storage", "redis", "--redis", "127.0.0.1:1", "--redis-lease-ms",
                             "0"},
                            &output),
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

}  // namespace
}  // namespace perper::testing
