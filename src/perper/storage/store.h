// SPDX-License-Identifier: MIT
// The storage interface of the Fabric: everything the Fabric keeps goes through `Store`.
//
// A Store holds executions (with their reservations), streams (items, listeners, completion),
// state dictionaries and lists, and protobuf descriptors. Every backend (memory, rocksdb, and
// later a Redis store shared by several Fabric processes) implements this interface and passes
// the conformance suite in perper/storage/testing/.
//
// Values are serialized google.protobuf.Any bytes (see perper/common/values.h); the store never
// interprets them beyond IsNullValue() and byte equality.
//
// Durability: when a mutating call returns OK, the change is durable in a durable backend (it
// survives kill -9 of the process).
//
// Notifications: after a change is committed, the store reports it to its ChangeObserver
// (perper/storage/change.h). Changes carry IDs, not payloads; whoever needs the data reads it
// back. Observers are called outside the store's locks, possibly concurrently from several
// threads, and a change may be reported after a later change to the same object: treat changes
// as hints and re-read. This is what lets a listener be served by another process than the
// writer.
//
// Errors: every method that reads or writes can fail when the backend is remote (Redis):
// UNAVAILABLE when it cannot be reached, RESOURCE_EXHAUSTED when it is full. The in-process
// backends only fail where a method documents it.
//
// Thread safety: every method of a Store is safe to call concurrently from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "perper/storage/change.h"

namespace perper::storage {

// ---------------------------------------------------------------------------------------------
// Executions

// The agent whose executions are the live agent instances (upstream's layout): a Registry
// record's `execution` is the instance's ID, and its `instance` field holds the instance's
// agent type (read it through ExecutionRecord::registered_agent_type).
inline constexpr char kRegistryAgent[] = "Registry";

struct ExecutionRecord {
  std::string execution;  // ID, chosen by the client; never empty.
  std::string agent;
  std::string instance;  // For a Registry record: the agent type (see kRegistryAgent).
  std::string delegate;
  std::vector<std::string> arguments;  // Any bytes each.
  bool finished = false;
  std::vector<std::string> results;  // Any bytes each; meaningful once finished.
  std::optional<std::string> error;  // Set when the execution finished with an error.
  // Assigned by the store at creation, strictly increasing: creation order.
  uint64_t sequence = 0;
  // When the store created and finished it, in milliseconds since the Unix epoch (for ages and
  // durations in listings); 0 when unknown (not finished, or stored by an older version).
  // Assigned by the store; a create's or completion's own values are ignored.
  int64_t created_ms = 0;
  int64_t finished_ms = 0;

  bool is_registry() const { return agent == kRegistryAgent; }
  // The agent type of the instance a Registry record stands for. REQUIRES: is_registry().
  const std::string& registered_agent_type() const { return instance; }
};

// Which executions a listing returns. Empty instance or delegate match any; agent must match
// exactly unless `any_agent` is set.
struct ExecutionFilter {
  std::string agent;
  bool any_agent = false;
  std::string instance;
  std::string delegate;
  bool include_finished = false;
};

bool Matches(const ExecutionFilter& filter, const ExecutionRecord& record);

struct ReservationRecord {
  std::string execution;
  std::string workgroup;
  std::string holder;
};

// What TryReserve answers for an execution deleted or finished meanwhile (NOT_FOUND,
// FAILED_PRECONDITION): a reserving listener has nothing to deliver then.
inline bool IsGoneOrFinished(const absl::Status& status) {
  return absl::IsNotFound(status) || absl::IsFailedPrecondition(status);
}

class ExecutionStore {
 public:
  virtual ~ExecutionStore() = default;

  // Put-if-absent. Returns true when created, false when an identical execution (same agent,
  // instance, delegate and arguments) already exists. Different content: ALREADY_EXISTS.
  // REQUIRES: record.execution non-empty. `sequence`, `finished`, `results`, `error` are ignored.
  virtual absl::StatusOr<bool> CreateExecution(ExecutionRecord record) = 0;

  // NOT_FOUND when absent.
  virtual absl::StatusOr<ExecutionRecord> GetExecution(std::string_view execution) = 0;

  // Calls `visit` once with the execution as stored, without copying it, and returns true; or
  // returns false without calling it when the execution is absent. For the hot paths that need
  // a few fields (dispatch, result waiters). `visit` runs under the store's lock: it must not
  // call into the store and should be short. The default reads a copy through GetExecution.
  virtual absl::StatusOr<bool> ReadExecution(
      std::string_view execution, absl::FunctionRef<void(const ExecutionRecord&)> visit) {
    absl::StatusOr<ExecutionRecord> record = GetExecution(execution);
    if (absl::IsNotFound(record.status())) return false;
    if (!record.ok()) return record.status();
    visit(*record);
    return true;
  }

