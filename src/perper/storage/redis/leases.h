// SPDX-License-Identifier: MIT
// Process leases of the redis backend: how Fabric processes sharing one Redis learn that another
// one is gone, so that what it held (reservations, transient listeners) can be taken over.
//
// Every process keeps `{p:<process id>}:lease` alive (SET PX, renewed every third of the lease)
// and is in `{perper}:processes` while it runs. A process whose lease key has expired is dead: its
// holdings may be taken by anyone. A process that closes cleanly deletes its lease at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "perper/storage/change.h"
#include "perper/storage/redis/client_pool.h"

namespace perper::storage::redis {

// Runs `work` every `period` until `*stopping` is set (waking early only for that), on the
// calling thread. `mu` guards `*stopping`; it is not held while `work` runs. The loops of the
// lease keeper, the death watcher and the transient-listener sweeper.
void EveryPeriodUntilStopped(absl::Mutex& mu, const bool* stopping, absl::Duration period,
                             absl::FunctionRef<void()> work);

// `{p:<process id>}:lease`.
std::string LeaseKey(std::string_view process_id);
// Whether the process `process_id` holds a live lease (one EXISTS).
absl::StatusOr<bool> LeaseAlive(ClientPool& pool, std::string_view process_id);

// Which processes were lately seen holding a lease, so that a reservation refused because
// another live process holds it costs no EXISTS of that process's lease each time. A process
// seen alive with `PTTL` p is taken for alive for min(p, max_age): never past its lease as it
// stood (plus the round trip), and at most max_age after a clean close deleted it (a clean
// close also releases what its calls held, so nothing waits on that). Being dead is not
// remembered: a dead process is asked about each time, which is rare (its holdings go).
//
// Thread safety: every method is safe to call concurrently.
class LiveLeases {
 public:
  // `pool` must outlive the cache.
  LiveLeases(ClientPool* pool, std::chrono::milliseconds max_age);
  // LeaseAlive, answered from what was seen while that is fresh.
  absl::StatusOr<bool> Alive(std::string_view process_id);
  // `process_id` was found dead elsewhere: ask next time.
  void Dead(std::string_view process_id);
  // Round trips Alive made (for tests).
  int64_t lookups() const;

 private:
  using Clock = std::chrono::steady_clock;
  ClientPool* const pool_;
  const std::chrono::milliseconds max_age_;
  mutable absl::Mutex mu_;
  std::map<std::string, Clock::time_point, std::less<>> alive_until_ ABSL_GUARDED_BY(mu_);
  int64_t lookups_ ABSL_GUARDED_BY(mu_) = 0;
};

// This process's lease: set by Start, renewed by a thread every lease/3, deleted by a clean
// Stop. Owned by the executions part of a RedisStore. Thread safety: Start is called once, then
// Stop (a second Stop does nothing); the renewal thread shares only the guarded stop flag.
class ProcessLease {
 public:
  // `pool` must outlive the lease.
  ProcessLease(ClientPool* pool, std::chrono::milliseconds lease);
  ~ProcessLease();  // Stop(/*release=*/true) unless stopped already.
  ProcessLease(const ProcessLease&) = delete;
  ProcessLease& operator=(const ProcessLease&) = delete;

  // Sets the lease and registers the process; then renews it until Stop. A failure to set it
  // fails the open: a process without a lease would lose what it holds to the first asker.
  absl::Status Start();
  // Stops renewing. `release`: delete the lease and the registration now, so other processes
  // take over at once (a clean close); otherwise the lease runs out by itself, as a killed
  // process's does.
  void Stop(bool release);

  std::chrono::milliseconds lease() const { return lease_; }

 private:
  absl::Status Renew();
  void Run();

  ClientPool* const pool_;
  const std::chrono::milliseconds lease_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// A reservation held by another process that some caller here was refused, with the execution's
// routing fields for the change that announces its release.
struct ForeignHold {
  std::string execution;
  std::string workgroup;
  std::string agent;
  std::string instance;
  std::string delegate;
};

// Watches the processes holding reservations this process was refused: every `interval` it
// checks their leases and, for each one that died, reports kReservationReleased for each of its
// watched holds (a waiting caller then asks again and takes the reservation over). Entries go
// when the reservation is released, completed or deleted (Forget), and the table is bounded:
// beyond `capacity` new holds are not watched (their callers still hear of a release made by
// the holder itself, through the change bus).
//
// Owned by the executions part of a RedisStore. Thread safety: every method is safe to call
// concurrently; `report` is called from the watcher's thread without any lock held.
class ForeignHolderWatcher {
 public:
  using Report = std::function<void(const Change&)>;

