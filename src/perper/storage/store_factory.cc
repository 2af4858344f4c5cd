// SPDX-License-Identifier: MIT
#include "perper/storage/store_factory.h"

#include "absl/strings/numbers.h"

#include "perper/common/status_macros.h"
#include "perper/storage/engine/engine_store.h"
#include "perper/storage/redis/redis_store.h"
#include "perper/storage/rocksdb/rocksdb_journal.h"

namespace perper::storage {
namespace {

absl::StatusOr<std::unique_ptr<Store>> OpenRedisStore(const StoreOptions& options) {
  redis::RedisStoreOptions redis;
  if (options.redis_addresses.empty()) {
    return absl::InvalidArgumentError("redis: no address given (host:port[,host:port...])");
  }
  for (const std::string& address : options.redis_addresses) {
    size_t colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(address.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError("redis: expected host:port, got '" + address + "'");
    }
    redis.cluster.seeds.emplace_back(address.substr(0, colon), port);
  }
  if (options.redis_cluster != "auto" && options.redis_cluster != "yes" &&
      options.redis_cluster != "no") {
    return absl::InvalidArgumentError("redis_cluster: expected auto, yes or no, got '" +
                                      options.redis_cluster + "'");
  }
  redis.cluster.connection.username = options.redis_username;
  redis.cluster.connection.password = options.redis_password;
  redis.lease = options.redis_lease;
  redis.wait_replicas = options.redis_wait_replicas;
  redis.pool_size = options.redis_pool_size;
  PERPER_ASSIGN_OR_RETURN(auto store, redis::RedisStore::Open(std::move(redis)));
  bool cluster = store->pool().cluster_mode();
  if (options.redis_cluster == "yes" && !cluster) {
    return absl::FailedPreconditionError("redis: --redis-cluster yes, but " +
                                         options.redis_addresses.front() +
                                         " is a standalone server (cluster_enabled:0)");
  }
  if (options.redis_cluster == "no" && cluster) {
    return absl::FailedPreconditionError("redis: --redis-cluster no, but " +
                                         options.redis_addresses.front() +
                                         " is a node of a Redis Cluster");
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreOptions& options) {
  if (options.kind == "memory") {
    PERPER_ASSIGN_OR_RETURN(auto store, EngineStore::Open(nullptr));
    return std::unique_ptr<Store>(std::move(store));
  }
  if (options.kind == "rocksdb") {
    PERPER_ASSIGN_OR_RETURN(auto journal,
                            RocksDbJournal::Open(options.data_dir, options.sync_writes));
    PERPER_ASSIGN_OR_RETURN(auto store, EngineStore::Open(std::move(journal)));
    return std::unique_ptr<Store>(std::move(store));
  }
  if (options.kind == "redis") return OpenRedisStore(options);
  return absl::InvalidArgumentError("unknown storage kind '" + options.kind +
                                    "'; expected memory, rocksdb or redis");
}

}  // namespace perper::storage