  // Finishes an execution and drops its reservations (a finished execution is never dispatched
  // again). NOT_FOUND when absent; FAILED_PRECONDITION when already finished.
  virtual absl::Status CompleteExecution(std::string_view execution,
                                         std::vector<std::string> results,
                                         std::optional<std::string> error) = 0;

  // Removes an execution and every reservation of it. Returns false when it was absent.
  virtual absl::StatusOr<bool> DeleteExecution(std::string_view execution) = 0;

  // Matching executions in creation order, at most `limit`.
  virtual absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ExecutionFilter& filter,
                                                                      size_t limit) = 0;
  // The IDs of what ListExecutions returns, in the same order, without copying the records
  // (a listen call's initial scan needs only the IDs). The default forwards to ListExecutions;
  // a backend overrides it to skip the copies.
  virtual absl::StatusOr<std::vector<std::string>> ListExecutionIds(const ExecutionFilter& filter,
                                                                    size_t limit);

  // Reservations: at most one holder per (execution, workgroup). They belong to live calls and
  // are not durable, and end when the execution is completed or deleted. Returns true when
  // `holder` now holds it (or already did), false when another holder does. NOT_FOUND when the
  // execution is absent, FAILED_PRECONDITION when it is finished.
  virtual absl::StatusOr<bool> TryReserve(std::string_view execution, std::string_view workgroup,
                                          std::string_view holder) = 0;
  enum class ReserveOutcome {
    kSkipped,      // Absent, finished, or not matching the filter: nothing to deliver.
    kReserved,     // `holder` holds it now (or already did).
    kHeldByOther,  // Another holder has it.
  };
  // What a reserving listener does with an execution it was told about: read it and, when it
  // matches `filter` and is unfinished, reserve it for `holder`. `visit` sees the record of a
  // matching execution (before the reservation is tried, or only once it is taken, depending
  // on the store); use what it saw only on kReserved. The default is ReadExecution followed by
  // TryReserve; a store with a round trip per operation does both in one.
  virtual absl::StatusOr<ReserveOutcome> ReadAndReserve(
      std::string_view execution, const ExecutionFilter& filter, std::string_view workgroup,
      std::string_view holder, absl::FunctionRef<void(const ExecutionRecord&)> visit);
  // ReadAndReserve of each of `executions` (distinct IDs), in order: one outcome per ID, or the
  // first error. `visit(i, record)` as ReadAndReserve's for executions[i]. The default runs them
  // one by one; a store with a round trip per operation sends them together.
  virtual absl::StatusOr<std::vector<ReserveOutcome>> ReadAndReserveMany(
      const std::vector<std::string>& executions, const ExecutionFilter& filter,
      std::string_view workgroup, std::string_view holder,
      absl::FunctionRef<void(size_t index, const ExecutionRecord&)> visit);
  // Releases the reservation if `holder` holds it, reporting kReservationReleased.
  virtual absl::Status ReleaseReservation(std::string_view execution, std::string_view workgroup,
                                          std::string_view holder) = 0;
  virtual absl::StatusOr<std::vector<ReservationRecord>> ListReservations(
      std::string_view workgroup, size_t limit) = 0;
};

// ---------------------------------------------------------------------------------------------
// Streams

// Listener positions with special meaning.
inline constexpr int64_t kPositionNotStarted = std::numeric_limits<int64_t>::min();  // keeps all
inline constexpr int64_t kPositionTrigger = std::numeric_limits<int64_t>::max();     // keeps none

struct StreamRecord {
  std::string stream;
  bool ephemeral = true;
  int64_t stride = 0;  // 0: unpacked.
  bool completed = false;
  std::optional<std::string> error;  // Set when completed with an error.
};

struct StreamItem {
  int64_t key = 0;
  std::string value;  // Any bytes.
};

struct ItemToWrite {
  std::optional<int64_t> key;  // nullopt: the store assigns the key.
  std::string value;
};

// What an item counts against a stream's retention bound: its value and a fixed allowance for
// its key and the engine's bookkeeping (measured at about 160 bytes an item in RSS).
inline constexpr size_t kRetainedItemOverhead = 128;
inline size_t RetainedBytes(std::string_view value) { return value.size() + kRetainedItemOverhead; }

struct ListenerRecord {
  std::string name;
  int64_t position = kPositionNotStarted;  // The last key processed.
  bool transient = false;                  // Lives only as long as the call that registered it.
};

