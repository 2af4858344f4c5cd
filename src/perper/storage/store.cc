// SPDX-License-Identifier: MIT
#include "perper/storage/store.h"

namespace perper::storage {

bool Matches(const ExecutionFilter& filter, const ExecutionRecord& record) {
  if (!filter.any_agent && record.agent != filter.agent) return false;
  if (!filter.instance.empty() && record.instance != filter.instance) return false;
  if (!filter.delegate.empty() && record.delegate != filter.delegate) return false;
  if (!filter.include_finished && record.finished) return false;
  return true;
}

}  // namespace perper::storage
