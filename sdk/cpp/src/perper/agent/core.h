// SPDX-License-Identifier: MIT
// Internals of the agent runtime: Core starts and stops an agent process, made of the connection
// to the Fabric (connection.h), the ListenAndReserve call (reservation_call.h) and the
// dispatcher running executions (dispatcher.h). Not part of the public API.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/strand.hpp>

#include "perper/agent/agent.h"
#include "perper/agent/connection.h"
#include "perper/agent/dispatcher.h"
#include "perper/agent/execution.h"
#include "perper/agent/ids.h"
#include "perper/agent/reservation_call.h"
#include "perper/common/fabric_endpoints.h"

namespace perper::internal {

// FabricInstances.StopAndDelete of `instance`; a failed Stop is UNKNOWN with its message.
Task<absl::Status> DestroyInstance(Core* core, model::PerperInstance instance);

// A running agent process: the io_context and its threads, the signal handling, the stop state,
// and the three parts it starts and stops in order (connection, reservation call, dispatcher).
// Owned by Runtime; coroutines and Contexts hold a raw pointer, valid until Wait has stopped
// every thread.
// Thread-safe: the stop state is under mu_; the parts are thread-safe themselves.
class Core {
 public:
  Core(const Agent& agent, RunOptions options);
  ~Core();

  absl::Status Start();
  void RequestStop(int exit_code);
  // Waits for RequestStop, then stops: the reservation call writes what it holds and ends, the
  // running handlers and the calls in flight are cancelled (and waited for, bounded), the
  // threads end. Returns the exit code; later calls return it again.
  int Wait();

  Connection& connection() { return connection_; }
  bool stopping() const { return connection_.stopping(); }
  const Agent& agent() const { return agent_; }

 private:
  bool StopRequested() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_requested_; }
  // Cancels the running handlers, then the calls in flight.
  void CancelAll();

  const Agent& agent_;
  const RunOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  // The reservation call's strand: its messages are handled, and Deploy starts, on it.
  Strand dispatch_strand_;
  std::unique_ptr<asio::signal_set> signals_;
  std::vector<std::thread> threads_;

  // Made in this order and destroyed in reverse: the later parts use the earlier ones.
  Connection connection_;
  ReservationCall reservation_;
  Dispatcher dispatcher_;

  absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  int exit_code_ ABSL_GUARDED_BY(mu_) = 0;
  bool waited_ ABSL_GUARDED_BY(mu_) = false;
  int waited_code_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace perper::internal
