// SPDX-License-Identifier: MIT
#include "perper/agent/execution.h"

#include <iterator>
#include <utility>

namespace perper::internal {

std::vector<std::string> KeptCalls::Add(std::string id, size_t limit) {
  std::vector<std::string> dropped;
  absl::MutexLock lock(&mu_);
  if (released_) {
    dropped.push_back(std::move(id));
    return dropped;
  }
  ids_.push_back(std::move(id));
  while (ids_.size() > limit) {
    dropped.push_back(std::move(ids_.front()));
    ids_.pop_front();
  }
  return dropped;
}

bool KeptCalls::Empty() {
  absl::MutexLock lock(&mu_);
  return ids_.empty();
}

std::vector<std::string> KeptCalls::Release() {
  absl::MutexLock lock(&mu_);
  released_ = true;
  std::vector<std::string> ids(std::make_move_iterator(ids_.begin()),
                               std::make_move_iterator(ids_.end()));
  ids_.clear();
  return ids;
}

}  // namespace perper::internal
