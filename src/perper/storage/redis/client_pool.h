// SPDX-License-Identifier: MIT
// The redis backend's connections: a pool of ClusterClients shared by every part of one
// RedisStore, and the identity of this Fabric process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/redis/cluster_client.h"

namespace perper::storage::redis {

struct RedisStoreOptions {
  ClusterOptions cluster;
  // How many ClusterClients the process spreads its commands over, each with one shared,
  // pipelining connection per node. Few: the fewer connections, the more commands share a round
  // trip; more than one, so that one large value in transit does not hold every caller up.
  size_t pool_size = 2;
  // How long a dead Fabric process's reservations and transient listeners outlive it.
  std::chrono::milliseconds lease{3000};
  // When > 0, every write waits (WAIT) until this many replicas have it before it is
  // acknowledged; fewer within wait_timeout → UNAVAILABLE.
  int wait_replicas = 0;
  std::chrono::milliseconds wait_timeout{1000};
};

// Thread safety: all methods are thread-safe, and so are the clients handed out.
class ClientPool {
 public:
  // Connects every client at once, so an unreachable deployment fails here (UNAVAILABLE naming
  // the addresses).
  static absl::StatusOr<std::unique_ptr<ClientPool>> Create(RedisStoreOptions options);
  ClientPool(const ClientPool&) = delete;
  ClientPool& operator=(const ClientPool&) = delete;

  // The next client, in turn; shared with other callers. Commands that must share a connection
  // (a write and its WAIT) go through one client.
  ClusterClient& Next();

  // One command, on the node owning `key`'s slot.
  absl::StatusOr<RedisReply> Run(std::string_view key, const std::vector<std::string_view>& argv);
  // A script that only reads.
  absl::StatusOr<RedisReply> RunScript(std::string_view script,
                                       const std::vector<std::string_view>& keys,
                                       const std::vector<std::string_view>& args);
  // A script that writes: then, when wait_replicas > 0, WAIT on the same connection. Every
  // write of the backend goes through here.
  absl::StatusOr<RedisReply> RunWrite(std::string_view script,
                                      const std::vector<std::string_view>& keys,
                                      const std::vector<std::string_view>& args);
  // A write over keys of any slots on a standalone server (ClusterClient::RunStandaloneScript),
  // then WAIT as RunWrite does.
  absl::StatusOr<RedisReply> RunStandaloneWrite(std::string_view script,
                                                const std::vector<std::string_view>& keys,
                                                const std::vector<std::string_view>& args);
  // Several independent writes as ClusterClient::RunScripts (one round trip per node instead
  // of one each), then WAIT as RunWrite does. One result per script, in the order given.
  std::vector<absl::StatusOr<RedisReply>> RunWrites(
      const std::vector<ClusterClient::Script>& scripts);
  // WAIT for the writes made so far through `lease` on the node of `slot` (RunWrite does it).
  absl::Status WaitForReplicas(ClusterClient& client, int slot);

  // Random, 16 hex digits, new for every pool: names this Fabric process in holders, leases
  // and notifications.
  const std::string& process_id() const { return process_id_; }
  const RedisStoreOptions& options() const { return options_; }
  bool cluster_mode() const { return cluster_mode_; }
  // The address the slot map gives for the slot of `key` ("host:port").
  std::string NodeForKey(std::string_view key);
  // Routing events and commands summed over every client.
  ClusterStats stats();

 private:
  explicit ClientPool(RedisStoreOptions options);

  const RedisStoreOptions options_;
  const std::string process_id_;
  bool cluster_mode_ = false;                            // set once by Create
  std::vector<std::unique_ptr<ClusterClient>> clients_;  // set once by Create
  std::atomic<size_t> next_{0};
};

}  // namespace perper::storage::redis
