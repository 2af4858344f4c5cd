// SPDX-License-Identifier: MIT
#include "perper/storage/engine/executions_engine.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "perper/storage/engine/keys.h"
#include "perper/storage/records.pb.h"

namespace perper::storage {

namespace {

// Debian's abseil has its own string_view; heterogeneous lookups take that one.
absl::string_view Key(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool SameContent(const ExecutionRecord& a, const ExecutionRecord& b) {
  return a.agent == b.agent && a.instance == b.instance && a.delegate == b.delegate &&
         a.arguments == b.arguments;
}

}  // namespace

ExecutionsEngine::ExecutionsEngine(Journal* journal, Notifier* notifier)
    : journal_(journal), notifier_(notifier) {}

ExecutionsEngine::Shard& ExecutionsEngine::ShardFor(std::string_view execution) {
  return shards_[absl::HashOf(Key(execution)) % kShards];
}

std::string ExecutionsEngine::Encode(const ExecutionRecord& record) {
  ExecutionData data;
  data.set_agent(record.agent);
  data.set_instance(record.instance);
  data.set_delegate(record.delegate);
  for (const std::string& argument : record.arguments) data.add_arguments(argument);
  data.set_finished(record.finished);
  for (const std::string& result : record.results) data.add_results(result);
  data.set_has_error(record.error.has_value());
  if (record.error.has_value()) data.set_error(*record.error);
  data.set_sequence(record.sequence);
  std::string bytes;
  data.SerializeToString(&bytes);
  return bytes;
}

Change ExecutionsEngine::MakeChange(Change::Kind kind, const ExecutionRecord& record) {
  Change change;
  change.kind = kind;
  change.id = record.execution;
  change.agent = record.agent;
  change.instance = record.instance;
  change.delegate = record.delegate;
  return change;
}

absl::Status ExecutionsEngine::Load() {
  uint64_t max_sequence = 0;
  absl::Status parse_status = absl::OkStatus();
  absl::Status status = journal_ == nullptr
                            ? absl::OkStatus()
                            : journal_->Scan(keys::SpacePrefix(keys::kExecution),
                                             [&](std::string_view key, std::string_view value) {
    ExecutionData data;
    std::string id(key.substr(2));
    if (!data.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      if (parse_status.ok()) {
        parse_status = absl::DataLossError("execution record " + id + " cannot be parsed");
      }
      return;
    }
    ExecutionRecord record;
    record.execution = id;
    record.agent = data.agent();
    record.instance = data.instance();
    record.delegate = data.delegate();
    record.arguments.assign(data.arguments().begin(), data.arguments().end());
    record.finished = data.finished();
    record.results.assign(data.results().begin(), data.results().end());
    if (data.has_error()) record.error = data.error();
    record.sequence = data.sequence();
    max_sequence = std::max(max_sequence, record.sequence);
    Shard& shard = ShardFor(id);
    absl::MutexLock lock(&shard.mu);
    shard.executions.insert_or_assign(std::move(id), std::move(record));
  });
  if (!status.ok()) return status;
  if (!parse_status.ok()) return parse_status;
  next_sequence_.store(max_sequence + 1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<bool> ExecutionsEngine::CreateExecution(ExecutionRecord record) {
  if (record.execution.empty()) return absl::InvalidArgumentError("execution must not be empty");
  record.finished = false;
  record.results.clear();
  record.error.reset();
  Shard& shard = ShardFor(record.execution);
  Change change;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.executions.find(record.execution);
    if (it != shard.executions.end()) {
      if (SameContent(it->second, record)) return false;
      return absl::AlreadyExistsError("execution " + record.execution +
                                      " already exists with different content");
    }
    // Taken under the shard lock, so one ID's incarnations get increasing sequences.
    record.sequence = next_sequence_.fetch_add(1, std::memory_order_relaxed);
    JournalBatch batch;
    batch.Put(keys::Simple(keys::kExecution, record.execution), Encode(record));
    if (absl::Status status = CommitIfDurable(journal_, batch); !status.ok()) return status;
    change = MakeChange(Change::Kind::kExecutionCreated, record);
    shard.executions.emplace(record.execution, std::move(record));
  }
  notifier_->Notify(change);
  return true;
}

absl::StatusOr<ExecutionRecord> ExecutionsEngine::GetExecution(std::string_view execution) {
  Shard& shard = ShardFor(execution);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.executions.find(Key(execution));
  if (it == shard.executions.end()) {
    return absl::NotFoundError("execution " + std::string(execution) + " not found");
  }
  return it->second;
}

absl::Status ExecutionsEngine::CompleteExecution(std::string_view execution,
                                                 std::vector<std::string> results,
                                                 std::optional<std::string> error) {
  Shard& shard = ShardFor(execution);
  Change change;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.executions.find(Key(execution));
    if (it == shard.executions.end()) {
      return absl::NotFoundError("execution " + std::string(execution) + " not found");
    }
    ExecutionRecord& record = it->second;
    if (record.finished) {
      return absl::FailedPreconditionError("execution " + std::string(execution) +
                                           " is already finished");
    }
    ExecutionRecord updated = record;
    updated.finished = true;
    updated.results = std::move(results);
    updated.error = std::move(error);
    JournalBatch batch;
    batch.Put(keys::Simple(keys::kExecution, execution), Encode(updated));
    if (absl::Status status = CommitIfDurable(journal_, batch); !status.ok()) return status;
    record = std::move(updated);
    change = MakeChange(Change::Kind::kExecutionCompleted, record);
  }
  notifier_->Notify(change);
  return absl::OkStatus();
}

absl::StatusOr<bool> ExecutionsEngine::DeleteExecution(std::string_view execution) {
  Shard& shard = ShardFor(execution);
  Change change;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.executions.find(Key(execution));
    if (it == shard.executions.end()) return false;
    JournalBatch batch;
    batch.Delete(keys::Simple(keys::kExecution, execution));
    if (absl::Status status = CommitIfDurable(journal_, batch); !status.ok()) return status;
    change = MakeChange(Change::Kind::kExecutionDeleted, it->second);
    shard.executions.erase(it);
    // Holders learn of the deletion itself; no separate release is reported.
    shard.reservations.erase(Key(execution));
  }
  notifier_->Notify(change);
  return true;
}

std::vector<ExecutionRecord> ExecutionsEngine::ListExecutions(const ExecutionFilter& filter,
                                                              size_t limit) {
  std::vector<ExecutionRecord> matching;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [id, record] : shard.executions) {
      if (Matches(filter, record)) matching.push_back(record);
    }
  }
  std::sort(matching.begin(), matching.end(),
            [](const ExecutionRecord& a, const ExecutionRecord& b) {
              return a.sequence < b.sequence;
            });
  if (matching.size() > limit) matching.resize(limit);
  return matching;
}

