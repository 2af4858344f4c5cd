// SPDX-License-Identifier: MIT
// A Journal in a RocksDB database on local disk. Commit writes one WriteBatch with sync=true:
// when it returns, the batch is in the fsync'd write-ahead log and survives kill -9 and power
// loss. Concurrent commits from several threads are grouped by RocksDB into one log write
// (group commit), so durable throughput grows with the number of writers in flight.
//
// Thread safety: thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include <rocksdb/db.h>

#include "perper/storage/journal.h"

namespace perper::storage {

class RocksDbJournal final : public Journal {
 public:
  // Opens (creating if needed) the database in `directory`. With `sync` false, writes reach the
  // OS before Commit returns (surviving kill -9, not power loss).
  static absl::StatusOr<std::unique_ptr<RocksDbJournal>> Open(const std::string& directory,
                                                              bool sync);
  ~RocksDbJournal() override;

  absl::Status Commit(const JournalBatch& batch) override;
  absl::Status Scan(
      std::string_view prefix,
      absl::FunctionRef<void(std::string_view key, std::string_view value)> visit) override;
  bool CommitWaits() const override { return sync_; }

 private:
  RocksDbJournal(std::unique_ptr<rocksdb::DB> db, bool sync) : db_(std::move(db)), sync_(sync) {}

  std::unique_ptr<rocksdb::DB> db_;
  bool sync_;
};

}  // namespace perper::storage
