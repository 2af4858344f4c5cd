// SPDX-License-Identifier: MIT
// The redis backend's connections: a pool of ClusterClients shared by every part of one
// RedisStore, and the identity of this Fabric process.
#pragma once

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
  // Most clients (each with its own connection per node) in use at once; a caller past it
  // waits for one to be returned.
  size_t pool_size = 16;
  // How long a dead Fabric process's reservations and transient listeners outlive it.
  std::chrono::milliseconds lease{3000};
  // When > 0, every write waits (WAIT) until this many replicas have it before it is
  // acknowledged; fewer within wait_timeout → UNAVAILABLE.
  int wait_replicas = 0;
  std::chrono::milliseconds wait_timeout{1000};
};

// Thread safety: all methods are thread-safe. A Lease is used by one thread at a time.
class ClientPool {
 public:
  // Connects one client at once, so an unreachable deployment fails here (UNAVAILABLE naming
  // the addresses); the others connect when first needed.
  static absl::StatusOr<std::unique_ptr<ClientPool>> Create(RedisStoreOptions options);
  ClientPool(const ClientPool&) = delete;
  ClientPool& operator=(const ClientPool&) = delete;

  // A client for the holder's exclusive use until the Lease is destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), client_(other.client_) {
      other.client_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    ClusterClient* operator->() const { return client_; }
    ClusterClient& operator*() const { return *client_; }

   private:
    friend class ClientPool;
    Lease(ClientPool* pool, ClusterClient* client) : pool_(pool), client_(client) {}
    ClientPool* pool_;
    ClusterClient* client_;
  };
  // Blocks while every client is in use and the pool is full. Fails only when a new client
  // cannot connect.
  absl::StatusOr<Lease> Acquire();

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
  void Return(ClusterClient* client);

  const RedisStoreOptions options_;
  const std::string process_id_;
  bool cluster_mode_ = false;  // set once by Create
  absl::Mutex mu_;
  std::vector<std::unique_ptr<ClusterClient>> clients_ ABSL_GUARDED_BY(mu_);
  std::vector<ClusterClient*> idle_ ABSL_GUARDED_BY(mu_);
  size_t connecting_ ABSL_GUARDED_BY(mu_) = 0;  // clients being created outside mu_
};

}  // namespace perper::storage::redis
