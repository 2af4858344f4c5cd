// SPDX-License-Identifier: MIT
// The redis settings of the Fabric's configuration: each from the file, the environment and the
// flags (in that precedence) into StoreOptions, and each bad value refused naming its source.
#include <stdlib.h>

#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/fabric/fabric_config.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kRedisEnv[] = {"PERPER_REDIS",          "PERPER_REDIS_USERNAME",
                                     "PERPER_REDIS_PASSWORD", "PERPER_REDIS_CLUSTER",
                                     "PERPER_REDIS_LEASE_MS", "PERPER_REDIS_WAIT_REPLICAS",
                                     "PERPER_STORAGE"};

class FabricConfigRedisTest : public ::testing::Test {
 protected:
  void SetUp() override { ClearEnv(); }
  void TearDown() override { ClearEnv(); }
  static void ClearEnv() {
    for (const char* name : kRedisEnv) unsetenv(name);
  }
  // The store options `flags` resolve to; fails the test when they do not resolve.
  static storage::StoreOptions Store(const fabric::FabricConfigFlags& flags) {
    auto config = fabric::ResolveFabricConfig(flags);
    EXPECT_TRUE(config.ok()) << config.status();
    return config.ok() ? config->options.store : storage::StoreOptions();
  }
  std::string WriteFile(const std::string& text) {
    std::string path = dir_.path() + "/fabric.yaml";
    std::ofstream(path) << text;
    return path;
  }
  TempDir dir_;
};

TEST_F(FabricConfigRedisTest, DefaultsMatchTheDesign) {
  fabric::FabricConfigFlags flags;
  flags.storage = "redis";
  flags.redis = "127.0.0.1:6379";
  storage::StoreOptions store = Store(flags);
  EXPECT_EQ(store.kind, "redis");
  EXPECT_THAT(store.redis_addresses, ElementsAre("127.0.0.1:6379"));
  EXPECT_EQ(store.redis_username, "");
  EXPECT_EQ(store.redis_password, "");
  EXPECT_EQ(store.redis_cluster, "auto");
  EXPECT_EQ(store.redis_lease, std::chrono::milliseconds(3000));
  EXPECT_EQ(store.redis_wait_replicas, 0);
}

TEST_F(FabricConfigRedisTest, FileSetsEverySettingAndTakesAListOfAddresses) {
  fabric::FabricConfigFlags flags;
  flags.config_file = WriteFile(
      "storage: redis\n"
      "redis:\n"
      "  - 10.0.0.5:7000\n"
      "  - redis-b:7001\n"
      "redis_username: perper\n"
      "redis_password: secret\n"
      "redis_cluster: yes\n"
      "redis_lease_ms: 5000\n"
      "redis_wait_replicas: 1\n");
  storage::StoreOptions store = Store(flags);
  EXPECT_EQ(store.kind, "redis");
  EXPECT_THAT(store.redis_addresses, ElementsAre("10.0.0.5:7000", "redis-b:7001"));
  EXPECT_EQ(store.redis_username, "perper");
  EXPECT_EQ(store.redis_password, "secret");
  EXPECT_EQ(store.redis_cluster, "yes");
  EXPECT_EQ(store.redis_lease, std::chrono::milliseconds(5000));
  EXPECT_EQ(store.redis_wait_replicas, 1);
}

TEST_F(FabricConfigRedisTest, EnvironmentBeatsFileAndFlagsBeatEnvironment) {
  fabric::FabricConfigFlags flags;
  flags.config_file =
      WriteFile("storage: redis\nredis: file:1\nredis_password: from-file\nredis_cluster: yes\n");
  setenv("PERPER_REDIS", "env-a:2, env-b:3", 1);
  setenv("PERPER_REDIS_PASSWORD", "from-env", 1);
  setenv("PERPER_REDIS_LEASE_MS", "4000", 1);
  flags.redis_cluster = "no";
  flags.redis_lease_ms = "6000";
  flags.redis_wait_replicas = "2";
  storage::StoreOptions store = Store(flags);
  EXPECT_THAT(store.redis_addresses, ElementsAre("env-a:2", "env-b:3"));
  EXPECT_EQ(store.redis_password, "from-env");
  EXPECT_EQ(store.redis_cluster, "no");
  EXPECT_EQ(store.redis_lease, std::chrono::milliseconds(6000));
  EXPECT_EQ(store.redis_wait_replicas, 2);
}

// `perper up` starts a Redis of its own for a manifest that names none, so the address is
// left for it to fill in (the perper-fabric binary refuses to run without one).
TEST_F(FabricConfigRedisTest, RedisStorageWithoutAnAddressResolvesWithNone) {
  fabric::FabricConfigFlags flags;
  flags.storage = "redis";
  storage::StoreOptions store = Store(flags);
  EXPECT_EQ(store.kind, "redis");
  EXPECT_TRUE(store.redis_addresses.empty());
}

TEST_F(FabricConfigRedisTest, BadValuesAreRefusedNamingTheirSource) {
  struct Case {
    std::string flag_value;
    std::optional<std::string> fabric::FabricConfigFlags::*flag;
    std::string message;
  };
  const Case cases[] = {
      {"127.0.0.1", &fabric::FabricConfigFlags::redis,
       "--redis: '127.0.0.1' is not host:port with a port from 1 to 65535"},
      {"a:1,,b:2", &fabric::FabricConfigFlags::redis, "--redis: empty address"},
      {"a:70000", &fabric::FabricConfigFlags::redis, "port from 1 to 65535"},
      {"maybe", &fabric::FabricConfigFlags::redis_cluster,
       "--redis-cluster: expected auto, yes or no, got 'maybe'"},
      {"50", &fabric::FabricConfigFlags::redis_lease_ms,
       "--redis-lease-ms: expected milliseconds, 100 to 3600000, got '50'"},
      {"-1", &fabric::FabricConfigFlags::redis_wait_replicas,
       "--redis-wait-replicas: expected a number of replicas, 0 to 100, got '-1'"},
  };
  for (const Case& c : cases) {
    fabric::FabricConfigFlags flags;
    flags.storage = "redis";
    flags.redis = "127.0.0.1:6379";
    flags.*c.flag = c.flag_value;
    auto config = fabric::ResolveFabricConfig(flags);
    EXPECT_TRUE(absl::IsInvalidArgument(config.status())) << c.flag_value;
    EXPECT_THAT(config.status().message(), HasSubstr(c.message));
  }

  setenv("PERPER_REDIS_WAIT_REPLICAS", "many", 1);
  auto from_env = fabric::ResolveFabricConfig(fabric::FabricConfigFlags());
  EXPECT_THAT(from_env.status().message(), HasSubstr("PERPER_REDIS_WAIT_REPLICAS: expected"));
  unsetenv("PERPER_REDIS_WAIT_REPLICAS");

  fabric::FabricConfigFlags flags;
  flags.config_file = WriteFile("storage: redis\nredis:\n  - a:1\n  - b\n");
  auto from_file = fabric::ResolveFabricConfig(flags);
  EXPECT_THAT(from_file.status().message(),
              HasSubstr(*flags.config_file + ":2: redis: 'b' is not host:port"));
}

}  // namespace
}  // namespace perper::testing
