// SPDX-License-Identifier: MIT
#include "perper/storage/store.h"

#include "absl/strings/cord.h"

#include "perper/common/text.h"
#include "perper/common/values.h"

namespace perper::storage {

bool Matches(const ExecutionFilter& filter, const ExecutionRecord& record) {
  if (!filter.any_agent && record.agent != filter.agent) return false;
  if (!filter.instance.empty() && record.instance != filter.instance) return false;
  if (!filter.delegate.empty() && record.delegate != filter.delegate) return false;
  if (!filter.include_finished && record.finished) return false;
  return true;
}

absl::StatusOr<std::vector<std::string>> ExecutionStore::ListExecutionIds(
    const ExecutionFilter& filter, size_t limit) {
  absl::StatusOr<std::vector<ExecutionRecord>> records = ListExecutions(filter, limit);
  if (!records.ok()) return records.status();
  std::vector<std::string> ids;
  for (ExecutionRecord& record : *records) ids.push_back(std::move(record.execution));
  return ids;
}

absl::StatusOr<ExecutionStore::ReserveOutcome> ExecutionStore::ReadAndReserve(
    std::string_view execution, const ExecutionFilter& filter, std::string_view workgroup,
    std::string_view holder, absl::FunctionRef<void(const ExecutionRecord&)> visit) {
  bool matches = false;
  absl::StatusOr<bool> found = ReadExecution(execution, [&](const ExecutionRecord& record) {
    if (record.finished || !Matches(filter, record)) return;
    matches = true;
    visit(record);
  });
  if (!found.ok()) return found.status();
  if (!matches) return ReserveOutcome::kSkipped;
  absl::StatusOr<bool> reserved = TryReserve(execution, workgroup, holder);
  if (IsGoneOrFinished(reserved.status())) return ReserveOutcome::kSkipped;
  if (!reserved.ok()) return reserved.status();
  return *reserved ? ReserveOutcome::kReserved : ReserveOutcome::kHeldByOther;
}

absl::StatusOr<std::vector<ExecutionStore::ReserveOutcome>> ExecutionStore::ReadAndReserveMany(
    const std::vector<std::string>& executions, const ExecutionFilter& filter,
    std::string_view workgroup, std::string_view holder,
    absl::FunctionRef<void(size_t index, const ExecutionRecord&)> visit) {
  std::vector<ReserveOutcome> outcomes;
  outcomes.reserve(executions.size());
  for (size_t i = 0; i < executions.size(); ++i) {
    absl::StatusOr<ReserveOutcome> outcome =
        ReadAndReserve(executions[i], filter, workgroup, holder,
                       [&](const ExecutionRecord& record) { visit(i, record); });
    if (!outcome.ok()) return outcome.status();
    outcomes.push_back(*outcome);
  }
  return outcomes;
}

namespace {
constexpr char kRetentionPayload[] = "perper.storage/retention-bound";
}  // namespace

absl::Status RetentionBoundReached(std::string message) {
  absl::Status status = absl::ResourceExhaustedError(message);
  status.SetPayload(kRetentionPayload, absl::Cord("1"));
  return status;
}

bool IsRetentionBoundReached(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && status.GetPayload(kRetentionPayload).has_value();
}

absl::StatusOr<std::vector<int64_t>> StreamStore::WriteItemsBounded(std::string_view stream,
                                                                    std::vector<ItemToWrite>& items,
                                                                    size_t max_retained_bytes) {
  return WriteItems(stream, std::move(items));
}

absl::StatusOr<size_t> StreamStore::VisitItems(
    std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
    absl::FunctionRef<void(int64_t key, std::string_view value)> visit) {
  absl::StatusOr<std::vector<StreamItem>> items = ReadItems(stream, from_key, max_items, max_bytes);
  if (!items.ok()) return items.status();
  for (const StreamItem& item : *items) visit(item.key, item.value);
  return items->size();
}

absl::Status ValidateStepRequest(const StepRequest& request) {
  if (request.stream.empty()) return absl::InvalidArgumentError("stream ID must not be empty");
  if (request.listener.empty()) {
    return absl::InvalidArgumentError("listener name must not be empty (a step on stream " +
                                      ShortId(request.stream) + ")");
  }
  if (!request.operations.empty() && request.dictionary.empty()) {
    return absl::InvalidArgumentError("the step of listener " + ShortId(request.listener) +
                                      " on stream " + ShortId(request.stream) +
                                      " has operations but no dictionary");
  }
  for (size_t i = 0; i < request.operations.size(); ++i) {
    if (IsNullValue(request.operations[i].key)) {
      return absl::InvalidArgumentError("operations[" + std::to_string(i) +
                                        "].key must not be null (dictionary \"" +
                                        ShortId(request.dictionary) + "\")");
    }
  }
  return absl::OkStatus();
}

}  // namespace perper::storage
