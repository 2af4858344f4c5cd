// SPDX-License-Identifier: MIT
// Bounds how long a bidirectional call waits for its first message: a client that opens
// ListenAndReserve or ListenItemsAndMove and then says nothing would otherwise hold the call,
// and what the Fabric keeps for it, for ever.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include <grpcpp/alarm.h>

namespace perper::fabric {

// A one-shot timer owned by a reactor. Arm() starts it; `expire` runs once on a gRPC thread
// when the timeout passes first, and never after Disarm() has returned. Disarm() waits for an
// `expire` already running, so a reactor that calls Disarm() in OnDone may delete itself after.
// `expire` must not call Disarm() (it would wait for itself). Disarm() tells whether `expire`
// ran, so the reactor needs no flag of its own to skip a first message that came too late.
//
// Thread safety: Arm once, from one thread; Disarm from any thread, any number of times.
class FirstMessageTimer {
 public:
  FirstMessageTimer() = default;
  FirstMessageTimer(const FirstMessageTimer&) = delete;
  FirstMessageTimer& operator=(const FirstMessageTimer&) = delete;
  ~FirstMessageTimer() { Disarm(); }

  void Arm(absl::Duration timeout, std::function<void()> expire) {
    {
      absl::MutexLock lock(&state_->mu);
      state_->armed = true;
      state_->expire = std::move(expire);
    }
    alarm_.Set(absl::ToChronoTime(absl::Now() + timeout), [state = state_](bool fired) {
      absl::MutexLock lock(&state->mu);
      if (!fired || state->disarmed) return;
      state->disarmed = true;
      state->expired = true;
      state->expire();
    });
  }

  // Returns whether the timeout had passed (and `expire` ran) before.
  bool Disarm() {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->disarmed) return state_->expired;
      state_->disarmed = true;
      if (!state_->armed) return false;
    }
    alarm_.Cancel();
    return false;
  }

 private:
  // Shared with the alarm's callback, which may run after the owner is gone.
  struct State {
    absl::Mutex mu;
    bool armed ABSL_GUARDED_BY(mu) = false;
    bool disarmed ABSL_GUARDED_BY(mu) = false;
    bool expired ABSL_GUARDED_BY(mu) = false;
    std::function<void()> expire ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  grpc::Alarm alarm_;
};

}  // namespace perper::fabric
