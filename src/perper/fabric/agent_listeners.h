// SPDX-License-Identifier: MIT
// The open Listen and ListenAndReserve calls of this Fabric process, counted by agent type:
// whether any process serves an agent (FabricIntrospection.ListAgentListeners), so that a caller
// waiting on an agent nothing listens for can be told so instead of timing out in silence.
//
//   AgentListeners::Registration r = listeners.Open("Calc", /*reserving=*/true);
//   listeners.List("Calc", 10);  // {{"Calc", 0 listen calls, 1 reservation call}}
//   r.Reset();                   // the call ended
//
// Thread safety: thread-safe (one mutex around a small map).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace perper::fabric {

class AgentListeners {
 public:
  struct Count {
    std::string agent;
    uint32_t listen_calls = 0;       // Listen
    uint32_t reservation_calls = 0;  // ListenAndReserve
  };

  // One open call, counted until destroyed or reset. Movable.
  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)),
          agent_(std::move(other.agent_)),
          reserving_(other.reserving_) {}
    Registration& operator=(Registration&& other) noexcept {
      if (this != &other) {
        Reset();
        owner_ = std::exchange(other.owner_, nullptr);
        agent_ = std::move(other.agent_);
        reserving_ = other.reserving_;
      }
      return *this;
    }
    ~Registration() { Reset(); }
    void Reset() {
      if (owner_ != nullptr) owner_->Close(agent_, reserving_);
      owner_ = nullptr;
    }

   private:
    friend class AgentListeners;
    Registration(AgentListeners* owner, std::string agent, bool reserving)
        : owner_(owner), agent_(std::move(agent)), reserving_(reserving) {}
    AgentListeners* owner_ = nullptr;
    std::string agent_;
    bool reserving_ = false;
  };

  [[nodiscard]] Registration Open(std::string agent, bool reserving);
  // The agents with open calls, by name; only `agent` when it is not empty; at most `limit`.
  std::vector<Count> List(std::string_view agent, size_t limit) const;

 private:
  void Close(const std::string& agent, bool reserving);

  mutable absl::Mutex mu_;
  std::map<std::string, Count, std::less<>> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace perper::fabric
