// SPDX-License-Identifier: MIT
#include "perper/storage/engine/engine_store.h"

#include <string>

#include "perper/common/status_macros.h"

namespace perper::storage {

EngineStore::EngineStore(std::unique_ptr<Journal> journal)
    : journal_(std::move(journal)),
      executions_(journal_.get(), &notifier_),
      streams_(journal_.get(), &notifier_),
      states_(journal_.get(), &notifier_),
      descriptors_(journal_.get(), &notifier_) {}

absl::StatusOr<std::unique_ptr<EngineStore>> EngineStore::Open(std::unique_ptr<Journal> journal) {
  std::unique_ptr<EngineStore> store(new EngineStore(std::move(journal)));
  if (store->journal_ != nullptr) {
    PERPER_RETURN_IF_ERROR(store->executions_.Load());
    PERPER_RETURN_IF_ERROR(store->streams_.Load());
    PERPER_RETURN_IF_ERROR(store->states_.Load());
    PERPER_RETURN_IF_ERROR(store->descriptors_.Load());
  }
  return store;
}

absl::StatusOr<StepResult> EngineStore::Step(const StepRequest& request) {
  PERPER_RETURN_IF_ERROR(ValidateStepRequest(request));
  StepResult result;
  PERPER_ASSIGN_OR_RETURN(
      StreamsEngine::ListenerStep step,
      streams_.StepListener(request.stream, request.listener, request.reached_key,
                            request.expected_position,
                            [&](bool allowed, JournalBatch& batch) -> absl::StatusOr<bool> {
                              return states_.StepDictionary(request.dictionary, request.operations,
                                                            allowed, batch, result.outcomes);
                            }));
  result.applied = step.applied;
  result.already_taken = step.already_taken;
  result.position_mismatch = step.position_mismatch;
  result.position = step.position;
  return result;
}

}  // namespace perper::storage
