// SPDX-License-Identifier: MIT
#include "perper/fabric/change_hub.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"

#include "perper/common/logging.h"

namespace perper::fabric {

using storage::Change;

ChangeHub::Subscription& ChangeHub::Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    Reset();
    hub_ = other.hub_;
    topic_ = other.topic_;
    key_ = std::move(other.key_);
    id_ = other.id_;
    other.hub_ = nullptr;
  }
  return *this;
}

void ChangeHub::Subscription::Reset() {
  if (hub_ != nullptr) hub_->Unsubscribe(topic_, key_, id_);
  hub_ = nullptr;
}

ChangeHub::Shard& ChangeHub::ShardFor(Topic topic, const std::string& key) {
  size_t h = absl::HashOf(static_cast<int>(topic), key);
  return shards_[h % kShards];
}

ChangeHub::Subscription ChangeHub::Subscribe(Topic topic, std::string key,
                                             std::shared_ptr<ChangeSubscriber> subscriber) {
  uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  Shard& shard = ShardFor(topic, key);
  {
    absl::MutexLock lock(&shard.mu);
    shard.topics[{static_cast<int>(topic), key}].entries.push_back({id, std::move(subscriber)});
  }
  return Subscription(this, topic, std::move(key), id);
}

void ChangeHub::Unsubscribe(Topic topic, const std::string& key, uint64_t id) {
  std::shared_ptr<ChangeSubscriber> released;  // Destroyed outside the lock.
  Shard& shard = ShardFor(topic, key);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.topics.find(std::make_pair(static_cast<int>(topic), key));
  if (it == shard.topics.end()) return;
  auto& entries = it->second.entries;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].id == id) {
      released = std::move(entries[i].subscriber);
      entries[i] = std::move(entries.back());
      entries.pop_back();
      break;
    }
  }
  if (entries.empty()) shard.topics.erase(it);
}

void ChangeHub::Deliver(Topic topic, const std::string& key, const Change& change) {
  std::vector<std::shared_ptr<ChangeSubscriber>> targets;
  Shard& shard = ShardFor(topic, key);
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.topics.find(std::make_pair(static_cast<int>(topic), key));
    if (it == shard.topics.end()) return;
    TopicSubscribers& subs = it->second;
    size_t n = subs.entries.size();
    targets.reserve(n);
    size_t start = subs.rotation++ % n;
    for (size_t i = 0; i < n; ++i) targets.push_back(subs.entries[(start + i) % n].subscriber);
  }
  Hand(std::move(targets), change);
}

void ChangeHub::DeliverToAll(const Change& change) {
  std::vector<std::shared_ptr<ChangeSubscriber>> targets;
  absl::flat_hash_set<const ChangeSubscriber*> seen;  // A subscriber of two topics: once.
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [key, subs] : shard.topics) {
      for (const Entry& entry : subs.entries) {
        if (seen.insert(entry.subscriber.get()).second) targets.push_back(entry.subscriber);
      }
    }
  }
  Hand(std::move(targets), change);
}

namespace {

// Set on the hub's own threads: a change they commit never waits for room (they make it).
thread_local const ChangeHub* hub_thread_of = nullptr;

}  // namespace

void ChangeHub::Hand(std::vector<std::shared_ptr<ChangeSubscriber>> targets, const Change& change) {
  if (!dispatched_.load(std::memory_order_acquire)) {
    for (auto& target : targets) target->OnChange(change);
    return;
  }
  absl::MutexLock lock(&dispatch_mu_);
  if (stopped_) return;
  for (auto& target : targets) {
    Inbox& inbox = inboxes_[target.get()];
    if (inbox.subscriber == nullptr) inbox.subscriber = std::move(target);
    // Not running and nothing waiting: it was not in ready_ (an idle inbox is erased).
    if (!inbox.running && inbox.changes.empty()) ready_.push_back(inbox.subscriber.get());
    inbox.changes.push_back(change);
    ++inboxed_;
  }
}

void ChangeHub::StartDispatcher(size_t max_queued, size_t delivery_threads) {
  absl::MutexLock lock(&dispatch_mu_);
  if (dispatcher_.joinable() || stopped_) return;
  max_queued_ = max_queued;
  dispatcher_ = std::thread([this] { DispatchLoop(); });
  for (size_t i = 0; i < std::max<size_t>(delivery_threads, 1); ++i) {
    delivery_threads_.emplace_back([this] { DeliveryLoop(); });
  }
  dispatched_.store(true, std::memory_order_release);
}

