// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>

#include "perper/storage/change.h"

namespace perper::storage {

// Passes committed changes to the store's observer, if one is set. Engines call Notify after
// releasing their locks. Thread-safe.
class Notifier {
 public:
  void SetObserver(ChangeObserver* observer) {
    observer_.store(observer, std::memory_order_release);
  }
  void Notify(const Change& change) const {
    if (ChangeObserver* o = observer_.load(std::memory_order_acquire)) o->OnChange(change);
  }

 private:
  std::atomic<ChangeObserver*> observer_{nullptr};
};

}  // namespace perper::storage
