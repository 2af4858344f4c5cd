// SPDX-License-Identifier: MIT
// Opens a backend by name.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "perper/storage/store.h"

namespace perper::storage {

struct StoreOptions {
  std::string kind = "rocksdb";  // "memory" or "rocksdb".
  std::string data_dir = "perper-data";  // rocksdb only.
  bool sync_writes = true;  // rocksdb only: fsync before acknowledging (durable against power loss).
};

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreOptions& options);

}  // namespace perper::storage
