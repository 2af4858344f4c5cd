// SPDX-License-Identifier: MIT
#include "perper/scaler/pool_policy.h"

#include <algorithm>

namespace perper::scaler {

int PoolPolicy::Target(int pending, int running, absl::Time now) {
  int wanted = (std::max(pending, 0) + per_process_ - 1) / per_process_;
  wanted = std::clamp(wanted, min_, max_);
  if (wanted >= running) {
    below_since_.reset();
    return wanted;
  }
  if (!below_since_.has_value()) below_since_ = now;
  if (now - *below_since_ >= idle_) {
    below_since_.reset();
    return wanted;
  }
  return running;
}

}  // namespace perper::scaler