absl::StatusOr<bool> ExecutionsEngine::TryReserve(std::string_view execution,
                                                  std::string_view workgroup,
                                                  std::string_view holder) {
  Shard& shard = ShardFor(execution);
  absl::MutexLock lock(&shard.mu);
  if (!shard.executions.contains(Key(execution))) {
    return absl::NotFoundError("execution " + std::string(execution) + " not found");
  }
  auto& by_workgroup = shard.reservations[Key(execution)];
  auto [it, inserted] = by_workgroup.try_emplace(Key(workgroup), holder);
  return inserted || it->second == holder;
}

void ExecutionsEngine::ReleaseReservation(std::string_view execution, std::string_view workgroup,
                                          std::string_view holder) {
  Shard& shard = ShardFor(execution);
  Change change;
  {
    absl::MutexLock lock(&shard.mu);
    auto reservations = shard.reservations.find(Key(execution));
    if (reservations == shard.reservations.end()) return;
    auto it = reservations->second.find(Key(workgroup));
    if (it == reservations->second.end() || it->second != holder) return;
    reservations->second.erase(it);
    if (reservations->second.empty()) shard.reservations.erase(reservations);
    change.kind = Change::Kind::kReservationReleased;
    change.id = std::string(execution);
    change.workgroup = std::string(workgroup);
    if (auto record = shard.executions.find(Key(execution)); record != shard.executions.end()) {
      change.agent = record->second.agent;
      change.instance = record->second.instance;
      change.delegate = record->second.delegate;
    }
  }
  notifier_->Notify(change);
}

std::vector<ReservationRecord> ExecutionsEngine::ListReservations(std::string_view workgroup,
                                                                  size_t limit) {
  std::vector<ReservationRecord> out;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [execution, by_workgroup] : shard.reservations) {
      for (const auto& [group, holder] : by_workgroup) {
        if (group == workgroup) out.push_back({execution, group, holder});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const ReservationRecord& a, const ReservationRecord& b) {
    return a.execution < b.execution;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace perper::storage
