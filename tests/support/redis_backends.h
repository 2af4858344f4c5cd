// SPDX-License-Identifier: MIT
// Test support: the redis backends of the per-backend suites. "redis" is one redis-server and
// "redis_cluster" a Redis Cluster of 3 masters, each started once per test binary on free ports
// and emptied before each test.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "perper/storage/store_factory.h"

namespace perper::testing {

bool IsRedisBackend(const std::string& backend);
// Options that open a store on `backend` ("redis" or "redis_cluster"); starts it on first use.
absl::StatusOr<storage::StoreOptions> RedisBackendOptions(const std::string& backend);
// Options that open a store on any backend: as RedisBackendOptions for "redis" and
// "redis_cluster", else `backend` ("memory", "rocksdb") with its data in `data_dir`.
absl::StatusOr<storage::StoreOptions> BackendStoreOptions(const std::string& backend,
                                                          const std::string& data_dir);
// Deletes every key (FLUSHALL on every master).
absl::Status ResetRedisBackend(const std::string& backend);

}  // namespace perper::testing