struct StreamSummary {
  StreamRecord record;
  uint64_t item_count = 0;
  uint64_t written_count = 0;   // As StreamProgress::written_count.
  uint64_t retained_bytes = 0;  // As WriteItemsBounded counts them (RetainedBytes).
  std::optional<int64_t> first_key;
  std::optional<int64_t> last_key;
  std::vector<ListenerRecord> listeners;
};

// Where a stream stands, for a producer that is run again and resumes.
struct StreamProgress {
  // The largest key ever written (kept when an ephemeral stream collects its items); nullopt
  // until the first item is written.
  std::optional<int64_t> last_key;
  // Items ever written: those stored now plus those garbage collection removed. A replay (an
  // identical rewrite, or a key at or below the collected floor) stores nothing and does not
  // count.
  uint64_t written_count = 0;
  bool completed = false;
  std::optional<std::string> error;  // Set when completed with an error.
};

// The RESOURCE_EXHAUSTED of WriteItemsBounded when a stream's retention bound is reached (a
// write worth waiting for: the slowest listener may move), told apart by a payload from any
// other RESOURCE_EXHAUSTED (a full Redis, say), which is final.
absl::Status RetentionBoundReached(std::string message);
bool IsRetentionBoundReached(const absl::Status& status);

class StreamStore {
 public:
  virtual ~StreamStore() = default;

  // Returns true when created, false when an identical stream exists (same ephemeral and stride,
  // and not completed). Different options: ALREADY_EXISTS.
  virtual absl::StatusOr<bool> CreateStream(StreamRecord record) = 0;
  virtual absl::StatusOr<StreamRecord> GetStream(std::string_view stream) = 0;

  // Appends items atomically: all are written or none. Auto keys are assigned strictly
  // increasing per stream (ticks, or one past the last key when that is larger). Returns the key
  // of each item. NOT_FOUND unknown stream; ALREADY_EXISTS a key already used (or used twice in
  // the batch); FAILED_PRECONDITION the stream is completed.
  virtual absl::StatusOr<std::vector<int64_t>> WriteItems(std::string_view stream,
                                                          std::vector<ItemToWrite> items) = 0;
  // WriteItems under a bound on what an ephemeral stream retains (items kept because some
  // listener has not passed them, counted as RetainedBytes): when the stream is ephemeral, holds
  // items, and would hold more than `max_retained_bytes` with these, nothing is written, `items`
  // is left as it was, and the status is RetentionBoundReached (RESOURCE_EXHAUSTED) naming
  // the stream, the limit and the lowest listener with its position. A write into an
  // empty stream always fits, so an item larger than the bound can still be written. On success
  // the values are moved out of `items`. Persistent streams are not bounded. The default ignores
  // the bound and forwards to WriteItems.
  virtual absl::StatusOr<std::vector<int64_t>> WriteItemsBounded(std::string_view stream,
                                                                 std::vector<ItemToWrite>& items,
                                                                 size_t max_retained_bytes);

  // Stored items with key >= from_key in key order, at most `max_items` and stopping after the
  // item that reaches `max_bytes` (always at least one item when any is stored). NOT_FOUND when
  // the stream is unknown.
  virtual absl::StatusOr<std::vector<StreamItem>> ReadItems(std::string_view stream,
                                                            int64_t from_key, size_t max_items,
                                                            size_t max_bytes) = 0;
  // ReadItems without copies: calls `visit(key, value bytes)` for the same items, in key order,
  // while the stream is locked for reading (so `visit` must not call the store, and the bytes are
  // valid only during the call). Returns the number of items visited. The default forwards to
  // ReadItems; a backend overrides it to hand out its stored bytes.
  virtual absl::StatusOr<size_t> VisitItems(
      std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
      absl::FunctionRef<void(int64_t key, std::string_view value)> visit);
  // The largest stored key, nullopt when no item is stored.
  virtual absl::StatusOr<std::optional<int64_t>> LastKey(std::string_view stream) = 0;
  // The stream's progress; durable with the stream. NOT_FOUND when the stream is unknown.
  virtual absl::StatusOr<StreamProgress> GetProgress(std::string_view stream) = 0;

  // Marks the stream completed, with an error or not. FAILED_PRECONDITION when already completed.
  virtual absl::Status CompleteStream(std::string_view stream,
                                      std::optional<std::string> error) = 0;
  // Removes the stream, its items and its listeners. Returns false when absent.
  virtual absl::StatusOr<bool> DeleteStream(std::string_view stream) = 0;