  // `live_leases`, when given, is told of each death found, so that what it remembers does not
  // contradict a release just reported.
  ForeignHolderWatcher(ClientPool* pool, Report report,
                       std::chrono::milliseconds interval = std::chrono::milliseconds(250),
                       size_t capacity = 100000, LiveLeases* live_leases = nullptr);
  ~ForeignHolderWatcher();  // Stops the thread.
  ForeignHolderWatcher(const ForeignHolderWatcher&) = delete;
  ForeignHolderWatcher& operator=(const ForeignHolderWatcher&) = delete;

  void Start();
  void Stop();

  // Watches `hold`, held by process `process_id` (replacing an earlier entry of the same
  // execution and workgroup).
  void Watch(std::string_view process_id, ForeignHold hold);
  // Drops the entry of (execution, workgroup), or every entry of `execution`.
  void Forget(std::string_view execution, std::string_view workgroup);
  void Forget(std::string_view execution);
  size_t size() const;

  // One round of checks (what the thread does every interval); for tests and the thread.
  void CheckOnce();

 private:
  struct Entry {
    std::string process_id;
    ForeignHold hold;
  };

  void Run();

  ClientPool* const pool_;
  const Report report_;
  const std::chrono::milliseconds interval_;
  const size_t capacity_;
  LiveLeases* const live_leases_;
  mutable absl::Mutex mu_;
  // (execution, workgroup) → entry; ordered so that all workgroups of an execution are adjacent.
  std::map<std::pair<std::string, std::string>, Entry, std::less<>> entries_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Tells this process when another Fabric process of the deployment has died, so that its
// waiting calls look again. A process killed after acknowledging a write and before publishing
// its change on the bus leaves a change nobody heard (a creation no listener saw, a completion
// a result waiter never learns of); the data is in Redis, so a resync finds it.
//
// Every `interval` it reads `{perper}:processes` and each other member's lease. A member without
// a lease is reported once, through `report` as a kResync, unless it was dead already at this
// process's first look (at Start: every call here began after it died). A member dead for
// longer than `forget_after` leaves the set, so it does not grow with every killed process;
// every live process has looked at it long before. Judges nobody while this process's own
// lease is missing (it may be the one cut off).
//
// Owned by the executions part of a RedisStore. Thread safety: Start, Stop and CheckOnce may be
// called from any thread; `report` is called without any lock held, from the caller of
// CheckOnce (the watcher's thread).
class ProcessDeathWatcher {
 public:
  using Report = std::function<void(const Change&)>;

  // `live_leases`, when given, answers for leases seen alive lately (see LiveLeases).
  ProcessDeathWatcher(ClientPool* pool, Report report, std::chrono::milliseconds interval,
                      std::chrono::milliseconds forget_after, LiveLeases* live_leases = nullptr);
  ~ProcessDeathWatcher();  // Stops the thread.
  ProcessDeathWatcher(const ProcessDeathWatcher&) = delete;
  ProcessDeathWatcher& operator=(const ProcessDeathWatcher&) = delete;

  // Takes the first look, then looks every interval.
  void Start();
  void Stop();

  // One look (what the thread does every interval): the processes found dead since the last.
  absl::StatusOr<std::vector<std::string>> CheckOnce();
  // Deaths reported so far (for tests).
  int64_t reported() const;

 private:
  using Clock = std::chrono::steady_clock;
  void Run();

  ClientPool* const pool_;
  const Report report_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds forget_after_;
  LiveLeases* const live_leases_;
  absl::Mutex check_mu_;  // One look at a time.
  bool looked_ ABSL_GUARDED_BY(check_mu_) = false;
  // Members seen without a lease, and since when.
  std::map<std::string, Clock::time_point, std::less<>> dead_since_ ABSL_GUARDED_BY(check_mu_);
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t reported_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace perper::storage::redis
