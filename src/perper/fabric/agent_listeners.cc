// SPDX-License-Identifier: MIT
#include "perper/fabric/agent_listeners.h"

namespace perper::fabric {

AgentListeners::Registration AgentListeners::Open(std::string agent, bool reserving) {
  {
    absl::MutexLock lock(&mu_);
    Count& count = counts_[agent];
    count.agent = agent;
    ++(reserving ? count.reservation_calls : count.listen_calls);
  }
  return Registration(this, std::move(agent), reserving);
}

void AgentListeners::Close(const std::string& agent, bool reserving) {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(agent);
  if (it == counts_.end()) return;
  --(reserving ? it->second.reservation_calls : it->second.listen_calls);
  if (it->second.listen_calls == 0 && it->second.reservation_calls == 0) counts_.erase(it);
}

std::vector<AgentListeners::Count> AgentListeners::List(std::string_view agent,
                                                        size_t limit) const {
  std::vector<Count> counts;
  absl::MutexLock lock(&mu_);
  if (!agent.empty()) {
    if (auto it = counts_.find(agent); it != counts_.end() && limit > 0) {
      counts.push_back(it->second);
    }
    return counts;
  }
  for (const auto& [name, count] : counts_) {
    if (counts.size() >= limit) break;
    counts.push_back(count);
  }
  return counts;
}

}  // namespace perper::fabric
