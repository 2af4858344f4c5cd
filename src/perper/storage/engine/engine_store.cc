// SPDX-License-Identifier: MIT
#include "perper/storage/engine/engine_store.h"

#include <string>

#include "perper/common/status_macros.h"
#include "perper/common/text.h"
#include "perper/common/values.h"

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
  if (request.stream.empty()) return absl::InvalidArgumentError("stream ID must not be empty");
  if (request.listener.empty()) {
    return absl::InvalidArgumentError("listener name must not be empty (a step on stream " +
                                      ShortId(request.stream) + ")");
  }
  if (!request.operations.empty() && request.dictionary.empty()) {
    return absl::InvalidArgumentError(
        "the step of listener " + ShortId(request.listener) + " on stream " +
        ShortId(request.stream) + " has operations but no dictionary");
  }
  for (size_t i = 0; i < request.operations.size(); ++i) {
    if (IsNullValue(request.operations[i].key)) {
      return absl::InvalidArgumentError("operations[" + std::to_string(i) +
                                        "].key must not be null (dictionary \"" +
                                        ShortId(request.dictionary) + "\")");
    }
  }
  StepResult result;
  PERPER_ASSIGN_OR_RETURN(
      StreamsEngine::ListenerStep step,
      streams_.StepListener(request.stream, request.listener, request.reached_key,
                            request.expected_position,
                            [&](bool allowed, JournalBatch& batch) -> absl::StatusOr<bool> {
                              return states_.StepDictionary(request.dictionary,
                                                            request.operations, allowed, batch,
                                                            result.outcomes);
                            }));
  result.applied = step.applied;
  result.already_taken = step.already_taken;
  result.position_mismatch = step.position_mismatch;
  result.position = step.position;
  return result;
}

}  // namespace perper::storage
