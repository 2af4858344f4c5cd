// SPDX-License-Identifier: MIT
// The `memory` and `rocksdb` backends: the working state lives in memory, in one engine per
// store, with fine-grained locks (per execution shard, per stream, per dictionary or list).
// With a Journal (rocksdb), each change is committed to it before it is applied in memory and
// acknowledged; Open() reads the Journal back.
//
// A step (Step) spans two engines: the streams engine takes the stream's lock and decides the
// listener's half, then, inside it, the states engine takes the dictionary's lock, evaluates
// the operations and commits one batch holding both halves, and each engine applies its half in
// memory. Lock order: stream, then dictionary (then a states registry shard, briefly). Nothing
// takes a stream's lock while holding a dictionary's, so steps cannot deadlock with each other
// or with other operations.
//
// Thread safety: as Store.
#pragma once

#include <memory>

#include "absl/status/statusor.h"

#include "perper/storage/engine/descriptors_engine.h"
#include "perper/storage/engine/executions_engine.h"
#include "perper/storage/engine/notifier.h"
#include "perper/storage/engine/states_engine.h"
#include "perper/storage/engine/streams_engine.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class EngineStore final : public Store {
 public:
  // `journal` may be null (memory backend). Loads every record the journal holds.
  static absl::StatusOr<std::unique_ptr<EngineStore>> Open(std::unique_ptr<Journal> journal);

  ExecutionStore& executions() override { return executions_; }
  StreamStore& streams() override { return streams_; }
  StateStore& states() override { return states_; }
  DescriptorStore& descriptors() override { return descriptors_; }
  void SetObserver(ChangeObserver* observer) override { notifier_.SetObserver(observer); }
  absl::StatusOr<StepResult> Step(const StepRequest& request) override;
  // Memory: nothing waits. RocksDB: a write waits for its fsync when writes are synced.
  bool WritesWait() const override { return journal_ != nullptr && journal_->CommitWaits(); }
  bool ReadsWait() const override { return false; }

 private:
  explicit EngineStore(std::unique_ptr<Journal> journal);

  std::unique_ptr<Journal> journal_;
  Notifier notifier_;
  ExecutionsEngine executions_;
  StreamsEngine streams_;
  StatesEngine states_;
  DescriptorsEngine descriptors_;
};

}  // namespace perper::storage