void ChangeHub::StopDispatcher() {
  absl::flat_hash_map<const ChangeSubscriber*, Inbox> dropped;  // Released outside the lock.
  {
    absl::MutexLock lock(&dispatch_mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_.store(true, std::memory_order_release);
    queued_.clear();
    dropped.swap(inboxes_);
    ready_.clear();
    inboxed_ = 0;
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  for (std::thread& thread : delivery_threads_) thread.join();
}

void ChangeHub::DispatchLoop() {
  hub_thread_of = this;
  std::deque<Change> batch;
  while (true) {
    {
      absl::MutexLock lock(&dispatch_mu_);  // Also waits for StartDispatcher to finish.
      dispatch_mu_.Await(absl::Condition(
          +[](ChangeHub* hub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(hub->dispatch_mu_) {
            return hub->stopped_ || !hub->queued_.empty();
          },
          this));
      if (stopped_) return;
      batch.swap(queued_);
    }
    for (const Change& change : batch) Route(change);
    batch.clear();
  }
}

void ChangeHub::DeliveryLoop() {
  hub_thread_of = this;
  for (;;) {
    // Released after the lock at the end of each round: either may be the last reference.
    std::shared_ptr<ChangeSubscriber> subscriber, retired;
    std::deque<Change> changes;
    const ChangeSubscriber* next = nullptr;
    {
      absl::MutexLock lock(&dispatch_mu_);
      dispatch_mu_.Await(absl::Condition(
          +[](ChangeHub* hub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(hub->dispatch_mu_) {
            return hub->stopped_ || !hub->ready_.empty();
          },
          this));
      if (stopped_) return;
      next = ready_.front();
      ready_.pop_front();
      Inbox& inbox = inboxes_.at(next);
      inbox.running = true;
      changes.swap(inbox.changes);
      subscriber = inbox.subscriber;
    }
    for (const Change& change : changes) {
      if (stopping_.load(std::memory_order_acquire)) return;
      subscriber->OnChange(change);
    }
    absl::MutexLock lock(&dispatch_mu_);
    if (stopped_) return;
    inboxed_ -= changes.size();  // Writers waiting for room go on.
    auto it = inboxes_.find(next);
    if (it->second.changes.empty()) {
      retired = std::move(it->second.subscriber);
      inboxes_.erase(it);
    } else {
      it->second.running = false;
      ready_.push_back(next);
    }
  }
}

void ChangeHub::OnChange(const Change& change) {
  if (!dispatched_.load(std::memory_order_acquire)) {
    Route(change);
    return;
  }
  absl::MutexLock lock(&dispatch_mu_);
  // A subscriber that writes from a delivery must not wait for its own threads to drain.
  if (hub_thread_of != this) {
    dispatch_mu_.Await(absl::Condition(
        +[](ChangeHub* hub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(hub->dispatch_mu_) {
          return hub->stopped_ || hub->queued_.size() + hub->inboxed_ < hub->max_queued_;
        },
        this));
  }
  if (!stopped_) queued_.push_back(change);
}

namespace {

// One debug line per committed change, IDs first, before the change reaches its subscribers:
// what they do about it is logged after it. Item writes and listener changes, one per batch or
// acknowledgement, only at trace.
void LogChange(const Change& change) {
  using Kind = Change::Kind;
  auto& logger = GetLogger(Logger::kFabric);
  if (!logger.should_log(spdlog::level::debug)) return;
  switch (change.kind) {
    case Kind::kExecutionCreated:
      logger.debug("[exec={}] created: {}.{} on instance {}", change.id, change.agent,
                   change.delegate, change.instance);
      return;
    case Kind::kReservationReleased:
      logger.debug("[exec={}] reservation released (workgroup '{}')", change.id, change.workgroup);
      return;
    case Kind::kStreamItemsWritten:
      logger.trace("[stream={}] items written up to key {}", change.id, change.key);
      return;
    case Kind::kListenerChanged:
      logger.trace("[stream={}] a listener changed", change.id);
      return;
    case Kind::kResync:
      logger.debug(
          "changes of other Fabric processes may have been missed: every call reads "
          "again what it waits for");
      return;
    default:
      break;
  }
  // The others: an execution or a stream completed, deleted, or a stream created.
  const bool execution =
      change.kind == Kind::kExecutionCompleted || change.kind == Kind::kExecutionDeleted;
  const char* what =
      change.kind == Kind::kStreamCreated ? "created"
      : change.kind == Kind::kExecutionCompleted || change.kind == Kind::kStreamCompleted
          ? "completed"
          : "deleted";
  logger.debug("[{}={}] {}", execution ? "exec" : "stream", change.id, what);
}

}  // namespace

void ChangeHub::Route(const Change& change) {
  LogChange(change);
  switch (change.kind) {
    case Change::Kind::kExecutionCreated:
    case Change::Kind::kExecutionCompleted:
    case Change::Kind::kExecutionDeleted:
    case Change::Kind::kReservationReleased:
      Deliver(Topic::kExecution, change.id, change);
      Deliver(Topic::kAgentExecutions, change.agent, change);
      break;
    case Change::Kind::kStreamCreated:
    case Change::Kind::kStreamItemsWritten:
    case Change::Kind::kStreamCompleted:
      Deliver(Topic::kStream, change.id, change);
      break;
    case Change::Kind::kStreamDeleted:
      Deliver(Topic::kStream, change.id, change);
      Deliver(Topic::kStreamListeners, change.id, change);
      break;
    case Change::Kind::kListenerChanged:
      Deliver(Topic::kStreamListeners, change.id, change);
      break;
    case Change::Kind::kResync:
      DeliverToAll(change);
      break;
  }
}

size_t ChangeHub::SubscriptionCountForTest() {
  size_t count = 0;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [key, subs] : shard.topics) count += subs.entries.size();
  }
  return count;
}

}  // namespace perper::fabric
