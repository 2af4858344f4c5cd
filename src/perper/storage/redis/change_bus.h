// SPDX-License-Identifier: MIT
// Changes between the Fabric processes that share one Redis deployment (docs/cluster.md).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "perper/storage/change.h"
#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_notifier.h"

namespace perper::storage::redis {

// Publishes this process's changes and delivers other processes' changes to `local`.
// Thread safety: Publish is thread-safe; Start once, before Publish.
class ChangeBus {
 public:
  ChangeBus(ClientPool& pool, RedisNotifier& local);
  ~ChangeBus();
  ChangeBus(const ChangeBus&) = delete;
  ChangeBus& operator=(const ChangeBus&) = delete;

  absl::Status Start();
  // Queues `change` for the other processes; returns at once.
  void Publish(const Change& change);

 private:
  ClientPool& pool_;
  RedisNotifier& local_;
};

}  // namespace perper::storage::redis
