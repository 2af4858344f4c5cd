// SPDX-License-Identifier: MIT
// ChangeHub routes the changes a Store commits to the calls that wait for them: execution
// listeners by agent, result waiters by execution, item listeners by stream. Work per change is
// proportional to the subscribers of its topics, not to all open calls. The exception is
// Change::Kind::kResync (notifications may have been lost, e.g. a Redis subscription broke):
// it goes to every subscriber of every topic, once each, and each re-reads what it waits for.
//
//   auto subscriber = std::make_shared<GuardedSubscriber>([](const storage::Change& c) { ... });
//   ChangeHub::Subscription s = hub.Subscribe(Topic::kStream, "my-stream", subscriber);
//   ...
//   subscriber->Close();  // No callback runs after this returns.
//
// Thread safety: all methods are thread-safe. Subscribers are called outside the hub's locks,
// possibly concurrently, and may subscribe or unsubscribe from within a callback. They are called
// on the committing thread, or on one of the hub's delivery threads once StartDispatcher was
// called; either way one subscriber hears its changes one at a time, in the order they came.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/change.h"

namespace perper::fabric {

enum class Topic {
  kAgentExecutions,  // key: agent. Execution created/completed/deleted, reservation released.
  kExecution,        // key: execution ID. The same changes, for one execution.
  kStream,           // key: stream ID. Items written, stream created, completed, deleted.
  // key: stream ID. Listeners registered, moved or deleted, and the stream deleted. Separate
  // from kStream so that registering one of N listen calls does not wake the other N-1.
  kStreamListeners,
};

class ChangeSubscriber {
 public:
  virtual ~ChangeSubscriber() = default;
  virtual void OnChange(const storage::Change& change) = 0;
};

// A subscriber that forwards to a function until closed.
class GuardedSubscriber final : public ChangeSubscriber {
 public:
  explicit GuardedSubscriber(std::function<void(const storage::Change&)> on_change)
      : on_change_(std::move(on_change)) {}
  void OnChange(const storage::Change& change) override {
    absl::MutexLock lock(&mu_);
    if (on_change_) on_change_(change);
  }
  // After Close returns the function is never called again.
  // REQUIRES: not called from within the function.
  void Close() {
    absl::MutexLock lock(&mu_);
    on_change_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  std::function<void(const storage::Change&)> on_change_ ABSL_GUARDED_BY(mu_);
};

class ChangeHub final : public storage::ChangeObserver {
 public:
  // Ends a subscription when destroyed or reset. Movable, not copyable.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&& other) noexcept { *this = std::move(other); }
    Subscription& operator=(Subscription&& other) noexcept;
    ~Subscription() { Reset(); }
    void Reset();

   private:
    friend class ChangeHub;
    Subscription(ChangeHub* hub, Topic topic, std::string key, uint64_t id)
        : hub_(hub), topic_(topic), key_(std::move(key)), id_(id) {}
    ChangeHub* hub_ = nullptr;
    Topic topic_ = Topic::kStream;
    std::string key_;
    uint64_t id_ = 0;
  };

  ChangeHub() = default;
  ~ChangeHub() { StopDispatcher(); }
  ChangeHub(const ChangeHub&) = delete;
  ChangeHub& operator=(const ChangeHub&) = delete;

  // From now on OnChange only queues the change; a thread of the hub's own routes it to its
  // subscribers' inboxes, and `delivery_threads` threads run the inboxes. For a store whose
  // reads cost a network round trip (redis): subscribers re-read the store on a hint, so a
  // write must not wait while each of them does, and one subscriber's round trip must not hold
  // the others' (every reserving call of an agent hears each of its executions). Each
  // subscriber hears its changes one at a time, in the order they came; different subscribers
  // run at once. OnChange blocks while `max_queued` changes and deliveries wait, so a writer
  // faster than delivery slows down instead of growing the queues without bound (a delivery
  // thread that writes never waits). REQUIRES: called once, before the first change.
  void StartDispatcher(size_t max_queued = 100000, size_t delivery_threads = 8);
  // Stops the threads started by StartDispatcher, dropping what is still queued; changes that
  // arrive afterwards are dropped too. Nothing is delivered after it returns. REQUIRES: not
  // called from a subscriber. Idempotent.
  void StopDispatcher();

  [[nodiscard]] Subscription Subscribe(Topic topic, std::string key,
                                       std::shared_ptr<ChangeSubscriber> subscriber);

  void OnChange(const storage::Change& change) override;

  // Number of live subscriptions (for tests and introspection).
  size_t SubscriptionCountForTest();

 private:
  struct Entry {
    uint64_t id;
    std::shared_ptr<ChangeSubscriber> subscriber;
  };
  struct TopicSubscribers {
    std::vector<Entry> entries;
    size_t rotation = 0;  // Start of the next delivery, so no subscriber is always first.
  };
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::pair<int, std::string>, TopicSubscribers> topics ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kShards = 32;

  Shard& ShardFor(Topic topic, const std::string& key);
  void Unsubscribe(Topic topic, const std::string& key, uint64_t id);
  void Deliver(Topic topic, const std::string& key, const storage::Change& change);
  void DeliverToAll(const storage::Change& change);
  // Calls each target now, or (dispatcher running) puts the change in its inbox.
  void Hand(std::vector<std::shared_ptr<ChangeSubscriber>> targets, const storage::Change& change);

  // Routes one change to its topics' subscribers, on the calling thread.
  void Route(const storage::Change& change);
  void DispatchLoop();
  void DeliveryLoop();

  // The changes waiting for one subscriber. `running`: a delivery thread is calling it.
  struct Inbox {
    std::shared_ptr<ChangeSubscriber> subscriber;
    std::deque<storage::Change> changes;
    bool running = false;
  };

  std::array<Shard, kShards> shards_;
  std::atomic<uint64_t> next_id_{1};

  // The dispatcher (StartDispatcher); unused otherwise.
  absl::Mutex dispatch_mu_;
  std::deque<storage::Change> queued_ ABSL_GUARDED_BY(dispatch_mu_);
  // Subscribers with changes waiting, by identity; `ready_` lists those no thread runs, in the
  // order they became ready.
  absl::flat_hash_map<const ChangeSubscriber*, Inbox> inboxes_ ABSL_GUARDED_BY(dispatch_mu_);
  std::deque<const ChangeSubscriber*> ready_ ABSL_GUARDED_BY(dispatch_mu_);
  size_t inboxed_ ABSL_GUARDED_BY(dispatch_mu_) = 0;  // Changes in every inbox.
  size_t max_queued_ ABSL_GUARDED_BY(dispatch_mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(dispatch_mu_) = false;
  std::atomic<bool> stopping_{false};  // stopped_, read between deliveries without the lock.
  std::thread dispatcher_;             // Started under dispatch_mu_.
  std::vector<std::thread> delivery_threads_;  // Started under dispatch_mu_.
  std::atomic<bool> dispatched_{false};        // Set once the dispatcher runs; never cleared.
};

}  // namespace perper::fabric
