// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>

#include "perper/storage/change.h"

namespace perper::storage::redis {

class ChangeBus;

// Where the parts of a RedisStore report committed changes: to this process's observer at once,
// and through the ChangeBus to every other Fabric process sharing the deployment.
// Thread-safe. SetObserver and SetBus are called before the store is used.
class RedisNotifier {
 public:
  void SetObserver(ChangeObserver* observer) {
    observer_.store(observer, std::memory_order_release);
  }
  void SetBus(ChangeBus* bus) { bus_.store(bus, std::memory_order_release); }
  // Sees what NotifyLocal passes before the observer does, so that a cache of this process
  // (RedisExecutions' reservations) is true again before anyone acts on the change.
  void SetCacheKeeper(ChangeObserver* keeper) { keeper_.store(keeper, std::memory_order_release); }

  // A change made by this process.
  void Notify(const Change& change) const;
  // A change made elsewhere, or kResync, passed by the ChangeBus from its subscriber thread:
  // this process's observer only.
  void NotifyLocal(const Change& change) const {
    if (ChangeObserver* k = keeper_.load(std::memory_order_acquire)) k->OnChange(change);
    if (ChangeObserver* o = observer_.load(std::memory_order_acquire)) o->OnChange(change);
  }

 private:
  std::atomic<ChangeObserver*> keeper_{nullptr};
  std::atomic<ChangeObserver*> observer_{nullptr};
  std::atomic<ChangeBus*> bus_{nullptr};
};

}  // namespace perper::storage::redis
