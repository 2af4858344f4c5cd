// SPDX-License-Identifier: MIT
// The streams part of the engine backends: a registry of streams, each with its items in key
// order, its listeners and its completion, journaled when a Journal is set:
//
//   s/<stream>                       StreamData (options, completion, last key, GC floor,
//                                    items collected)
//   i/<len><stream><key>             item value (Any bytes)
//   l/<len><stream><listener name>   ListenerData (durable listeners only)
//
// Locking: the registry (ID -> stream) has its own mutex, taken shared for lookups and
// exclusively only to add or drop an entry; every stream has its own mutex, under which its
// journal commit and its in-memory change happen. Nothing else is global, so writers of
// different streams never wait for each other. Lock order: registry before stream, and a stream
// lock is never held while the registry lock is awaited.
//
// Keys. An auto key is max(NowTicks(), last_key + 1), where last_key is the largest key ever
// written to the stream (kept across garbage collection and restarts), so auto keys strictly
// increase per stream. Writing an explicit key again is a replay when it holds the same bytes
// (answered with its key, nothing stored, nobody woken; in a completed stream too), and
// ALREADY_EXISTS when it holds different ones. A key at or below the stream's GC floor (the
// largest key garbage collection ever removed: every listener passed it) is a replay too: what
// it held is gone, so a replay cannot be told from a conflict there.
//
// Ephemeral garbage collection runs when a listener of an ephemeral stream moves or is deleted,
// never on a write: an item is kept until every listener has passed it. It deletes every item
// whose key is below the lowest listener position; the item at a listener's position is kept
// (at-least-once resume re-delivers it). A listener at kPositionNotStarted keeps everything; one
// at kPositionTrigger protects nothing, so a stream whose only listeners are triggers loses every
// item at the next collection, as does a stream whose last listener is deleted. Deletions are
// journaled as one DeleteRange over the item keys, in the same batch as the listener change.
// Persistent streams are never collected. Transient listeners (those of a live call) take part
// in collection but are never journaled.
//
// Progress: the number of items ever written is the items stored plus the items collected; the
// collected count is journaled in the stream record by the collection that changes it (in its
// batch), so a write journals nothing extra and the count survives restarts. The largest key
// ever written is journaled in the stream record by the write that raises it.
//
// Retention bound: WriteItemsBounded refuses a write that would make an ephemeral stream hold
// more than a limit (RetainedBytes of its items), so a stalled listener cannot make the Fabric
// keep everything; the service holds such a write until a listener moves. Bytes freed by
// collection and deletion are reported to NoteBulkFree, so that glibc returns them.
//
// Thread safety: every method is safe to call concurrently; changes are reported to the
// Notifier after every lock is released.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class StreamsEngine final : public StreamStore {
 public:
  // `journal` may be null (memory backend); both pointers must outlive the engine.
  StreamsEngine(Journal* journal, Notifier* notifier);

  // Reads every stream, item and durable listener back from the journal. Call once, before use.
  absl::Status Load();

  absl::StatusOr<bool> CreateStream(StreamRecord record) override;
  absl::StatusOr<StreamRecord> GetStream(std::string_view stream) override;
  absl::StatusOr<std::vector<int64_t>> WriteItems(std::string_view stream,
                                                  std::vector<ItemToWrite> items) override;
  absl::StatusOr<std::vector<int64_t>> WriteItemsBounded(std::string_view stream,
                                                         std::vector<ItemToWrite>& items,
                                                         size_t max_retained_bytes) override;
  absl::StatusOr<std::vector<StreamItem>> ReadItems(std::string_view stream, int64_t from_key,
                                                    size_t max_items, size_t max_bytes) override;
  absl::StatusOr<size_t> VisitItems(
      std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
      absl::FunctionRef<void(int64_t key, std::string_view value)> visit) override;
  absl::StatusOr<std::optional<int64_t>> LastKey(std::string_view stream) override;
  absl::StatusOr<StreamProgress> GetProgress(std::string_view stream) override;
  absl::Status CompleteStream(std::string_view stream, std::optional<std::string> error) override;
  absl::StatusOr<bool> DeleteStream(std::string_view stream) override;
  absl::StatusOr<ListenerRecord> RegisterListener(std::string_view stream, std::string_view name,
                                                  int64_t position, bool transient) override;
  absl::Status MoveListener(std::string_view stream, std::string_view name,
                            int64_t position) override;
  absl::StatusOr<bool> DeleteListener(std::string_view stream, std::string_view name) override;
  absl::StatusOr<std::vector<ListenerRecord>> ListListeners(std::string_view stream) override;
  absl::StatusOr<std::vector<StreamSummary>> ListStreams(std::string_view prefix,
                                                         size_t limit) override;

  // The listener half of a step (Store::Step, engine_store.cc). Under the stream's lock: finds
  // whether listener `name` may move to `reached_key` (it is not at or past it already, and is
  // at `expected_position` when that is set; an absent listener is at kPositionNotStarted),
  // puts the move and the collection it causes into a batch, and calls
  // `body(allowed, batch)`, which settles the other half of the step and, when the step
  // applies, commits the batch and returns true. Then the move is applied in memory. `body`
  // must not call this engine.
  struct ListenerStep {
    bool applied = false;
    bool already_taken = false;
    bool position_mismatch = false;
    int64_t position = kPositionNotStarted;  // After the call.
  };
  absl::StatusOr<ListenerStep> StepListener(
      std::string_view stream, std::string_view name, int64_t reached_key,
      std::optional<int64_t> expected_position,
      absl::FunctionRef<absl::StatusOr<bool>(bool allowed, JournalBatch& batch)> body);

 private:
  struct Listener {
    int64_t position = kPositionNotStarted;
    bool transient = false;
  };

  struct StreamState {
    absl::Mutex mu;
    // Set once the stream is deleted (or its creation failed to commit): a holder of a stale
    // pointer then reports NOT_FOUND.
    bool deleted ABSL_GUARDED_BY(mu) = false;
    StreamRecord record ABSL_GUARDED_BY(mu);
    std::optional<int64_t> last_key ABSL_GUARDED_BY(mu);  // Largest key ever written.
    std::optional<int64_t> gc_floor ABSL_GUARDED_BY(mu);  // Largest key ever collected.
    uint64_t collected_count ABSL_GUARDED_BY(mu) = 0;     // Items collection ever removed.
    absl::btree_map<int64_t, std::string> items ABSL_GUARDED_BY(mu);
    size_t retained_bytes ABSL_GUARDED_BY(mu) = 0;  // RetainedBytes of every stored item.
    absl::btree_map<std::string, Listener> listeners ABSL_GUARDED_BY(mu);
  };

  // The live stream `stream`, or nullptr.
  std::shared_ptr<StreamState> Find(std::string_view stream);
  // What a listener change does to the items of an ephemeral stream.
  struct Collection {
    bool any = false;       // Something is deleted.
    int64_t keep_from = 0;  // Every stored key below this goes (when !all).
    bool all = false;       // Every stored item goes.
    int64_t new_floor = 0;  // The GC floor afterwards.
    uint64_t count = 0;     // How many items go.
  };
  // Plans the collection that follows setting listener `name` to `position` (nullopt: deleting
  // it) and adds its journal writes to `batch`.
  Collection PlanCollection(std::string_view stream, StreamState& data, std::string_view name,
                            std::optional<int64_t> position, JournalBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(data.mu);
  // Applies a planned collection once its batch is committed; returns the bytes it freed (to
  // report to NoteBulkFree once the lock is released).
  static size_t ApplyCollection(StreamState& data, const Collection& collection)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(data.mu);
  // RESOURCE_EXHAUSTED for a write of `bytes` that would pass `limit`, naming what holds the
  // retained items back.
  static absl::Status RetentionFull(std::string_view stream, const StreamState& data, size_t bytes,
                                    size_t limit) ABSL_SHARED_LOCKS_REQUIRED(data.mu);
  void NotifyChange(Change::Kind kind, std::string_view stream, int64_t key = 0) const;

  Journal* const journal_;
  Notifier* const notifier_;

  absl::Mutex registry_mu_;
  absl::btree_map<std::string, std::shared_ptr<StreamState>> streams_ ABSL_GUARDED_BY(registry_mu_);
};

}  // namespace perper::storage
