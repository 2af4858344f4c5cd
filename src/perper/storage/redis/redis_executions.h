// SPDX-License-Identifier: MIT
// The executions part of the redis backend: executions, their agent indexes and reservations
// with process leases, on a Redis (standalone or cluster) shared by several Fabric processes.
// Same semantics as ExecutionsEngine (perper/storage/engine/executions_engine.h); the keys are
// described in docs/cluster.md and perper/storage/redis/redis_keys.h.
//
// An execution lives under its tag T: `{i:<instance>}` (so an instance's executions share a
// slot with its state dictionary `<instance>-`), or `{e:<id>}` when it has no instance: the
// record `T:x:<id>` (a hash) and `T:xs` (the IDs under T by sequence). The agent's index
// `{a:<agent>}:seq|all|open|meta` orders and filters listings by agent; `{perper}:agents` names
// the agents. The locator `{e:<id>}:w` (born at `{e:<id>}:wt`) finds the agent and T from the
// ID alone; this process caches locators (bounded LRU) and, when a script finds no record under
// a cached tag, drops the entry and reads the locator once more.
//
// Reservations are stored in the record as `r:<workgroup>` → "<process id>/<holder>": a holder
// on another process whose lease has expired is taken over; one whose lease is alive is watched
// (ForeignHolderWatcher) so that its death is reported as kReservationReleased.
//
// Owned by RedisStore. Thread safety: every method is safe to call concurrently; changes are
// reported after the write, without any lock held.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/leases.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

// The reservations held by holders on this process, by execution and workgroup. Members of one
// workgroup on one process consider the same executions in the same order; this answers "held
// by another" for what a sibling holds without a round trip. An entry goes when its holder
// releases it, or its execution is completed or deleted, here or elsewhere (OnChange sees the
// changes of other processes before anyone acts on them); a resync, after which changes may
// have been missed, clears them all. An entry that outlives its reservation otherwise (the
// process was taken for dead) only says "held" of what another process holds.
//
// Thread-safe.
class LocalHolds final : public ChangeObserver {
 public:
  // The holder on this process of `execution` in `workgroup`, if any.
  std::optional<std::string> Holder(std::string_view execution, std::string_view workgroup);
  void Held(std::string_view execution, std::string_view workgroup, std::string_view holder);
  void Released(std::string_view execution, std::string_view workgroup, std::string_view holder);
  void Ended(std::string_view execution);
  void OnChange(const Change& change) override;

 private:
  // Past this many executions (entries left by changes missed), all are dropped.
  static constexpr size_t kMaxExecutions = 1000000;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, std::string>> holders_
      ABSL_GUARDED_BY(mu_);
};

class RedisExecutions final : public ExecutionStore {
 public:
  // `pool` and `notifier` must outlive this. This process's reservations outlive it by
  // pool.options().lease if it dies without releasing them.
  RedisExecutions(ClientPool& pool, RedisNotifier& notifier);
  ~RedisExecutions() override;
  RedisExecutions(const RedisExecutions&) = delete;
  RedisExecutions& operator=(const RedisExecutions&) = delete;

  // Sets this process's lease and starts the lease and watcher threads. REQUIRES: called once,
  // by RedisStore::Open, before any other method.
  absl::Status Start();

