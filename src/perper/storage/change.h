// SPDX-License-Identifier: MIT
// Changes a Store reports after committing them. They are hints that carry IDs (and, for
// executions, the routing fields): a subscriber reads what it needs back from the store, which
// keeps the path the same whether the change was made by this process or by another process
// sharing the store. The one payload is an optional shortcut: a backend whose reads are round
// trips may attach a completion's outcome for the subscribers of the process that made it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace perper::storage {

// What an execution finished with, as stored (serialized Anys, the error message).
struct ExecutionOutcome {
  std::vector<std::string> results;
  std::optional<std::string> error;
};

struct Change {
  enum class Kind {
    kExecutionCreated,
    kExecutionCompleted,
    kExecutionDeleted,
    kReservationReleased,  // `id` execution, `workgroup` set.
    kStreamCreated,
    kStreamItemsWritten,  // `key` is the largest key written.
    kStreamCompleted,
    kStreamDeleted,
    kListenerChanged,  // A listener of stream `id` was registered, moved or deleted.
    // Changes made by other processes sharing the store may have been missed (a lost or moved
    // subscription was just restored): whoever waits on a change reads its state again. Only
    // ever delivered locally, never stored nor passed between processes; no other field is set.
    kResync,
  };
  Kind kind;
  std::string id;  // The execution or stream.
  // Executions: where the execution belongs, so that listeners can be routed without a read.
  std::string agent;
  std::string instance;
  std::string delegate;
  std::string workgroup;
  int64_t key = 0;
  // kExecutionCompleted, when the completing process's backend attached it: the outcome, so
  // that a waiter on this process answers without reading the record back. Never passed
  // between processes; null means "read it".
  std::shared_ptr<const ExecutionOutcome> outcome;
};

// Receives committed changes. Called outside store locks, from the thread that made the change;
// implementations must be thread-safe and quick, and may call back into the store.
class ChangeObserver {
 public:
  virtual ~ChangeObserver() = default;
  virtual void OnChange(const Change& change) = 0;
};

}  // namespace perper::storage
