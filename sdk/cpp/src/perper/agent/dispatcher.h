// SPDX-License-Identifier: MIT
// Running executions in an agent process: one strand per instance, the instance's Init before
// its first execution, the handler's coroutine and its completion (like the dispatch part of
// sdk/python/perper/application.py). Not part of the public API.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include "perper/agent/agent.h"
#include "perper/agent/connection.h"
#include "perper/agent/execution.h"
#include "perper/agent/reservation_call.h"
#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::internal {

class Core;

// One strand per instance, made on first use and kept until the runtime ends: the executions
// of one instance run one piece at a time, in the order their work is posted, those of
// different instances in parallel. Owned by Dispatcher.
// Thread-safe (mu_).
class InstanceStrands {
 public:
  explicit InstanceStrands(asio::io_context& io) : io_(io) {}
  // The strand of `instance`: the same one on every call.
  Strand Of(const std::string& instance);
  size_t size();

 private:
  asio::io_context& io_;
  absl::Mutex mu_;
  std::map<std::string, Strand> strands_ ABSL_GUARDED_BY(mu_);
};

// Init of one instance in this process. Only touched on the instance's strand.
struct InstanceInit {
  explicit InstanceInit(Strand strand) : finished(strand) {}
  bool running = false;
  bool done = false;
  // Executions waiting for a running Init wait on this timer; it is cancelled when Init ends.
  asio::steady_timer finished;
};

// Runs the executions the reservation call delivers, and Deploy: each on its instance's strand,
// after the instance's Init, with a Context of `core`; finishes each through the reservation
// call. Owned by Core; its coroutines hold a raw pointer, valid until Core::Wait has stopped
// every thread.
// Thread-safe: the Init table is under mu_ (each InstanceInit then only on its instance's
// strand), the strands under their own mutex; Handle runs on the reservation call's strand.
class Dispatcher {
 public:
  // Everything given outlives the dispatcher. `strand` is the reservation call's: Deploy
  // starts on it too.
  Dispatcher(Core* core, const Agent& agent, const RunOptions& options, Connection& connection,
             ReservationCall& reservation, asio::io_context& io, Strand strand);

  // A message of the reservation call `from` naming an execution: runs a new one, cancels a
  // deleted one. On the reservation call's strand, in the order received.
  void Handle(const ListenReactor* from, const grpc2::ExecutionsListenResponse& message);
  // Runs the agent's Deploy handler, if it has one (recorded in the Fabric first, with
  // RunOptions::record_deploy).
  void StartDeploy();

  InstanceStrands& strands() { return strands_; }

 private:
  void Launch(std::shared_ptr<ExecutionState> execution);
  static Task<void> Dispatch(Dispatcher* self, std::shared_ptr<ExecutionState> execution,
                             std::shared_ptr<Context> context);
  // Records Deploy as an execution in the Fabric, then runs it unless it finished before.
  static Task<void> RecordAndLaunchDeploy(Dispatcher* self, std::shared_ptr<ExecutionState> deploy);
  // Whether execution `id` (of `instance`, `delegate`) exists and has finished.
  Task<absl::StatusOr<bool>> ExecutionFinished(const model::PerperInstance& instance,
                                               std::string delegate, std::string id);
  // Runs Init for the execution's instance if this process has not yet (on its strand).
  Task<absl::Status> EnsureInit(const std::shared_ptr<ExecutionState>& execution, Context& context);

  Core* const core_;
  const Agent& agent_;
  const RunOptions& options_;
  Connection& connection_;
  ReservationCall& reservation_;
  asio::io_context& io_;
  const Strand strand_;
  InstanceStrands strands_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<InstanceInit>> inits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace perper::internal
