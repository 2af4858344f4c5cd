// SPDX-License-Identifier: MIT
// How many processes a pool-mode agent type should run, from the number of its pending
// (unfinished) executions: ceil(pending / executions_per_process), clamped to [min, max].
// Scaling up is immediate; scaling down waits until the lower target has held for `idle`.
//
//   PoolPolicy policy(/*min=*/0, /*max=*/3, /*executions_per_process=*/1, absl::Seconds(2));
//   int target = policy.Target(pending, running, now);
//
// Plain value; no synchronization (the supervisor's loop thread owns it).
#pragma once

#include <optional>

#include "absl/time/time.h"

namespace perper::scaler {

class PoolPolicy {
 public:
  PoolPolicy(int min, int max, int executions_per_process, absl::Duration idle)
      : min_(min), max_(max), per_process_(executions_per_process), idle_(idle) {}

  // The number of processes to run now, given `pending` executions and `running` processes.
  int Target(int pending, int running, absl::Time now);

  int min() const { return min_; }

 private:
  int min_, max_, per_process_;
  absl::Duration idle_;
  std::optional<absl::Time> below_since_;
};

}  // namespace perper::scaler
