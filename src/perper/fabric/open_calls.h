// SPDX-License-Identifier: MIT
// The bound on the long-lived calls one Fabric process holds: listen calls, reservation calls,
// and calls that wait for a result or a listener. Each costs memory (no thread), so their number
// is capped, and a call past the cap gets RESOURCE_EXHAUSTED at once rather than the process
// growing until it dies.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace perper::fabric {

// Thread safety: thread-safe (one atomic counter).
class OpenCalls {
 public:
  // One open call's place, given back when destroyed. False when none was free.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        Reset();
        owner_ = std::exchange(other.owner_, nullptr);
      }
      return *this;
    }
    ~Slot() { Reset(); }
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    friend class OpenCalls;
    explicit Slot(OpenCalls* owner) : owner_(owner) {}
    void Reset() {
      if (owner_ != nullptr) owner_->open_.fetch_sub(1, std::memory_order_relaxed);
      owner_ = nullptr;
    }
    OpenCalls* owner_ = nullptr;
  };

  explicit OpenCalls(size_t limit) : limit_(limit) {}

  // A slot, or an empty one when `limit` calls are open already.
  Slot TryOpen() {
    size_t open = open_.fetch_add(1, std::memory_order_relaxed);
    if (open < limit_) return Slot(this);
    open_.fetch_sub(1, std::memory_order_relaxed);
    return Slot();
  }

  // RESOURCE_EXHAUSTED for a call refused by TryOpen, naming `what`.
  absl::Status Refusal(const std::string& what) const {
    return absl::ResourceExhaustedError(what + " refused: the Fabric holds " +
                                        std::to_string(limit_) +
                                        " open calls, its limit (--max-open-calls)");
  }

  size_t open() const { return open_.load(std::memory_order_relaxed); }

 private:
  const size_t limit_;
  std::atomic<size_t> open_{0};
};

}  // namespace perper::fabric
