// SPDX-License-Identifier: MIT
// Opens a backend by name.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "perper/storage/store.h"

namespace perper::storage {

struct StoreOptions {
  std::string kind = "rocksdb";          // "memory" or "rocksdb".
  std::string data_dir = "perper-data";  // rocksdb only.
  bool sync_writes =
      true;  // rocksdb only: fsync before acknowledging (durable against power loss).

  // redis only.
  std::vector<std::string> redis_addresses;  // "host:port" each; any reachable one is enough
  std::string redis_username;                // Redis ACL user; empty: the default user
  std::string redis_password;
  std::string redis_cluster = "auto";  // auto (ask the server), yes (must be a cluster), no
  std::chrono::milliseconds redis_lease{3000};
  int redis_wait_replicas = 0;
  size_t redis_pool_size = 16;
};

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreOptions& options);

}  // namespace perper::storage
