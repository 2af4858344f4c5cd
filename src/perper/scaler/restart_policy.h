// SPDX-License-Identifier: MIT
// Restart back-off and crash-loop detection for one supervised process.
//
//   RestartPolicy policy;
//   absl::Duration delay = policy.OnExit(now, ran_for);   // 0.2 s, 0.4 s, 0.8 s, ... 10 s
//   if (policy.in_crash_loop()) { ... report ... }
//
// Plain value; no synchronization (the supervisor's loop thread owns it).
#pragma once

#include <deque>

#include "absl/time/time.h"

namespace perper::scaler {

struct RestartSettings {
  absl::Duration initial_delay = absl::Milliseconds(200);
  absl::Duration max_delay = absl::Seconds(10);
  // A run at least this long counts as healthy: the next delay starts from initial_delay again.
  absl::Duration healthy_run = absl::Seconds(10);
  // This many exits within `crash_window` is a crash loop.
  int crash_loop_exits = 5;
  absl::Duration crash_window = absl::Seconds(30);
};

class RestartPolicy {
 public:
  explicit RestartPolicy(RestartSettings settings = {}) : settings_(settings) {}

  // Records an unexpected exit at `now` of a process that ran for `ran_for`; returns how long
  // to wait before restarting it.
  absl::Duration OnExit(absl::Time now, absl::Duration ran_for);

  // True when the last crash_loop_exits exits all happened within crash_window.
  bool in_crash_loop() const { return in_crash_loop_; }
  // Exits counted in the current window.
  int recent_exits() const { return static_cast<int>(exits_.size()); }

 private:
  RestartSettings settings_;
  absl::Duration next_delay_ = absl::ZeroDuration();
  std::deque<absl::Time> exits_;
  bool in_crash_loop_ = false;
};

}  // namespace perper::scaler
