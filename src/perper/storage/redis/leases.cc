// SPDX-License-Identifier: MIT
#include "perper/storage/redis/leases.h"

#include <algorithm>
#include <set>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"

#include "perper/common/logging.h"
#include "perper/common/status_macros.h"
#include "perper/storage/redis/redis_keys.h"

namespace perper::storage::redis {

void EveryPeriodUntilStopped(absl::Mutex& mu, const bool* stopping, absl::Duration period,
                             absl::FunctionRef<void()> work) {
  absl::MutexLock lock(&mu);
  while (!*stopping) {
    mu.AwaitWithTimeout(absl::Condition(stopping), period);
    if (*stopping) break;
    mu.Unlock();
    work();
    mu.Lock();
  }
}

std::string LeaseKey(std::string_view process_id) { return Key(ProcessTag(process_id), "lease"); }

absl::StatusOr<bool> LeaseAlive(ClientPool& pool, std::string_view process_id) {
  std::string key = LeaseKey(process_id);
  absl::StatusOr<RedisReply> reply = pool.Run(key, {"EXISTS", key});
  if (!reply.ok()) return reply.status();
  return reply->integer != 0;
}

LiveLeases::LiveLeases(ClientPool* pool, std::chrono::milliseconds max_age)
    : pool_(pool), max_age_(max_age) {}

absl::StatusOr<bool> LiveLeases::Alive(std::string_view process_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = alive_until_.find(process_id);
    if (it != alive_until_.end()) {
      if (Clock::now() < it->second) return true;
      alive_until_.erase(it);
    }
    ++lookups_;
  }
  std::string key = LeaseKey(process_id);
  absl::StatusOr<RedisReply> reply = pool_->Run(key, {"PTTL", key});
  if (!reply.ok()) return reply.status();
  // -2: no such key (dead); -1: no expiry, which a lease never lacks; else milliseconds left.
  if (reply->integer == -2) return false;
  std::chrono::milliseconds left = max_age_;
  if (reply->integer >= 0) left = std::min(left, std::chrono::milliseconds(reply->integer));
  absl::MutexLock lock(&mu_);
  // Few processes share a deployment; the bound only matters after many have come and gone.
  if (alive_until_.size() >= 1024) alive_until_.clear();
  alive_until_[std::string(process_id)] = Clock::now() + left;
  return true;
}

void LiveLeases::Dead(std::string_view process_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = alive_until_.find(process_id); it != alive_until_.end()) alive_until_.erase(it);
}

int64_t LiveLeases::lookups() const {
  absl::MutexLock lock(&mu_);
  return lookups_;
}

ProcessLease::ProcessLease(ClientPool* pool, std::chrono::milliseconds lease)
    : pool_(pool), lease_(lease) {}

ProcessLease::~ProcessLease() { Stop(/*release=*/true); }

absl::Status ProcessLease::Renew() {
  std::string key = LeaseKey(pool_->process_id());
  std::string ms = std::to_string(lease_.count());
  return pool_->Run(key, {"SET", key, "1", "PX", ms}).status();
}

absl::Status ProcessLease::Start() {
  if (absl::Status status = Renew(); !status.ok()) return status;
  std::string processes = Key(kGlobalTag, "processes");
  absl::StatusOr<RedisReply> added =
      pool_->Run(processes, {"SADD", processes, pool_->process_id()});
  if (!added.ok()) return added.status();
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void ProcessLease::Stop(bool release) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (!release) return;
  // Best effort: when Redis is unreachable the lease runs out by itself.
  std::string key = LeaseKey(pool_->process_id());
  (void)pool_->Run(key, {"DEL", key});
  std::string processes = Key(kGlobalTag, "processes");
  (void)pool_->Run(processes, {"SREM", processes, pool_->process_id()});
}

void ProcessLease::Run() {
  // A failed renewal is retried at the next period; if Redis stays away longer than the lease,
  // other processes rightly treat this one as gone.
  EveryPeriodUntilStopped(mu_, &stopping_, absl::FromChrono(lease_) / 3, [this] { (void)Renew(); });
}

ForeignHolderWatcher::ForeignHolderWatcher(ClientPool* pool, Report report,
                                           std::chrono::milliseconds interval, size_t capacity,
                                           LiveLeases* live_leases)
    : pool_(pool),
      report_(std::move(report)),
      interval_(interval),
      capacity_(capacity),
      live_leases_(live_leases) {}

ForeignHolderWatcher::~ForeignHolderWatcher() { Stop(); }

void ForeignHolderWatcher::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ForeignHolderWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ForeignHolderWatcher::Watch(std::string_view process_id, ForeignHold hold) {
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(hold.execution, hold.workgroup);
  auto it = entries_.find(key);
  if (it == entries_.end() && entries_.size() >= capacity_) return;
  Entry entry{std::string(process_id), std::move(hold)};
  if (it == entries_.end()) {
    entries_.emplace(std::move(key), std::move(entry));
  } else {
    it->second = std::move(entry);
  }
}

