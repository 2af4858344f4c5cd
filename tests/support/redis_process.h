// SPDX-License-Identifier: MIT
// Test support: real redis-server processes on free loopback ports, standalone or as a cluster.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "tests/support/temp_dir.h"

namespace perper::testing {

// One redis-server on 127.0.0.1 in its own temp dir, killed (SIGKILL) when destroyed. For a
// cluster node the port + 10000 (the cluster bus) is free too, and the port is at most 55535.
// Not thread-safe; owned by the test.
class RedisProcess {
 public:
  // `extra` are redis-server options such as {"--maxmemory", "1mb"}.
  explicit RedisProcess(bool cluster_node = false, std::vector<std::string> extra = {});
  ~RedisProcess();
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  // Starts the server and waits until it answers PING.
  absl::Status Start(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void Kill();  // SIGKILL and reap; a no-op when not running
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const { return dir_.path(); }

 private:
  bool cluster_node_;
  std::vector<std::string> extra_;
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A Redis Cluster of `masters` masters with `replicas_per_master` replicas each, created with
// `redis-cli --cluster create` and waited for until every node reports cluster_state:ok and
// every replica's link to its master is up.
// cluster-node-timeout is 1000 ms so a failover takes a couple of seconds.
class RedisCluster {
 public:
  RedisCluster(int masters, int replicas_per_master);
  absl::Status Start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Waits until every running node reports cluster_state:ok and every replica is in sync.
  absl::Status WaitUntilOk(std::chrono::milliseconds timeout);

  std::vector<std::unique_ptr<RedisProcess>>& nodes() { return nodes_; }
  RedisProcess* NodeByPort(int port);

 private:
  int masters_;
  int replicas_;
  std::vector<std::unique_ptr<RedisProcess>> nodes_;
};

// Runs a redis-cli command line against 127.0.0.1:`port` (arguments passed as is, no shell);
// returns its stdout, or an error with its output when it exits non-zero.
absl::StatusOr<std::string> RedisCli(const std::vector<std::string>& args);

}  // namespace perper::testing
