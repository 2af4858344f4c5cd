// SPDX-License-Identifier: MIT
#include "perper/storage/engine/executions_engine.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/time/clock.h"
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "perper/common/strings.h"
#include "perper/common/text.h"
#include "perper/storage/engine/keys.h"
#include "perper/storage/records.pb.h"

namespace perper::storage {

namespace {

bool SameContent(const ExecutionRecord& a, const ExecutionRecord& b) {
  return a.agent == b.agent && a.instance == b.instance && a.delegate == b.delegate &&
         a.arguments == b.arguments;
}

}  // namespace

ExecutionsEngine::ExecutionsEngine(Journal* journal, Notifier* notifier)
    : journal_(journal), notifier_(notifier) {}

ExecutionsEngine::Shard& ExecutionsEngine::ShardFor(std::string_view execution) {
  return shards_[absl::HashOf(AbslView(execution)) % kShards];
}

std::string ExecutionsEngine::Encode(const ExecutionRecord& record, bool finished,
                                     const std::vector<std::string>& results,
                                     const std::optional<std::string>& error) {
  ExecutionData data;
  data.set_agent(record.agent);
  data.set_instance(record.instance);
  data.set_delegate(record.delegate);
  for (const std::string& argument : record.arguments) data.add_arguments(argument);
  data.set_finished(finished);
  for (const std::string& result : results) data.add_results(result);
  data.set_has_error(error.has_value());
  if (error.has_value()) data.set_error(*error);
  data.set_sequence(record.sequence);
  data.set_created_ms(record.created_ms);
  std::string bytes;
  data.SerializeToString(&bytes);
  return bytes;
}

// A per-thread record to decode into: its strings and vectors keep their capacity from one use
// to the next, so a warm read allocates nothing. Never held across calls into the store.
static ExecutionRecord& Scratch() {
  thread_local ExecutionRecord record;
  return record;
}

bool ExecutionsEngine::Decode(std::string_view execution, const Stored& stored,
                              ExecutionRecord* record) {
  // Read field by field into `record`'s own strings, which keep their capacity: decoding into a
  // record used before allocates nothing when the values fit.
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(stored.data.data()),
                                            static_cast<int>(stored.data.size()));
  record->execution.assign(execution.data(), execution.size());
  record->agent.clear();
  record->instance.clear();
  record->delegate.clear();
  size_t arguments = 0, results = 0;
  int64_t created_ms = 0, finished_ms = 0;
  bool has_error = false;
  std::string error;
  auto next = [](std::vector<std::string>& values, size_t& count) {
    if (count == values.size()) values.emplace_back();
    return &values[count++];
  };
  while (uint32_t tag = in.ReadTag()) {
    int field = WireFormatLite::GetTagFieldNumber(tag);
    std::string* target = nullptr;
    switch (field) {
      case ExecutionData::kAgentFieldNumber:
        target = &record->agent;
        break;
      case ExecutionData::kInstanceFieldNumber:
        target = &record->instance;
        break;
      case ExecutionData::kDelegateFieldNumber:
        target = &record->delegate;
        break;
      case ExecutionData::kArgumentsFieldNumber:
        target = next(record->arguments, arguments);
        break;
      case ExecutionData::kResultsFieldNumber:
        target = next(record->results, results);
        break;
      case ExecutionData::kErrorFieldNumber:
        target = &error;
        break;
      case ExecutionData::kHasErrorFieldNumber: {
        uint64_t value;
        if (!in.ReadVarint64(&value)) return false;
        has_error = value != 0;
        continue;
      }
      case ExecutionData::kCreatedMsFieldNumber:
      case ExecutionData::kFinishedMsFieldNumber: {
        uint64_t value;
        if (!in.ReadVarint64(&value)) return false;
        (field == ExecutionData::kCreatedMsFieldNumber ? created_ms : finished_ms) =
            static_cast<int64_t>(value);
        continue;
      }
      default:
        if (!WireFormatLite::SkipField(&in, tag)) return false;
        continue;
    }
    uint32_t size;
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED ||
        !in.ReadVarint32(&size) || !in.ReadString(target, static_cast<int>(size))) {
      return false;
    }
  }
  if (!in.ConsumedEntireMessage()) return false;
  record->arguments.resize(arguments);
  record->results.resize(results);
  record->finished = stored.finished;
  record->sequence = stored.sequence;
  record->created_ms = created_ms;
  record->finished_ms = finished_ms;
  if (has_error) {
    record->error = std::move(error);
  } else {
    record->error.reset();
  }
  return true;
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
  absl::Status status =
      journal_ == nullptr
          ? absl::OkStatus()
          : journal_->Scan(keys::SpacePrefix(keys::kExecution), [&](std::string_view key,
                                                                    std::string_view value) {
              ExecutionData data;
              std::string id(key.substr(2));
              if (!data.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                if (parse_status.ok()) {
                  parse_status =
                      absl::DataLossError("execution record " + id + " cannot be parsed");
                }
                return;
              }
              Stored stored;
              stored.data = std::string(value);
              stored.sequence = data.sequence();
              stored.finished = data.finished();
              max_sequence = std::max(max_sequence, stored.sequence);
              Shard& shard = ShardFor(id);
              absl::MutexLock lock(&shard.mu);
              shard.executions.insert_or_assign(std::move(id), std::move(stored));
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
      ExecutionRecord existing;
      if (Decode(it->first, it->second, &existing) && SameContent(existing, record)) return false;
      return absl::AlreadyExistsError("execution " + record.execution +
                                      " already exists with different content");
    }
    // Taken under the shard lock, so one ID's incarnations get increasing sequences.
    record.sequence = next_sequence_.fetch_add(1, std::memory_order_relaxed);
    record.created_ms = absl::ToUnixMillis(absl::Now());
    Stored stored;
    stored.data = Encode(record, false, record.results, record.error);
    stored.sequence = record.sequence;
    if (journal_ != nullptr) {
      JournalBatch batch;
      batch.Put(keys::Simple(keys::kExecution, record.execution), stored.data);
      if (absl::Status status = journal_->Commit(batch); !status.ok()) return status;
    }
    change.kind = Change::Kind::kExecutionCreated;
    change.agent = std::move(record.agent);
    change.instance = std::move(record.instance);
    change.delegate = std::move(record.delegate);
    change.id = record.execution;
    shard.executions.emplace(std::move(record.execution), std::move(stored));
  }
  notifier_->Notify(change);
  return true;
}