void ForeignHolderWatcher::Forget(std::string_view execution, std::string_view workgroup) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(std::make_pair(std::string(execution), std::string(workgroup)));
  if (it != entries_.end()) entries_.erase(it);
}

void ForeignHolderWatcher::Forget(std::string_view execution) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.lower_bound(std::make_pair(std::string(execution), std::string()));
  while (it != entries_.end() && it->first.first == execution) it = entries_.erase(it);
}

size_t ForeignHolderWatcher::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

void ForeignHolderWatcher::CheckOnce() {
  std::set<std::string> processes;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, entry] : entries_) processes.insert(entry.process_id);
  }
  std::set<std::string> dead;
  for (const std::string& process : processes) {
    absl::StatusOr<bool> alive = LeaseAlive(*pool_, process);
    // Unreachable Redis: nobody can take anything over now; ask again next round.
    if (alive.ok() && !*alive) dead.insert(process);
  }
  if (dead.empty()) return;
  if (live_leases_ != nullptr) {
    for (const std::string& process : dead) live_leases_->Dead(process);
  }
  std::vector<ForeignHold> released;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (dead.count(it->second.process_id) != 0) {
        released.push_back(std::move(it->second.hold));
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (ForeignHold& hold : released) {
    Change change;
    change.kind = Change::Kind::kReservationReleased;
    change.id = std::move(hold.execution);
    change.workgroup = std::move(hold.workgroup);
    change.agent = std::move(hold.agent);
    change.instance = std::move(hold.instance);
    change.delegate = std::move(hold.delegate);
    report_(change);
  }
}

void ForeignHolderWatcher::Run() {
  EveryPeriodUntilStopped(mu_, &stopping_, absl::FromChrono(interval_), [this] { CheckOnce(); });
}

ProcessDeathWatcher::ProcessDeathWatcher(ClientPool* pool, Report report,
                                         std::chrono::milliseconds interval,
                                         std::chrono::milliseconds forget_after,
                                         LiveLeases* live_leases)
    : pool_(pool),
      report_(std::move(report)),
      interval_(interval),
      forget_after_(forget_after),
      live_leases_(live_leases) {}

ProcessDeathWatcher::~ProcessDeathWatcher() { Stop(); }

void ProcessDeathWatcher::Start() {
  // Redis unreachable now: the thread's looks take over; the first of them counts as the first.
  (void)CheckOnce();
  thread_ = std::thread([this] { Run(); });
}

void ProcessDeathWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t ProcessDeathWatcher::reported() const {
  absl::MutexLock lock(&mu_);
  return reported_;
}

absl::StatusOr<std::vector<std::string>> ProcessDeathWatcher::CheckOnce() {
  auto alive = [&](std::string_view process) {
    return live_leases_ != nullptr ? live_leases_->Alive(process) : LeaseAlive(*pool_, process);
  };
  std::vector<std::string> died;
  {
    absl::MutexLock lock(&check_mu_);
    PERPER_ASSIGN_OR_RETURN(bool leased, LeaseAlive(*pool_, pool_->process_id()));
    if (!leased) return died;
    const std::string processes = Key(kGlobalTag, "processes");
    PERPER_ASSIGN_OR_RETURN(RedisReply members, pool_->Run(processes, {"SMEMBERS", processes}));
    const Clock::time_point now = Clock::now();
    std::map<std::string, Clock::time_point, std::less<>> dead_since;
    for (const RedisReply& member : members.elements) {
      const std::string& process = member.str;
      if (process == pool_->process_id()) continue;
      PERPER_ASSIGN_OR_RETURN(bool lives, alive(process));
      if (lives) continue;
      auto seen = dead_since_.find(process);
      if (seen == dead_since_.end()) {
        if (looked_) died.push_back(process);
        dead_since.emplace(process, now);
      } else if (now - seen->second < forget_after_) {
        dead_since.emplace(process, seen->second);
      } else {
        // Every live process has looked at it by now. Best effort: a failure leaves it for
        // the next look of any process.
        (void)pool_->Run(processes, {"SREM", processes, process});
      }
    }
    // A member that left the set, or whose lease came back, is judged afresh next time.
    dead_since_ = std::move(dead_since);
    looked_ = true;
  }
  if (died.empty()) return died;
  {
    absl::MutexLock lock(&mu_);
    reported_ += static_cast<int64_t>(died.size());
  }
  for (const std::string& process : died) {
    if (live_leases_ != nullptr) live_leases_->Dead(process);
    PERPER_LOG_INFO(Logger::kStorage,
                    "[process={}] Fabric process gone without closing (its lease ran out): "
                    "every waiting call looks again for what it may not have published",
                    process);
  }
  Change resync;
  resync.kind = Change::Kind::kResync;
  report_(resync);
  return died;
}

void ProcessDeathWatcher::Run() {
  // Redis unreachable: the bus resyncs its own way; look again next round.
  EveryPeriodUntilStopped(mu_, &stopping_, absl::FromChrono(interval_),
                          [this] { (void)CheckOnce(); });
}

}  // namespace perper::storage::redis
