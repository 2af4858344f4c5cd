// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_step.h"

namespace perper::storage::redis {

absl::StatusOr<StepResult> RunStep(ClientPool& pool, RedisStreams& streams,
                                   RedisNotifier& notifier, const StepRequest& request) {
  return absl::UnimplementedError("redis backend: Step not implemented yet");
}

}  // namespace perper::storage::redis
