// SPDX-License-Identifier: MIT
// The lease of this Fabric process on what its calls hold (docs/cluster.md).
#pragma once

#include "absl/status/status.h"

#include "perper/storage/redis/client_pool.h"

namespace perper::storage::redis {

// Thread safety: thread-safe.
class Leases {
 public:
  explicit Leases(ClientPool& pool) : pool_(pool) {}
  absl::Status Start() { return absl::OkStatus(); }

 private:
  [[maybe_unused]] ClientPool& pool_;
};

}  // namespace perper::storage::redis