absl::StatusOr<ExecutionRecord> ExecutionsEngine::GetExecution(std::string_view execution) {
  Shard& shard = ShardFor(execution);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.executions.find(AbslView(execution));
  if (it == shard.executions.end()) {
    return absl::NotFoundError("execution " + ShortId(execution) + " not found");
  }
  ExecutionRecord record;
  if (!Decode(execution, it->second, &record)) {
    return absl::DataLossError("execution " + ShortId(execution) + " cannot be decoded");
  }
  return record;
}

absl::StatusOr<bool> ExecutionsEngine::ReadExecution(
    std::string_view execution, absl::FunctionRef<void(const ExecutionRecord&)> visit) {
  ExecutionRecord& record = Scratch();
  Shard& shard = ShardFor(execution);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.executions.find(AbslView(execution));
  if (it == shard.executions.end()) return false;
  if (!Decode(execution, it->second, &record)) return false;
  visit(record);
  return true;
}

absl::Status ExecutionsEngine::CompleteExecution(std::string_view execution,
                                                 std::vector<std::string> results,
                                                 std::optional<std::string> error) {
  Shard& shard = ShardFor(execution);
  Change change;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.executions.find(AbslView(execution));
    if (it == shard.executions.end()) {
      return absl::NotFoundError("execution " + ShortId(execution) + " not found");
    }
    Stored& stored = it->second;
    if (stored.finished) {
      return absl::FailedPreconditionError("execution " + ShortId(execution) +
                                           " is already finished");
    }
    ExecutionRecord& record = Scratch();
    if (!Decode(execution, stored, &record)) {
      return absl::DataLossError("execution " + ShortId(execution) + " cannot be decoded");
    }
    // An unfinished record has no finished, results or error fields (they are cleared at
    // creation and proto3 omits defaults), so appending them encodes the finished record.
    ExecutionData outcome;
    outcome.set_finished(true);
    for (std::string& result : results) outcome.add_results(std::move(result));
    outcome.set_has_error(error.has_value());
    if (error.has_value()) outcome.set_error(*error);
    outcome.set_finished_ms(absl::ToUnixMillis(absl::Now()));
    std::string data;
    data.reserve(stored.data.size() + outcome.ByteSizeLong());
    data = stored.data;
    outcome.AppendToString(&data);
    if (journal_ != nullptr) {
      JournalBatch batch;
      batch.Put(keys::Simple(keys::kExecution, execution), data);
      if (absl::Status status = journal_->Commit(batch); !status.ok()) return status;
    }
    stored.data = std::move(data);
    stored.finished = true;
    // A finished execution is never dispatched again, so nothing is left to hold; no release
    // is reported, since no member could take it.
    shard.reservations.erase(AbslView(execution));
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
    auto it = shard.executions.find(AbslView(execution));
    if (it == shard.executions.end()) return false;
    if (journal_ != nullptr) {
      JournalBatch batch;
      batch.Delete(keys::Simple(keys::kExecution, execution));
      if (absl::Status status = journal_->Commit(batch); !status.ok()) return status;
    }
    ExecutionRecord& record = Scratch();
    (void)Decode(execution, it->second, &record);  // Only for the change's agent and instance.
    change = MakeChange(Change::Kind::kExecutionDeleted, record);
    shard.executions.erase(it);
    // Holders learn of the deletion itself; no separate release is reported.
    shard.reservations.erase(AbslView(execution));
  }
  notifier_->Notify(change);
  return true;
}

