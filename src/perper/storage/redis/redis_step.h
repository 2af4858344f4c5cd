// SPDX-License-Identifier: MIT
// A consumer's step on Redis: the dictionary and the listener usually live in different slots,
// so the step is fenced in the dictionary's slot, then the listener follows (docs/cluster.md).
#pragma once

#include "absl/status/statusor.h"

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/redis/redis_streams.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

// Store::Step for the redis backend. Thread-safe.
absl::StatusOr<StepResult> RunStep(ClientPool& pool, RedisStreams& streams,
                                   RedisNotifier& notifier, const StepRequest& request);

}  // namespace perper::storage::redis
