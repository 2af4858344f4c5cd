// SPDX-License-Identifier: MIT
#include "perper/storage/redis/client_pool.h"

#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "perper/common/status_macros.h"
#include "perper/storage/redis/key_slot.h"

namespace perper::storage::redis {
namespace {

std::string NewProcessId() {
  std::random_device device;
  uint64_t value = (uint64_t{device()} << 32) ^ device();
  return absl::StrFormat("%016x", value);
}

}  // namespace

ClientPool::ClientPool(RedisStoreOptions options)
    : options_(std::move(options)), process_id_(NewProcessId()) {}

absl::StatusOr<std::unique_ptr<ClientPool>> ClientPool::Create(RedisStoreOptions options) {
  if (options.pool_size == 0) options.pool_size = 1;
  std::unique_ptr<ClientPool> pool(new ClientPool(std::move(options)));
  for (size_t i = 0; i < pool->options_.pool_size; ++i) {
    PERPER_ASSIGN_OR_RETURN(std::unique_ptr<ClusterClient> client,
                            ClusterClient::Create(pool->options_.cluster));
    pool->cluster_mode_ = client->cluster_mode();
    pool->clients_.push_back(std::move(client));
  }
  return pool;
}

ClusterClient& ClientPool::Next() {
  return *clients_[next_.fetch_add(1, std::memory_order_relaxed) % clients_.size()];
}

absl::StatusOr<RedisReply> ClientPool::Run(std::string_view key,
                                           const std::vector<std::string_view>& argv) {
  return Next().Command(key, argv);
}

absl::StatusOr<RedisReply> ClientPool::RunScript(std::string_view script,
                                                 const std::vector<std::string_view>& keys,
                                                 const std::vector<std::string_view>& args) {
  return Next().RunScript(script, keys, args);
}

absl::StatusOr<RedisReply> ClientPool::RunWrite(std::string_view script,
                                                const std::vector<std::string_view>& keys,
                                                const std::vector<std::string_view>& args) {
  ClusterClient& client = Next();
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, client.RunScript(script, keys, args));
  if (options_.wait_replicas > 0) {
    PERPER_RETURN_IF_ERROR(WaitForReplicas(client, keys.empty() ? 0 : KeySlot(keys.front())));
  }
  return reply;
}

absl::StatusOr<RedisReply> ClientPool::RunStandaloneWrite(
    std::string_view script, const std::vector<std::string_view>& keys,
    const std::vector<std::string_view>& args) {
  ClusterClient& client = Next();
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, client.RunStandaloneScript(script, keys, args));
  if (options_.wait_replicas > 0) {
    PERPER_RETURN_IF_ERROR(WaitForReplicas(client, keys.empty() ? 0 : KeySlot(keys.front())));
  }
  return reply;
}

std::vector<absl::StatusOr<RedisReply>> ClientPool::RunWrites(
    const std::vector<ClusterClient::Script>& scripts) {
  ClusterClient& client = Next();
  std::vector<absl::StatusOr<RedisReply>> replies = client.RunScripts(scripts);
  if (options_.wait_replicas == 0) return replies;
  // One WAIT per node written to covers every write made there through this client.
  absl::flat_hash_map<std::string, absl::Status> waited;
  for (size_t i = 0; i < scripts.size(); ++i) {
    if (!replies[i].ok()) continue;
    const int slot = scripts[i].keys.empty() ? 0 : KeySlot(scripts[i].keys.front());
    auto [it, first] = waited.try_emplace(client.NodeForSlot(slot));
    if (first) it->second = WaitForReplicas(client, slot);
    if (!it->second.ok()) replies[i] = it->second;
  }
  return replies;
}

absl::Status ClientPool::WaitForReplicas(ClusterClient& client, int slot) {
  std::string replicas = absl::StrCat(options_.wait_replicas);
  std::string timeout = absl::StrCat(options_.wait_timeout.count());
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          client.CommandInSlot(slot, {"WAIT", replicas, timeout}));
  if (reply.type != RedisReply::Type::kInteger || reply.integer < options_.wait_replicas) {
    return absl::UnavailableError(
        absl::StrCat("redis: written to the master ", client.NodeForSlot(slot),
                     " but confirmed by only ", reply.integer, " of ", options_.wait_replicas,
                     " replicas within ", options_.wait_timeout.count(), " ms"));
  }
  return absl::OkStatus();
}

std::string ClientPool::NodeForKey(std::string_view key) {
  return Next().NodeForSlot(KeySlot(key));
}

ClusterStats ClientPool::stats() {
  ClusterStats sum;
  for (const auto& client : clients_) {
    ClusterStats s = client->stats();
    sum.moved += s.moved;
    sum.ask += s.ask;
    sum.retries += s.retries;
    sum.refreshes += s.refreshes;
  }
  return sum;
}

}  // namespace perper::storage::redis