absl::StatusOr<std::vector<ExecutionRecord>> ExecutionsEngine::ListExecutions(
    const ExecutionFilter& filter, size_t limit) {
  // The IDs of every match first (cheap: no record is copied), then records are read oldest
  // first until `limit` still match: a listing of the first few among many (the CLI's, a count
  // of what is left) no longer copies every match. An execution that finished or went away
  // since the scan is passed over, so a match is never missed because an older one just ended.
  std::vector<ExecutionRecord> records;
  absl::StatusOr<std::vector<std::string>> ids =
      ListExecutionIds(filter, std::numeric_limits<size_t>::max());
  if (!ids.ok()) return ids.status();
  for (const std::string& id : *ids) {
    if (records.size() >= limit) break;
    (void)ReadExecution(id, [&](const ExecutionRecord& record) {
      if ((filter.include_finished || !record.finished) && Matches(filter, record)) {
        records.push_back(record);
      }
    });
  }
  return records;
}

absl::StatusOr<std::vector<std::string>> ExecutionsEngine::ListExecutionIds(
    const ExecutionFilter& filter, size_t limit) {
  // Each match costs its ID and sequence: the records are decoded (to filter them) into one
  // scratch record whose buffers are reused, never copied out.
  std::vector<std::pair<uint64_t, std::string>> matching;
  ExecutionRecord scratch;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [id, stored] : shard.executions) {
      if (stored.finished && !filter.include_finished) continue;
      if (Decode(id, stored, &scratch) && Matches(filter, scratch)) {
        matching.emplace_back(scratch.sequence, id);
      }
    }
  }
  auto older = [](const auto& a, const auto& b) { return a.first < b.first; };
  if (matching.size() > limit) {
    std::nth_element(matching.begin(), matching.begin() + limit, matching.end(), older);
    matching.resize(limit);
  }
  std::sort(matching.begin(), matching.end(), older);
  std::vector<std::string> ids;
  ids.reserve(matching.size());
  for (auto& [sequence, id] : matching) ids.push_back(std::move(id));
  return ids;
}

absl::StatusOr<bool> ExecutionsEngine::TryReserve(std::string_view execution,
                                                  std::string_view workgroup,
                                                  std::string_view holder) {
  Shard& shard = ShardFor(execution);
  absl::MutexLock lock(&shard.mu);
  auto stored = shard.executions.find(AbslView(execution));
  if (stored == shard.executions.end()) {
    return absl::NotFoundError("execution " + ShortId(execution) + " not found");
  }
  if (stored->second.finished) {
    return absl::FailedPreconditionError("execution " + ShortId(execution) +
                                         " is already finished");
  }
  auto& by_workgroup = shard.reservations[AbslView(execution)];
  auto [it, inserted] = by_workgroup.try_emplace(AbslView(workgroup), holder);
  return inserted || it->second == holder;
}

absl::Status ExecutionsEngine::ReleaseReservation(std::string_view execution,
                                                  std::string_view workgroup,
                                                  std::string_view holder) {
  Shard& shard = ShardFor(execution);
  Change change;
  {
    absl::MutexLock lock(&shard.mu);
    auto reservations = shard.reservations.find(AbslView(execution));
    if (reservations == shard.reservations.end()) return absl::OkStatus();
    auto it = reservations->second.find(AbslView(workgroup));
    if (it == reservations->second.end() || it->second != holder) return absl::OkStatus();
    reservations->second.erase(it);
    if (reservations->second.empty()) shard.reservations.erase(reservations);
    change.kind = Change::Kind::kReservationReleased;
    change.id = std::string(execution);
    change.workgroup = std::string(workgroup);
    if (auto stored = shard.executions.find(AbslView(execution));
        stored != shard.executions.end()) {
      ExecutionRecord record;
      if (Decode(execution, stored->second, &record)) {
        change.agent = std::move(record.agent);
        change.instance = std::move(record.instance);
        change.delegate = std::move(record.delegate);
      }
    }
  }
  notifier_->Notify(change);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ReservationRecord>> ExecutionsEngine::ListReservations(
    std::string_view workgroup, size_t limit) {
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
