// SPDX-License-Identifier: MIT
// The state of one execution being handled in this process, and its completion. Shared by the
// dispatcher, the reservation call and the execution's Context. Not part of the public API.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>

#include "perper/agent/agent.h"
#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::internal {

using Strand = asio::strand<asio::io_context::executor_type>;

class ListenReactor;

// The finished call executions one execution run keeps (KeptCall in calls.cc), so that a re-run
// of the execution gets their stored results: at most a limit of the most recent ones while the
// execution runs, none once its completion is acknowledged (a completed execution never runs
// again). Add and Release hand back the IDs to delete; the caller deletes them.
// Thread-safe (mu_): a handler's calls may finish on any thread, and Release runs where the
// Fabric's acknowledgement arrives (a gRPC thread, or a unary Complete's coroutine).
class KeptCalls {
 public:
  // Keeps call `id`, finished just now. Returns what is to be deleted: the oldest kept calls
  // beyond `limit`, or `id` itself once released (a call that finished after its execution
  // completed, in work the handler left running).
  std::vector<std::string> Add(std::string id, size_t limit);
  // Everything kept, once; from then on every Add returns its own call.
  std::vector<std::string> Release();
  bool Empty();

 private:
  absl::Mutex mu_;
  std::deque<std::string> ids_ ABSL_GUARDED_BY(mu_);  // oldest first
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// One execution being handled (or Deploy, which is synthetic: not in the Fabric). Shared by the
// dispatch coroutine, its Context and the runtime's table of running executions.
// `cancel` is only touched on `strand`; `cancelled`, `deleted`, `ids_made` and `kept_calls`
// (under its own mutex) from any thread.
struct ExecutionState {
  ExecutionState(Strand s) : strand(std::move(s)) {}
  std::string id;
  model::PerperInstance instance;
  std::string delegate;
  Values arguments;
  bool synthetic = false;
  // A synthetic Deploy recorded in the Fabric as an execution (RunOptions::record_deploy): it
  // is completed there when the handler returns.
  bool recorded = false;
  // IDs made for the handler are derived from `id` (ids.h): a real execution, or a recorded
  // Deploy. `ids_made` counts them, so a re-run makes the same ones.
  bool derive_ids = false;
  std::atomic<uint64_t> ids_made{0};
  // The finished calls this run keeps (only with derive_ids); its completion releases them.
  // Shared (aliasing this state) with the completion, which outlives the handler.
  KeptCalls kept_calls;
  Strand strand;
  asio::cancellation_signal cancel;
  std::atomic<bool> cancelled{false};
  std::atomic<bool> deleted{false};
  // The handler has returned (only touched on `strand`): cancelling now would only cancel the
  // Complete call, whose result the caller may already have.
  bool handler_returned = false;
  // The listen call that delivered the execution (an identity only; none for Deploy).
  const ListenReactor* delivered_by = nullptr;
};

// An execution's completion, shared by the listen calls and unary Completes that send it.
struct Completion {
  grpc2::ExecutionsCompleteRequest request;
  size_t bytes = 0;  // request.ByteSizeLong()
  // The calls the execution kept, deleted once the Fabric acknowledges the completion.
  std::shared_ptr<KeptCalls> kept_calls;
};
using SharedCompletion = std::shared_ptr<const Completion>;

// The kept calls of the execution whose handler is running on this thread (the ambient
// context), or null outside a handler.
std::shared_ptr<KeptCalls> CurrentKeptCalls();

// Emits the terminal cancellation on `execution`'s strand, unless its handler has returned.
void CancelExecution(const std::shared_ptr<ExecutionState>& execution);

}  // namespace perper::internal
