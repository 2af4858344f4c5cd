// SPDX-License-Identifier: MIT
#include "perper/storage/rocksdb/rocksdb_journal.h"

#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "perper/common/logging.h"

namespace perper::storage {
namespace {

absl::Status FromRocks(const rocksdb::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  std::string message = std::string(what) + ": " + status.ToString();
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (status.IsBusy() || status.IsTimedOut() || status.IsTryAgain()) {
    return absl::UnavailableError(message);
  }
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbJournal>> RocksDbJournal::Open(const std::string& directory,
                                                                     bool sync) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  // Memtables hold every journaled item again, beside the engines' copy, until flushed. The
  // default budget (512 MiB: 128 MiB memtables, flushed two at a time) let 256 MiB written
  // behind a stalled listener raise RSS by 310 MiB though the stream held 32 MiB; the journal
  // is only read at start-up, so small memtables cost little: 8 MiB each, flushed one by one.
  options.OptimizeLevelStyleCompaction(32 << 20);
  options.min_write_buffer_number_to_merge = 1;
  options.max_write_buffer_number = 4;
  // Several threads' commits share one log write; the pipeline lets the next group start its
  // log write while the previous group applies to the memtable.
  options.enable_pipelined_write = true;
  options.max_total_wal_size = 256 << 20;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(options, directory, &raw);
  if (status.IsIOError() && status.ToString().find("lock file") != std::string::npos) {
    // RocksDB says "While lock file: <dir>/LOCK: Resource temporarily unavailable".
    return absl::FailedPreconditionError(
        "the data directory " + directory + " is in use by another Fabric process (it holds " +
        directory + "/LOCK); stop that Fabric or choose another --data-dir");
  }
  if (!status.ok()) return FromRocks(status, "opening rocksdb at " + directory);
  PERPER_LOG_INFO(Logger::kStorage, "rocksdb opened at {} (sync={})", directory, sync);
  return std::unique_ptr<RocksDbJournal>(
      new RocksDbJournal(std::unique_ptr<rocksdb::DB>(raw), sync));
}

RocksDbJournal::~RocksDbJournal() {
  if (db_ != nullptr) {
    rocksdb::Status status = db_->Close();
    if (!status.ok()) {
      PERPER_LOG_ERROR(Logger::kStorage, "closing rocksdb: {}", status.ToString());
    }
  }
}

absl::Status RocksDbJournal::Commit(const JournalBatch& batch) {
  rocksdb::WriteBatch write_batch;
  for (const JournalBatch::Op& op : batch.ops()) {
    switch (op.kind) {
      case JournalBatch::OpKind::kPut:
        write_batch.Put(op.key, op.value);
        break;
      case JournalBatch::OpKind::kDelete:
        write_batch.Delete(op.key);
        break;
      case JournalBatch::OpKind::kDeleteRange:
        write_batch.DeleteRange(op.key, op.value);
        break;
    }
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = sync_;
  return FromRocks(db_->Write(write_options, &write_batch), "rocksdb write");
}

absl::Status RocksDbJournal::Scan(
    std::string_view prefix,
    absl::FunctionRef<void(std::string_view key, std::string_view value)> visit) {
  rocksdb::ReadOptions read_options;
  read_options.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options));
  rocksdb::Slice start(prefix.data(), prefix.size());
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    visit(std::string_view(it->key().data(), it->key().size()),
          std::string_view(it->value().data(), it->value().size()));
  }
  return FromRocks(it->status(), "rocksdb scan");
}

}  // namespace perper::storage