  // Creates listener `name` at `position` unless it exists; returns the listener as stored.
  // Transient listeners are not durable. NOT_FOUND when the stream is unknown.
  virtual absl::StatusOr<ListenerRecord> RegisterListener(std::string_view stream,
                                                          std::string_view name, int64_t position,
                                                          bool transient) = 0;
  // Sets the position of listener `name`, creating a durable listener when absent. In an
  // ephemeral stream, items below the lowest position of all listeners are deleted (the trigger
  // position protects nothing; kPositionNotStarted protects everything).
  virtual absl::Status MoveListener(std::string_view stream, std::string_view name,
                                    int64_t position) = 0;
  // Removes a listener. Returns false when absent. When the last listener of an ephemeral stream
  // goes, every stored item is deleted.
  virtual absl::StatusOr<bool> DeleteListener(std::string_view stream, std::string_view name) = 0;
  virtual absl::StatusOr<std::vector<ListenerRecord>> ListListeners(std::string_view stream) = 0;

  // Streams whose ID starts with `prefix`, in ID order, at most `limit`.
  virtual absl::StatusOr<std::vector<StreamSummary>> ListStreams(std::string_view prefix,
                                                                 size_t limit) = 0;
};

// ---------------------------------------------------------------------------------------------
// States

// One dictionary operation; see docs/protocol.md for the truth table.
struct DictionaryOperation {
  std::string key;  // Any bytes; must not be null.
  bool get_existing_value = false;
  bool set_new_value = false;
  std::string new_value;  // Null (see IsNullValue) means remove.
  bool compare_existing_value = false;
  std::string expected_existing_value;  // Null means "absent".
};

struct DictionaryOutcome {
  bool operation_successful = false;
  std::optional<std::string> previous_value;  // Set when asked for and present.
};

// One list operation, as in StatesListOperateRequest.
struct ListOperation {
  enum class Location { kAtFront, kAtBack, kIndex, kIndexBackwards, kRawIndex, kRawIndexBackwards };
  Location location = Location::kAtBack;
  int64_t position = 0;  // The index or raw index, for the located kinds.
  uint64_t values_count = 0;
  bool get_values = false;
  bool remove_values = false;
  std::vector<std::string> insert_values;
};

struct ListEntry {
  uint32_t index = 0;
  int64_t raw_index = 0;
  std::string value;
};

// A dictionary or a list, as ListStates reports it.
struct StateSummary {
  enum class Kind { kDictionary, kList };
  std::string name;
  Kind kind = Kind::kDictionary;
  uint64_t count = 0;  // Entries of a dictionary, items of a list.
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Dictionaries and lists exist once created or first written; Create is idempotent.
  virtual absl::Status CreateDictionary(std::string_view dictionary) = 0;
  virtual absl::StatusOr<DictionaryOutcome> OperateDictionary(std::string_view dictionary,
                                                              const DictionaryOperation& op) = 0;
  // Entries in key-byte order. An unknown dictionary is empty.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListDictionary(
      std::string_view dictionary) = 0;
  virtual absl::StatusOr<uint64_t> CountDictionary(std::string_view dictionary) = 0;
  // keep_cache: remove every entry but keep the dictionary; otherwise remove it altogether.
  virtual absl::Status DeleteDictionary(std::string_view dictionary, bool keep_cache) = 0;

  virtual absl::Status CreateList(std::string_view list) = 0;
  // Returns the values collected by get_values. INVALID_ARGUMENT for a bad location.
  virtual absl::StatusOr<std::vector<std::string>> OperateList(std::string_view list,
                                                               const ListOperation& op) = 0;
  // The first entry whose value equals `value` byte for byte; nullopt when none.
  virtual absl::StatusOr<std::optional<ListEntry>> LocateInList(std::string_view list,
                                                                std::string_view value) = 0;
  // Entries in index order.
  virtual absl::StatusOr<std::vector<ListEntry>> ListList(std::string_view list) = 0;
  virtual absl::StatusOr<uint64_t> CountList(std::string_view list) = 0;
  virtual absl::Status DeleteList(std::string_view list, bool keep_cache) = 0;

  // The dictionaries, then the lists, whose name starts with `prefix`, each kind in name order,
  // at most `limit` in all. A dictionary or list is listed once it exists (created, or written
  // to) until it is deleted; one emptied with keep_cache is listed, empty.
  virtual absl::StatusOr<std::vector<StateSummary>> ListStates(std::string_view prefix,
                                                               size_t limit) = 0;
};

// ---------------------------------------------------------------------------------------------
// Descriptors

