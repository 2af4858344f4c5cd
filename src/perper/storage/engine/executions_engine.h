// SPDX-License-Identifier: MIT
// The executions part of the engine backends: executions in sharded in-memory maps, each kept
// as its serialized journal record, journaled under `x/<execution>` when a Journal is set, plus
// the reservation table (not journaled: reservations belong to live calls and vanish with them).
//
// Each shard has its own mutex and holds both the executions whose ID hashes to it and their
// reservations, so completing or deleting an execution drops its reservations atomically and
// TryReserve can check existence and completion under the same lock. Creation order comes from
// a process-wide sequence that Load() continues after the largest stored one.
//
// Thread safety: every method is safe to call concurrently; changes are reported to the Notifier
// after the shard lock is released.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class ExecutionsEngine final : public ExecutionStore {
 public:
  // `journal` may be null (memory backend). Both pointers must outlive the engine.
  ExecutionsEngine(Journal* journal, Notifier* notifier);

  // Reads every `x/` record from the journal. REQUIRES: called once, before any other method.
  absl::Status Load();

  absl::StatusOr<bool> CreateExecution(ExecutionRecord record) override;
  absl::StatusOr<ExecutionRecord> GetExecution(std::string_view execution) override;
  absl::StatusOr<bool> ReadExecution(
      std::string_view execution, absl::FunctionRef<void(const ExecutionRecord&)> visit) override;
  absl::Status CompleteExecution(std::string_view execution, std::vector<std::string> results,
                                 std::optional<std::string> error) override;
  absl::StatusOr<bool> DeleteExecution(std::string_view execution) override;
  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ExecutionFilter& filter,
                                                              size_t limit) override;
  absl::StatusOr<bool> TryReserve(std::string_view execution, std::string_view workgroup,
                                  std::string_view holder) override;
  absl::Status ReleaseReservation(std::string_view execution, std::string_view workgroup,
                                  std::string_view holder) override;
  absl::StatusOr<std::vector<std::string>> ListExecutionIds(const ExecutionFilter& filter,
                                                            size_t limit) override;
  absl::StatusOr<std::vector<ReservationRecord>> ListReservations(std::string_view workgroup,
                                                                  size_t limit) override;

 private:
  static constexpr size_t kShards = 64;

  // An execution as kept in memory: its journal record (ExecutionData bytes, every field but
  // the ID, which is the map key) in one allocation, plus the fields the hot paths check
  // without decoding. Its cost beyond the record bytes is the map slot (80 bytes) and one
  // allocation; an ExecutionRecord with its strings and vectors cost several times that.
  struct Stored {
    std::string data;
    uint64_t sequence = 0;
    bool finished = false;
  };

  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Stored> executions ABSL_GUARDED_BY(mu);
    // execution -> workgroup -> holder. An entry exists only while its execution does.
    absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, std::string>> reservations
        ABSL_GUARDED_BY(mu);
  };

  Shard& ShardFor(std::string_view execution);
  // The journal record of `record`, with the finished state given separately (so completing
  // need not copy the record).
  static std::string Encode(const ExecutionRecord& record, bool finished,
                            const std::vector<std::string>& results,
                            const std::optional<std::string>& error);
  // The record of `stored` (ID `execution`); false when its bytes do not parse.
  static bool Decode(std::string_view execution, const Stored& stored, ExecutionRecord* record);
  static Change MakeChange(Change::Kind kind, const ExecutionRecord& record);

  Journal* const journal_;
  Notifier* const notifier_;
  std::atomic<uint64_t> next_sequence_{1};
  std::array<Shard, kShards> shards_;
};

}  // namespace perper::storage
