// SPDX-License-Identifier: MIT
// Changes a Store reports after committing them. They are hints that carry IDs (and, for
// executions, the routing fields), never payloads: a subscriber reads what it needs back from
// the store, which keeps the path the same whether the change was made by this process or by
// another process sharing the store.
#pragma once

#include <cstdint>
#include <string>

namespace perper::storage {

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
};

// Receives committed changes. Called outside store locks, from the thread that made the change;
// implementations must be thread-safe and quick, and may call back into the store.
class ChangeObserver {
 public:
  virtual ~ChangeObserver() = default;
  virtual void OnChange(const Change& change) = 0;
};

}  // namespace perper::storage
