// SPDX-License-Identifier: MIT
// The `redis` backend: the Store on a standalone Redis or a Redis Cluster, shared by several
// Fabric processes (docs/cluster.md).
#pragma once

#include <memory>

#include "absl/status/statusor.h"

#include "perper/storage/redis/change_bus.h"
#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_descriptors.h"
#include "perper/storage/redis/redis_executions.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/redis/redis_states.h"
#include "perper/storage/redis/redis_streams.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

// Owns the connections, the parts and the notification bus of one Fabric process.
// Thread safety: as Store (every method thread-safe).
class RedisStore final : public Store {
 public:
  // Connects (UNAVAILABLE naming the addresses when no node answers) and starts the
  // background work: the process lease, the bus.
  static absl::StatusOr<std::unique_ptr<RedisStore>> Open(RedisStoreOptions options);
  ~RedisStore() override;

  ExecutionStore& executions() override { return *executions_; }
  StreamStore& streams() override { return *streams_; }
  StateStore& states() override { return *states_; }
  DescriptorStore& descriptors() override { return *descriptors_; }
  absl::StatusOr<StepResult> Step(const StepRequest& request) override;
  // One script on a standalone server; the two writes of the Store's way in a cluster (the
  // execution and the stream live in different slots).
  absl::Status CompleteExecutionAndStream(std::string_view execution,
                                          std::vector<std::string> results,
                                          std::optional<std::string> error,
                                          absl::Status& stream) override;
  absl::StatusOr<std::optional<DataPlacement>> PlacementOfInstance(
      std::string_view instance) override;
  void SetObserver(ChangeObserver* observer) override { notifier_.SetObserver(observer); }
  // Every call is a round trip to Redis.
  bool WritesWait() const override { return true; }
  bool ReadsWait() const override { return true; }

  ClientPool& pool() { return *pool_; }
  RedisExecutions& redis_executions() { return *executions_; }
  RedisStreams& redis_streams() { return *streams_; }
  // From now on changes reach this process's observer only, never the bus: a process killed
  // before publishing what it acknowledged. For tests.
  void StopPublishingForTesting() { notifier_.SetBus(nullptr); }

 private:
  explicit RedisStore(std::unique_ptr<ClientPool> pool);

  std::unique_ptr<ClientPool> pool_;
  RedisNotifier notifier_;
  // Destroyed before the parts: no remote change is delivered into a part being destroyed.
  std::unique_ptr<RedisExecutions> executions_;
  std::unique_ptr<RedisStreams> streams_;
  std::unique_ptr<RedisStates> states_;
  std::unique_ptr<RedisDescriptors> descriptors_;
  std::unique_ptr<ChangeBus> bus_;
};

}  // namespace perper::storage::redis
