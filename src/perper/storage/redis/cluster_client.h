// SPDX-License-Identifier: MIT
// Routes commands to a standalone Redis or to the node of a Redis Cluster that owns their slot.
// Debian's hiredis has no cluster support, so the slot map and the redirections are ours.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/redis/redis_connection.h"
#include "perper/storage/redis/shared_connection.h"

namespace perper::storage::redis {

struct ClusterOptions {
  // Nodes to learn the topology from ("host", port); any one reachable node is enough.
  std::vector<std::pair<std::string, int>> seeds;
  ConnectionOptions connection;
  // MOVED/ASK hops for one command before giving up: a correct cluster needs one or two.
  int max_redirects = 16;
  // How long one command keeps retrying TRYAGAIN, CLUSTERDOWN and lost masters (a failover
  // takes about cluster-node-timeout plus an election) before answering UNAVAILABLE.
  std::chrono::milliseconds retry_deadline{10000};
  std::chrono::milliseconds retry_backoff{20};
};

// Counters of the routing events, for tests and metrics.
struct ClusterStats {
  int64_t moved = 0;
  int64_t ask = 0;
  int64_t retries = 0;  // TRYAGAIN, CLUSTERDOWN, lost connections
  int64_t refreshes = 0;
};

// A client for one Redis deployment: a standalone server (INFO says cluster_enabled:0) or a
// cluster (slot map from CLUSTER SLOTS, one lazily opened connection per node).
//
// Owned by whoever talks to the deployment (the redis backend, a test); it owns its connections.
// Thread safety: every public method is safe to call concurrently. Commands go out on one
// SharedConnection per node, outside the internal mutex, so concurrent callers share round
// trips; the mutex guards the slot map, the nodes and the script cache, and is held across a
// round trip only to reload the map (CLUSTER SLOTS) or to connect to a node.
class ClusterClient {
 public:
  static absl::StatusOr<std::unique_ptr<ClusterClient>> Create(ClusterOptions options);
  ClusterClient(const ClusterClient&) = delete;
  ClusterClient& operator=(const ClusterClient&) = delete;

  bool cluster_mode() const { return cluster_mode_; }

  // Runs `argv` on the node owning `key`'s slot (following redirections); an error reply becomes
  // its ReplyStatus. The key is usually one of the arguments; it is only used for routing.
  absl::StatusOr<RedisReply> Command(std::string_view key,
                                     const std::vector<std::string_view>& argv);
  absl::StatusOr<RedisReply> CommandInSlot(int slot, const std::vector<std::string_view>& argv);

  // Runs a Lua script with EVALSHA, falling back to EVAL when the node answers NOSCRIPT (the
  // script cache is per node and lost on restart). All keys must share one slot, as Redis
  // Cluster requires of a script; otherwise INVALID_ARGUMENT before anything is sent. A script
  // without keys runs on the node of slot 0.
  absl::StatusOr<RedisReply> RunScript(std::string_view script,
                                       const std::vector<std::string_view>& keys,
                                       const std::vector<std::string_view>& args);

  // A script over keys of any slots, which only a standalone server runs (it owns every
  // slot): a deployment's operation that takes several scripts in a cluster takes this one.
  // FAILED_PRECONDITION in cluster mode.
  absl::StatusOr<RedisReply> RunStandaloneScript(std::string_view script,
                                                 const std::vector<std::string_view>& keys,
                                                 const std::vector<std::string_view>& args);

  // One script of RunScripts.
  struct Script {
    std::string_view script;
    std::vector<std::string_view> keys;
    std::vector<std::string_view> args;
  };
  // Runs several independent scripts, each as RunScript would, with one write and one read per
  // node instead of one round trip each; answers one result per script, in the order given.
  // They run in the order given on each node, and in no particular order across nodes.
  std::vector<absl::StatusOr<RedisReply>> RunScripts(const std::vector<Script>& scripts);

  // Reloads the slot map from any known node.
  absl::Status RefreshSlots();

  ClusterStats stats() const;
  // The address ("host:port") the map currently gives for `slot`.
  std::string NodeForSlot(int slot) const;

 private:
  struct Node {
    std::string host;
    int port = 0;
    std::string address;
    std::shared_ptr<SharedConnection> connection;  // null until first used or after a failure
  };

  explicit ClusterClient(ClusterOptions options);
  absl::Status Discover() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadSlots(int from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int NodeIndex(std::string_view host, int port) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The node's connection, connecting (again) when it has none or it broke.
  absl::StatusOr<std::shared_ptr<SharedConnection>> Connection(int node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static absl::StatusOr<int> ScriptSlot(const std::vector<std::string_view>& keys);
  static std::vector<std::string_view> ScriptArgv(const Script& script, std::string_view sha,
                                                  const std::string& numkeys);
  // The SHA1 of `script`, loading it on the node of `slot` the first time.
  absl::StatusOr<std::string> ScriptSha(std::string_view script, int slot) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<RedisReply> RunOneScript(int slot, const Script& script) ABSL_LOCKS_EXCLUDED(mu_);
  // Like CommandInSlot, but error replies other than redirections come back as replies.
  absl::StatusOr<RedisReply> Execute(int slot, const std::vector<std::string_view>& argv)
      ABSL_LOCKS_EXCLUDED(mu_);

  const ClusterOptions options_;
  bool cluster_mode_ = false;  // set once by Create
  mutable absl::Mutex mu_;
  std::vector<Node> nodes_ ABSL_GUARDED_BY(mu_);
  // Node index per slot; -1 while unknown. In standalone mode every slot maps to node 0.
  std::vector<int> slot_node_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> script_sha_ ABSL_GUARDED_BY(mu_);
  ClusterStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace perper::storage::redis
