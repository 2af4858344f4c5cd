// SPDX-License-Identifier: MIT
// Process-wide counters of the agent runtime's traffic with the Fabric, summed over every
// runtime in the process. Tests read them (as differences) to check which path a message took;
// they are not part of the public API.
#pragma once

#include <atomic>
#include <cstdint>

namespace perper::internal {

struct Counters {
  // Response messages received on stream listen calls, and the items they carried.
  std::atomic<uint64_t> listen_responses{0};
  std::atomic<uint64_t> listen_items{0};
  // Executions completed on the ListenAndReserve call (handed to its write), and by a unary
  // FabricExecutions.Complete (the fallback when no listen call could take them).
  std::atomic<uint64_t> stream_completions{0};
  std::atomic<uint64_t> unary_completes{0};
  // Redelivered executions whose result was already known, completed again without running.
  std::atomic<uint64_t> completed_again{0};
  // Recorded Deploys not run because their execution had finished on the Fabric before.
  std::atomic<uint64_t> deploys_skipped{0};
};

// The process's one set, counted by the runtime and read by tests. Thread-safe.
Counters& ProcessCounters();

}  // namespace perper::internal
