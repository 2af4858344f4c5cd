// SPDX-License-Identifier: MIT
#include "perper/fabric/change_hub.h"

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
  for (auto& target : targets) target->OnChange(change);
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
  for (auto& target : targets) target->OnChange(change);
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
      logger.debug("changes of other Fabric processes may have been missed: every call reads "
                   "again what it waits for");
      return;
    default:
      break;
  }
  // The others: an execution or a stream completed, deleted, or a stream created.
  const bool execution =
      change.kind == Kind::kExecutionCompleted || change.kind == Kind::kExecutionDeleted;
  const char* what = change.kind == Kind::kStreamCreated ? "created"
                     : change.kind == Kind::kExecutionCompleted ||
                             change.kind == Kind::kStreamCompleted
                         ? "completed"
                         : "deleted";
  logger.debug("[{}={}] {}", execution ? "exec" : "stream", change.id, what);
}

}  // namespace

void ChangeHub::StartDispatcher(size_t max_queued, size_t lanes) {
  absl::MutexLock lock(&dispatch_mu_);
  if (!lanes_.empty() || stopped_) return;
  max_queued_ = max_queued;
  lanes_.resize(std::max<size_t>(lanes, 1));
  for (size_t i = 0; i < lanes_.size(); ++i) {
    lanes_[i].thread = std::thread([this, i] { DispatchLoop(i); });
  }
  dispatched_.store(true, std::memory_order_release);
}

void ChangeHub::StopDispatcher() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&dispatch_mu_);
    if (stopped_) return;
    stopped_ = true;
    for (Lane& lane : lanes_) {
      lane.queued.clear();
      threads.push_back(std::move(lane.thread));
    }
    queued_ = 0;
  }
  for (std::thread& thread : threads) {
    if (thread.joinable()) thread.join();
  }
}

bool ChangeHub::IsLaneThread() const {
  const std::thread::id self = std::this_thread::get_id();
  for (const Lane& lane : lanes_) {
    if (lane.thread.get_id() == self) return true;
  }
  return false;
}

void ChangeHub::DispatchLoop(size_t index) {
  std::deque<Delivery> batch;
  while (true) {
    {
      absl::MutexLock lock(&dispatch_mu_);  // Also waits for StartDispatcher to finish.
      Lane& lane = lanes_[index];
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(dispatch_mu_) {
        return stopped_ || !lane.queued.empty();
      };
      dispatch_mu_.Await(absl::Condition(&ready));
      if (stopped_) return;
      batch.swap(lane.queued);  // Writers blocked on full queues go on.
      queued_ -= batch.size();
    }
    for (const Delivery& delivery : batch) {
      if (delivery.all) {
        DeliverToAll(delivery.change);
      } else {
        Deliver(delivery.topic, delivery.key, delivery.change);
      }
    }
    batch.clear();
  }
}

void ChangeHub::OnChange(const Change& change) {
  if (!dispatched_.load(std::memory_order_acquire)) {
    Route(change);
    return;
  }
  LogChange(change);
  absl::MutexLock lock(&dispatch_mu_);
  // A subscriber that writes from a delivery must not wait for the lanes to drain.
  if (!IsLaneThread()) {
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(dispatch_mu_) {
      return stopped_ || queued_ < max_queued_;
    };
    dispatch_mu_.Await(absl::Condition(&room));
  }
  if (stopped_) return;
  ForEachTopic(
      change,
      [&](Topic topic, const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(dispatch_mu_) {
        // By key alone: a stream's items and its listeners keep their relative order too.
        Lane& lane = lanes_[absl::HashOf(key) % lanes_.size()];
        lane.queued.push_back(Delivery{topic, false, key, change});
        ++queued_;
      },
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(dispatch_mu_) {
        lanes_[0].queued.push_back(Delivery{Topic::kStream, true, "", change});
        ++queued_;
      });
}


template <typename DeliverOne, typename DeliverAll>
void ChangeHub::ForEachTopic(const Change& change, DeliverOne deliver, DeliverAll deliver_all) {
  switch (change.kind) {
    case Change::Kind::kExecutionCreated:
    case Change::Kind::kExecutionCompleted:
    case Change::Kind::kExecutionDeleted:
    case Change::Kind::kReservationReleased:
      deliver(Topic::kExecution, change.id);
      deliver(Topic::kAgentExecutions, change.agent);
      break;
    case Change::Kind::kStreamCreated:
    case Change::Kind::kStreamItemsWritten:
    case Change::Kind::kStreamCompleted:
      deliver(Topic::kStream, change.id);
      break;
    case Change::Kind::kStreamDeleted:
      deliver(Topic::kStream, change.id);
      deliver(Topic::kStreamListeners, change.id);
      break;
    case Change::Kind::kListenerChanged:
      deliver(Topic::kStreamListeners, change.id);
      break;
    case Change::Kind::kResync:
      deliver_all();
      break;
  }
}

void ChangeHub::Route(const Change& change) {
  LogChange(change);
  ForEachTopic(
      change, [&](Topic topic, const std::string& key) { Deliver(topic, key, change); },
      [&]() { DeliverToAll(change); });
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
