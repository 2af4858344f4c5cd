// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_store.h"

#include "perper/common/status_macros.h"
#include "perper/storage/redis/redis_step.h"

namespace perper::storage::redis {

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Open(RedisStoreOptions options) {
  PERPER_ASSIGN_OR_RETURN(std::unique_ptr<ClientPool> pool, ClientPool::Create(std::move(options)));
  std::unique_ptr<RedisStore> store(new RedisStore(std::move(pool)));
  PERPER_RETURN_IF_ERROR(store->executions_->Start());
  PERPER_RETURN_IF_ERROR(store->streams_->Start());
  PERPER_RETURN_IF_ERROR(store->states_->Start());
  PERPER_RETURN_IF_ERROR(store->bus_->Start());
  store->notifier_.SetBus(store->bus_.get());
  return store;
}

RedisStore::RedisStore(std::unique_ptr<ClientPool> pool)
    : pool_(std::move(pool)),
      executions_(std::make_unique<RedisExecutions>(*pool_, notifier_)),
      streams_(std::make_unique<RedisStreams>(*pool_, notifier_)),
      states_(std::make_unique<RedisStates>(*pool_, notifier_)),
      descriptors_(std::make_unique<RedisDescriptors>(*pool_)),
      bus_(std::make_unique<ChangeBus>(*pool_, notifier_)) {}

RedisStore::~RedisStore() {
  notifier_.SetBus(nullptr);
  bus_.reset();
}

absl::StatusOr<std::optional<DataPlacement>> RedisStore::PlacementOfInstance(
    std::string_view instance) {
  absl::StatusOr<std::pair<int, std::string>> slot = executions_->SlotOfInstance(instance);
  if (!slot.ok()) return slot.status();
  return DataPlacement{static_cast<uint32_t>(slot->first), std::move(slot->second)};
}

absl::Status RedisStore::CompleteExecutionAndStream(std::string_view execution,
                                                    std::vector<std::string> results,
                                                    std::optional<std::string> error,
                                                    absl::Status& stream) {
  if (pool_->cluster_mode()) {
    return Store::CompleteExecutionAndStream(execution, std::move(results), std::move(error),
                                             stream);
  }
  return executions_->CompleteWithStream(execution, std::move(results), std::move(error),
                                         RedisStreams::MetaKey(execution), stream);
}

absl::StatusOr<StepResult> RedisStore::Step(const StepRequest& request) {
  return RunStep(*pool_, *streams_, notifier_, request);
}

}  // namespace perper::storage::redis
