// SPDX-License-Identifier: MIT
#include "perper/scaler/restart_policy.h"

#include <algorithm>

namespace perper::scaler {

absl::Duration RestartPolicy::OnExit(absl::Time now, absl::Duration ran_for) {
  if (ran_for >= settings_.healthy_run || next_delay_ == absl::ZeroDuration()) {
    next_delay_ = settings_.initial_delay;
  } else {
    next_delay_ = std::min(next_delay_ * 2, settings_.max_delay);
  }
  exits_.push_back(now);
  while (!exits_.empty() && now - exits_.front() > settings_.crash_window) exits_.pop_front();
  in_crash_loop_ = static_cast<int>(exits_.size()) >= settings_.crash_loop_exits;
  return next_delay_;
}

}  // namespace perper::scaler