  absl::StatusOr<bool> CreateExecution(ExecutionRecord record) override;
  absl::StatusOr<ExecutionRecord> GetExecution(std::string_view execution) override;
  absl::Status CompleteExecution(std::string_view execution, std::vector<std::string> results,
                                 std::optional<std::string> error) override;
  // CompleteExecution and, in the same script, the completion of the stream of the same ID
  // whose metadata hash is `stream_meta` (RedisStreams::MetaKey), as
  // Store::CompleteExecutionAndStream. REQUIRES: a standalone server.
  absl::Status CompleteWithStream(std::string_view execution, std::vector<std::string> results,
                                  std::optional<std::string> error, const std::string& stream_meta,
                                  absl::Status& stream);
  absl::StatusOr<bool> DeleteExecution(std::string_view execution) override;
  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ExecutionFilter& filter,
                                                              size_t limit) override;
  absl::StatusOr<std::vector<std::string>> ListExecutionIds(const ExecutionFilter& filter,
                                                            size_t limit) override;
  absl::StatusOr<bool> TryReserve(std::string_view execution, std::string_view workgroup,
                                  std::string_view holder) override;
  absl::StatusOr<ReserveOutcome> ReadAndReserve(
      std::string_view execution, const ExecutionFilter& filter, std::string_view workgroup,
      std::string_view holder, absl::FunctionRef<void(const ExecutionRecord&)> visit) override;
  // One round trip per node for the whole batch (cached locators); an execution whose answer
  // needs more (no locator cached, a stale one, a holder whose process is gone) goes on alone.
  absl::StatusOr<std::vector<ReserveOutcome>> ReadAndReserveMany(
      const std::vector<std::string>& executions, const ExecutionFilter& filter,
      std::string_view workgroup, std::string_view holder,
      absl::FunctionRef<void(size_t index, const ExecutionRecord&)> visit) override;
  absl::Status ReleaseReservation(std::string_view execution, std::string_view workgroup,
                                  std::string_view holder) override;
  absl::StatusOr<std::vector<ReservationRecord>> ListReservations(std::string_view workgroup,
                                                                  size_t limit) override;

  // Where an instance's executions and state live: the hash slot of its tag and the address
  // ("host:port") of the node currently serving it. For introspection.
  absl::StatusOr<std::pair<int, std::string>> SlotOfInstance(std::string_view instance);

  // How many reservations held by other processes this process watches.
  size_t watched_holds() const { return watcher_.size(); }
  // How many times a reservation held by another process had that process's lease read.
  int64_t lease_lookups() const { return live_leases_.lookups(); }
  // How many other processes this one found gone without closing (each cost a resync).
  int64_t deaths_reported() const { return deaths_.reported(); }
  // How many reservation attempts were answered "held by another" from this process's own
  // holds, without a round trip.
  uint64_t sibling_answers() const { return sibling_answers_.load(std::memory_order_relaxed); }

  // Stops renewing this process's lease without deleting it, as if the process had been
  // killed: once it runs out, other processes take its reservations over. For tests.
  void AbandonLeaseForTesting();

 private:
  // Where an execution's record lives.
  struct Locator {
    std::string agent;
    std::string tag;  // `{i:<instance>}` or `{e:<id>}` (redis_keys.h).
    bool operator==(const Locator& other) const { return agent == other.agent && tag == other.tag; }
  };
  // An ID a listing found, with what reading its record needs.
  struct Listed {
    uint64_t sequence = 0;
    std::string execution;
    std::string tag;
  };

  // The locator of `execution`, from the cache when `use_cache`; nullopt when it has none.
  absl::StatusOr<std::optional<Locator>> Locate(std::string_view execution, bool use_cache);
  // The cached locator of `execution`, without asking Redis.
  std::optional<Locator> CachedLocator(std::string_view execution);
  void CacheLocator(std::string_view execution, const Locator& locator);
  void ForgetLocator(std::string_view execution);
  // Runs `attempt` on the execution's locator; when it answers "no record" (nullopt) under a
  // cached locator, reads the locator again and retries once. nullopt: no such execution.
  template <typename T>
  absl::StatusOr<std::optional<T>> WithRecord(
      std::string_view execution,
      const std::function<absl::StatusOr<std::optional<T>>(const Locator&)>& attempt);

  // The answer of kSequenceScript: the deployment's next creation sequence.
  static absl::StatusOr<uint64_t> ParseNextSequence(const RedisReply& reply);
  // CompleteExecution; with `stream_meta`, the stream too (CompleteWithStreamScript()), whose
  // answer goes to `stream_answer`.
  absl::Status Complete(std::string_view execution, std::vector<std::string> results,
                        std::optional<std::string> error, const std::string* stream_meta,
                        std::string* stream_answer);
  // The end of a creation whose record script answered `created`, created (1, then reported)
  // or identical (0; CheckCreated has refused the other answers): whether it was new.
  absl::StatusOr<bool> Created(ExecutionRecord record, const std::string& tag,
                               const RedisReply& created);
  absl::StatusOr<std::vector<std::string>> Agents();
  // Up to `limit` matches of kListScript over `keys` (its ARGV[1] and ARGV[3..9] in `args`), in
  // as many calls as the script's scanning budget needs.
  absl::StatusOr<std::vector<Listed>> Scan(const std::vector<std::string>& keys,
                                           std::vector<std::string> args, size_t limit);
  absl::StatusOr<std::vector<Listed>> ListAgent(std::string_view agent,
                                                const ExecutionFilter& filter, size_t limit);
  absl::StatusOr<std::vector<Listed>> ListMatching(const ExecutionFilter& filter, size_t limit);
  // Runs `script` once per tag among `listed`, with the record keys of that tag as KEYS, and
  // visits its answer's element for each listed execution.
  absl::Status ForEachRecord(
      const std::vector<Listed>& listed, std::string_view script,
      const std::vector<std::string_view>& args,
      absl::FunctionRef<absl::Status(size_t index, const RedisReply& answer)> visit);
  // The records of `listed` (nullopt for one that is gone), one round trip per tag.
  absl::StatusOr<std::vector<std::optional<ExecutionRecord>>> ReadRecords(
      const std::vector<Listed>& listed);
  void Report(const Change& change);
  // TryReserve, and ReadAndReserve when `filter` is set: then only a matching execution is
  // reserved, and `record` gets its HGETALL.
  absl::StatusOr<ReserveOutcome> Reserve(std::string_view execution, std::string_view workgroup,
                                         std::string_view holder, const ExecutionFilter* filter,
                                         RedisReply* record);

  // Keeps this process's caches true with the changes of other processes, before anyone here
  // acts on them: the holds of siblings (LocalHolds), and the locators of executions created
  // elsewhere (a creation's change names its agent and instance, from which its tag follows),
  // so that reserving or completing one here reads no locator.
  class CacheKeeper final : public ChangeObserver {
   public:
    explicit CacheKeeper(RedisExecutions* executions) : executions_(executions) {}
    void OnChange(const Change& change) override;

   private:
    RedisExecutions* const executions_;
  };

  ClientPool* const pool_;
  RedisNotifier* const notifier_;
  LocalHolds local_holds_;  // Before the watcher: its thread reports into it until stopped.
  CacheKeeper cache_keeper_{this};
  ProcessLease lease_;
  LiveLeases live_leases_;  // Whether a refusing holder's process lives; before the watcher.
  ForeignHolderWatcher watcher_;
  ProcessDeathWatcher deaths_;

  std::atomic<uint64_t> sibling_answers_{0};
  // Number this process's completions and standalone creations (their tokens).
  std::atomic<uint64_t> completions_{0};
  std::atomic<uint64_t> creations_{0};

  static constexpr size_t kLocatorCacheSize = 100000;
  absl::Mutex cache_mu_;
  // Most recently used first.
  std::list<std::pair<std::string, Locator>> lru_ ABSL_GUARDED_BY(cache_mu_);
  absl::flat_hash_map<std::string, std::list<std::pair<std::string, Locator>>::iterator> locators_
      ABSL_GUARDED_BY(cache_mu_);
  // Agents this process has added to `{perper}:agents`.
};

}  // namespace perper::storage::redis
