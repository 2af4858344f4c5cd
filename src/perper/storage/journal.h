// SPDX-License-Identifier: MIT
// The durable log beneath the engine backends. The engine keeps its working state in memory and
// writes every change to a Journal before it applies and acknowledges it; at start-up it reads
// the Journal back. The `memory` backend has no Journal; the `rocksdb` backend's Journal is a
// RocksDB database with synchronous (fsync'd, group-committed) writes.
//
// Keys are byte strings built with perper/storage/engine/keys.h; values are serialized records
// (perper/storage/records.proto) or raw Any bytes.
//
// Thread safety: Commit and Scan may be called concurrently from any thread.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace perper::storage {

// Writes that become durable together, in order.
class JournalBatch {
 public:
  enum class OpKind { kPut, kDelete, kDeleteRange };
  struct Op {
    OpKind kind;
    std::string key;    // kDeleteRange: begin (inclusive).
    std::string value;  // kPut: the value; kDeleteRange: end (exclusive).
  };

  void Put(std::string key, std::string value) {
    ops_.push_back({OpKind::kPut, std::move(key), std::move(value)});
  }
  void Delete(std::string key) { ops_.push_back({OpKind::kDelete, std::move(key), {}}); }
  void DeleteRange(std::string begin, std::string end) {
    ops_.push_back({OpKind::kDeleteRange, std::move(begin), std::move(end)});
  }
  bool empty() const { return ops_.empty(); }
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

class Journal {
 public:
  virtual ~Journal() = default;
  // Makes every write of `batch` durable atomically. On error nothing was written.
  virtual absl::Status Commit(const JournalBatch& batch) = 0;
  // Calls `visit` for every stored key starting with `prefix`, in byte order of keys.
  virtual absl::Status Scan(
      std::string_view prefix,
      absl::FunctionRef<void(std::string_view key, std::string_view value)> visit) = 0;
  // Commit waits for the disk (an fsync) before it returns.
  virtual bool CommitWaits() const = 0;
};

// Commits `batch` when `journal` is set (durable backends); a no-op for the memory backend.
inline absl::Status CommitIfDurable(Journal* journal, const JournalBatch& batch) {
  if (journal == nullptr || batch.empty()) return absl::OkStatus();
  return journal->Commit(batch);
}

}  // namespace perper::storage