class DescriptorStore {
 public:
  virtual ~DescriptorStore() = default;
  // Stores the serialized FabricProtobufDescriptorsRegisterRequest under type_url (replacing).
  virtual absl::Status RegisterDescriptor(std::string_view type_url, std::string bytes) = 0;
  virtual absl::StatusOr<std::optional<std::string>> GetDescriptor(std::string_view type_url) = 0;
};

// ---------------------------------------------------------------------------------------------
// A consumer's step: one dictionary and one stream listener, changed together

struct StepRequest {
  std::string stream;
  std::string listener;  // A listener name; must not be empty.
  // The listener's new position: the key of the last item the step accounts for.
  int64_t reached_key = 0;
  // Set: the step applies only when the listener is at this position now (kPositionNotStarted
  // when it does not exist).
  std::optional<int64_t> expected_position;
  std::string dictionary;  // May be empty only when `operations` is.
  std::vector<DictionaryOperation> operations;
};

struct StepResult {
  bool applied = false;
  // The listener exists and is at or past reached_key: the step was taken before.
  bool already_taken = false;
  // expected_position was set and the listener is elsewhere.
  bool position_mismatch = false;
  // The listener's position after the call (kPositionNotStarted when it does not exist).
  int64_t position = kPositionNotStarted;
  // One per operation, in order, as OperateDictionary answers it given the operations before
  // it; reported also when the step does not apply (then nothing was written).
  std::vector<DictionaryOutcome> outcomes;
};

// What every backend's Store::Step refuses first, with the same messages: INVALID_ARGUMENT for
// an empty stream or listener, operations without a dictionary, a null operation key.
absl::Status ValidateStepRequest(const StepRequest& request);

// ---------------------------------------------------------------------------------------------

// Where an object's data lives in a sharded backend.
struct DataPlacement {
  uint32_t slot = 0;  // The Redis hash slot (0..16383).
  std::string node;   // "host:port" of the master serving the slot; empty when unknown.
};

// A backend: the four stores, sharing one durability and notification path.
class Store {
 public:
  virtual ~Store() = default;

  virtual ExecutionStore& executions() = 0;
  virtual StreamStore& streams() = 0;
  virtual StateStore& states() = 0;
  virtual DescriptorStore& descriptors() = 0;

  // A consumer's step, atomic and (in a durable backend) one durable commit: unless the
  // listener already is at or past reached_key (already_taken; a listener that does not exist
  // is not started, below every key), or is not at expected_position (position_mismatch), or an
  // operation's compare fails, every operation applies in order, with the semantics of
  // OperateDictionary, and the listener moves to reached_key, as MoveListener does (creating a
  // durable listener when absent, collecting what an ephemeral stream no longer needs).
  // Otherwise nothing changes. NOT_FOUND unknown stream; INVALID_ARGUMENT empty stream or
  // listener, operations without a dictionary, a null operation key.
  virtual absl::StatusOr<StepResult> Step(const StepRequest& request) = 0;

  // An execution's end together with the stream it produces (the stream of the same ID, if
  // any): ExecutionStore::CompleteExecution, then, when that succeeded, StreamStore::
  // CompleteStream of the same ID with the same error. Answers the execution's completion;
  // `stream` gets the stream's answer (NOT_FOUND and FAILED_PRECONDITION are the usual ones:
  // no such stream, or completed by its writer). A backend may make both one write.
  virtual absl::Status CompleteExecutionAndStream(std::string_view execution,
                                                  std::vector<std::string> results,
                                                  std::optional<std::string> error,
                                                  absl::Status& stream) {
    absl::Status status = executions().CompleteExecution(execution, std::move(results), error);
    stream = status.ok() ? streams().CompleteStream(execution, std::move(error)) : status;
    return status;
  }

  // Where an instance's executions and state dictionary and list live, for introspection:
  // nullopt on a backend with one place for everything.
  virtual absl::StatusOr<std::optional<DataPlacement>> PlacementOfInstance(
      std::string_view instance) {
    (void)instance;
    return std::nullopt;
  }

  // Sets who hears about committed changes. REQUIRES: called before any mutating call;
  // `observer` outlives the store's use.
  virtual void SetObserver(ChangeObserver* observer) = 0;

  // What a call may wait for, declared by each backend so that the Fabric can keep waiting
  // calls off gRPC's few callback threads without knowing the backends by name.
  // A write waits for an fsync or a round trip to a server: the Fabric runs writes on its write
  // pool (fabric/write_pool.h).
  virtual bool WritesWait() const = 0;
  // A read is a round trip to a server: the Fabric delivers change hints on the hub's own
  // thread, so that a writer does not wait for every local listener to re-read.
  virtual bool ReadsWait() const = 0;
};

}  // namespace perper::storage
