// SPDX-License-Identifier: MIT
// The states part of the engine backends: state dictionaries and lists, kept in memory and, when
// a Journal is set, journaled under the keys of perper/storage/engine/keys.h:
//
//   D/<dictionary>                      marker: the dictionary exists
//   d/<len><dictionary><key Any bytes>  the value of one entry (Any bytes)
//   L/<list>                            ListData: start_index (inclusive), end_index (exclusive)
//   I/<len><list><raw index>            the value of one list item (Any bytes)
//
// A registry maps names to objects; it is split into shards, each with its own mutex held only
// to find, create or drop an object. Every dictionary and every list has its own mutex, held for
// the whole of one operation (journal commit included), so each operation is atomic and
// operations on different objects never wait for each other. Lock order: object, then registry
// shard (a shard lock is held only to look up or drop an entry, never while waiting for an
// object). A step (StepDictionary) is called under a stream's lock (StreamsEngine), so across
// engines the order is: stream, then dictionary, then registry shard; no code of this engine
// ever waits for a stream's lock, so the order cannot be inverted. A deletion marks the object
// `removed` under its lock and then drops it from the registry; an operation that found it before
// sees the mark under the object's lock and looks the name up again. Every holder keeps the object
// alive by a shared_ptr declared before its lock, so an object is never freed while its mutex is
// held. WithLive is that find, lock and retry, once for every operation.
//
// Dictionaries are ordered by key bytes. A list is a deque whose items have raw indices
// start_index .. end_index-1; logical index i is raw index start_index + i. Which raw indices an
// operation keeps stable is described at OperateList in the .cc and in docs/protocol/states.md.
//
// State changes are not reported to the Notifier: no protocol call waits for them.
//
// Thread safety: every method is safe to call concurrently from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/common/status_macros.h"
#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class StatesEngine final : public StateStore {
 public:
  // `journal` may be null (memory backend); both pointers must outlive the engine.
  StatesEngine(Journal* journal, Notifier* notifier) : journal_(journal), notifier_(notifier) {}
  StatesEngine(const StatesEngine&) = delete;
  StatesEngine& operator=(const StatesEngine&) = delete;

  // Reads every dictionary and list back from the journal. Call once, before any other method.
  absl::Status Load();

  absl::Status CreateDictionary(std::string_view dictionary) override;
  absl::StatusOr<DictionaryOutcome> OperateDictionary(std::string_view dictionary,
                                                      const DictionaryOperation& op) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListDictionary(
      std::string_view dictionary) override;
  absl::StatusOr<uint64_t> CountDictionary(std::string_view dictionary) override;
  absl::Status DeleteDictionary(std::string_view dictionary, bool keep_cache) override;

  absl::Status CreateList(std::string_view list) override;
  absl::StatusOr<std::vector<std::string>> OperateList(std::string_view list,
                                                       const ListOperation& op) override;
  absl::StatusOr<std::optional<ListEntry>> LocateInList(std::string_view list,
                                                        std::string_view value) override;
  absl::StatusOr<std::vector<ListEntry>> ListList(std::string_view list) override;
  absl::StatusOr<uint64_t> CountList(std::string_view list) override;
  absl::Status DeleteList(std::string_view list, bool keep_cache) override;
  absl::StatusOr<std::vector<StateSummary>> ListStates(std::string_view prefix,
                                                       size_t limit) override;

  // The dictionary half of a step (Store::Step, engine_store.cc): evaluates `operations` in
  // order against dictionary `name`, each seeing the effect of those before it, and reports
  // each in `outcomes` as OperateDictionary would. When `allowed` and no compare failed, adds
  // their writes to `batch`, commits the batch (with what the caller put in it) and applies
  // them, returning true; otherwise commits nothing and returns false. Without operations the
  // dictionary is not touched and the batch is committed alone when `allowed`.
  // REQUIRES: `name` non-empty when there are operations, and no operation key null. Runs under
  // the caller's stream lock and takes the dictionary's lock inside it (see the lock order
  // above).
  absl::StatusOr<bool> StepDictionary(std::string_view name,
                                      const std::vector<DictionaryOperation>& operations,
                                      bool allowed, JournalBatch& batch,
                                      std::vector<DictionaryOutcome>& outcomes);

 private:
  struct Dictionary {
    absl::Mutex mu;
    bool removed ABSL_GUARDED_BY(mu) = false;
    // Whether the object's D/ or L/ record has been committed: the first write of an object
    // created implicitly adds it to its batch.
    bool journaled ABSL_GUARDED_BY(mu) = false;
    absl::btree_map<std::string, std::string> entries ABSL_GUARDED_BY(mu);
  };

  struct List {
    absl::Mutex mu;
    bool removed ABSL_GUARDED_BY(mu) = false;
    bool journaled ABSL_GUARDED_BY(mu) = false;
    int64_t start ABSL_GUARDED_BY(mu) = 0;  // Raw index of items.front().
    std::deque<std::string> items ABSL_GUARDED_BY(mu);
  };

  template <typename T>
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<T>> objects ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kShards = 32;

  template <typename T>
  static Shard<T>& ShardFor(std::array<Shard<T>, kShards>& shards, std::string_view name);
  // Returns the object named `name`, creating it (in memory only) when `create` is set;
  // null when absent and not created.
  template <typename T>
  static std::shared_ptr<T> Find(std::array<Shard<T>, kShards>& shards, std::string_view name,
                                 bool create);

  // Runs `locked(object)` under the lock of the live object `name` and returns what it returns.
  // An object removed between the lookup and the lock (a concurrent deletion) is looked up
  // again. Without `create`, an absent object gives `absent()` instead. The object is kept alive
  // past the lock, so `locked` may Drop it. `locked` begins with `object.mu.AssertHeld()`: clang
  // cannot carry a lock held here into a lambda annotated with its parameter's mutex (it matches
  // the annotation against the lambda object), and the assertion both tells it and checks it.
  template <typename T, typename Absent, typename Locked>
  static auto WithLive(std::array<Shard<T>, kShards>& shards, std::string_view name, bool create,
                       Absent absent, Locked locked) -> decltype(absent()) {
    while (true) {
      std::shared_ptr<T> object = Find(shards, name, create);  // Outlives `lock`.
      if (object == nullptr) return absent();
      absl::MutexLock lock(&object->mu);
      if (object->removed) continue;
      return locked(*object);
    }
  }
  // The same, creating the object (in memory only) when absent.
  template <typename T, typename Locked>
  static auto WithLive(std::array<Shard<T>, kShards>& shards, std::string_view name, Locked locked)
      -> decltype(locked(std::declval<T&>())) {
    using Result = decltype(locked(std::declval<T&>()));
    return WithLive(
        shards, name, /*create=*/true,
        []() -> Result {
          PERPER_CHECK(false) << "Find with create returned null";
          std::abort();
        },
        locked);
  }

  // Every object whose name starts with `prefix`, in name order (taken shard by shard).
  template <typename T>
  static std::vector<std::pair<std::string, std::shared_ptr<T>>> WithPrefix(
      std::array<Shard<T>, kShards>& shards, std::string_view prefix);

  // Drops `name` from the registry if it still maps to `object`.
  // REQUIRES: the caller holds object->mu and keeps `object` alive past that lock.
  template <typename T>
  static void Drop(std::array<Shard<T>, kShards>& shards, std::string_view name, const T* object);

  absl::StatusOr<std::vector<std::string>> OperateListLocked(List& list, std::string_view name,
                                                             const ListOperation& op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(list.mu);

  Journal* const journal_;
  [[maybe_unused]] Notifier* const notifier_;  // States report no changes (see above).
  std::array<Shard<Dictionary>, kShards> dictionaries_;
  std::array<Shard<List>, kShards> lists_;
};

}  // namespace perper::storage
