// SPDX-License-Identifier: MIT
// The ListenAndReserve call of an agent process: the reactor of one call, reconnecting with
// back-off, the executions running on its credits and the completions not yet known applied
// (like _ReservationCall and the listen loop of sdk/python/perper/application.py). Not part of
// the public API.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <grpcpp/grpcpp.h>

#include "perper/agent/agent.h"
#include "perper/agent/connection.h"
#include "perper/agent/execution.h"
#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::internal {

// The process's ListenAndReserve call, opened again after it breaks, and the executions it
// holds credits for. Owned by Core. Executions delivered on the call are handed, in order, to
// `deliver` on `strand`; the dispatcher runs them and finishes each by Finished or
// CompleteExecution.
//
// The credit rule: a new call is opened with the concurrency minus the executions still running,
// and each of those grants its credit to the current call when it finishes. The running
// executions, the completions not known applied and the current call are therefore under one
// lock (mu_): an execution counts as running for a new call (its credit comes later) or not (its
// credit is in the call's first message), never both, and a delivery finds an execution either
// running or completed.
// Thread-safe: mu_ as annotated; the back-off, the reconnect timer and `serving_` are only
// touched on `strand`. No lock is held while calling `deliver`, `request_stop` or the reactor.
class ReservationCall {
 public:
  // A larger completion goes by unary Complete, so that one big result does not hold up the
  // credits and the small completions behind it on the call (the same in every SDK, STYLE.md).
  static constexpr size_t kMaxListenCompletionBytes = 1 << 20;

  // Takes the messages of call `from` that name an execution (deliveries and deletions), on
  // `strand`, in the order received.
  using Deliver = std::function<void(const ListenReactor* from,
                                     const grpc2::ExecutionsListenResponse& message)>;

  // `agent`, `options`, `connection` and `io` outlive the reservation call. `request_stop` is
  // called when the Fabric refuses the call for good.
  ReservationCall(const Agent& agent, const RunOptions& options, Connection& connection,
                  asio::io_context& io, Strand strand, Deliver deliver,
                  std::function<void(int exit_code)> request_stop);
  ~ReservationCall();

  // Opens the call ("serving" is logged once the Fabric has answered it).
  void Start() { StartListen(); }
  // No call is opened from now on (the runtime is stopping). Idempotent.
  void StopReconnecting();
  // At stop, after StopReconnecting and Connection::SetStopping: writes what was handed to the
  // call, ends it, and waits (bounded) for it to end and for the unary Completes still in flight.
  void Close();

  // Whether execution `id`, delivered by `from`, is to run: false when it runs here already, or
  // has finished here with a completion the Fabric had not applied when it delivered it again
  // (either way the credit goes back, with the completion again in the second case).
  bool Admit(const ListenReactor* from, const std::string& id);
  // Counts `execution` as running (until Finished or CompleteExecution).
  void AddRunning(std::shared_ptr<ExecutionState> execution);
  // The running execution `id` delivered by the Fabric (not a synthetic one), or null.
  std::shared_ptr<ExecutionState> FindDelivered(const std::string& id);
  // Every execution running now (synthetic ones included).
  std::vector<std::shared_ptr<ExecutionState>> Running();
  // Waits until no execution runs and no unary Complete is in flight, or `deadline` passes.
  bool AwaitIdle(absl::Time deadline);
  size_t running_count();

  // `execution` ended without a completion to send (a synthetic one, deleted or cancelled at
  // stop): its credit goes to the current call.
  void Finished(const std::shared_ptr<ExecutionState>& execution);
  // Finishes `execution` with its completion: on the listen call, with the credit it frees;
  // when no live call takes it, or it is over kMaxListenCompletionBytes, by a unary Complete.
  void CompleteExecution(const std::shared_ptr<ExecutionState>& execution,
                         grpc2::ExecutionsCompleteRequest request);
  // Completes by a unary Complete (the fallback when no listen call can take a completion).
  void CompleteByUnary(SharedCompletion completion);

  // Called by a listen reactor, on a gRPC thread.
  void OnListenMessage(ListenReactor* from, grpc2::ExecutionsListenResponse message);
  void OnListenDone(ListenReactor* from, const grpc::Status& status);
  // `completions` need not be sent again: the Fabric has applied them (`applied`: the calls
  // their executions kept are deleted), or they are given up or assumed applied.
  void Confirmed(const std::vector<SharedCompletion>& completions, bool applied);

 private:
  bool Idle() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return running_.empty() && unary_completes_ == 0;
  }
  bool ListenDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return listen_done_; }
  bool UnaryCompletesDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return unary_completes_ == 0; }

  // Opens a ListenAndReserve call, replacing the previous one (at start and after a reconnect
  // delay); credits are the concurrency minus the executions still running.
  void StartListen();
  std::shared_ptr<ListenReactor> CurrentListen();
  // On `strand_`: logs the Fabric's first answer of a call.
  void Answered(const ListenReactor* from);
  static Task<void> UnaryComplete(ReservationCall* self, SharedCompletion completion);
  // Waits until the Fabric has finished the execution of `completion`, sent on a listen call
  // (which answers no message; the usual confirmation waits for later deliveries), then deletes
  // the calls it kept.
  static Task<void> ReleaseWhenApplied(Connection* connection, SharedCompletion completion);

  const Agent& agent_;
  const RunOptions& options_;
  Connection& connection_;
  asio::io_context& io_;
  const Strand strand_;
  const Deliver deliver_;
  const std::function<void(int)> request_stop_;

  // Reconnecting the listen call; only touched on strand_.
  Backoff backoff_;
  // Set by the first answer of a listen call (on strand_): later ones are reconnections.
  bool serving_ = false;
  asio::steady_timer reconnect_timer_;

  absl::Mutex mu_;
  // The current ListenAndReserve call, and the ones it replaced (kept until the runtime ends,
  // since gRPC may still be returning from their OnDone).
  std::shared_ptr<ListenReactor> listen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<ListenReactor>> replaced_listens_ ABSL_GUARDED_BY(mu_);
  bool listen_done_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::shared_ptr<ExecutionState>> running_ ABSL_GUARDED_BY(mu_);
  // Completions sent (on a listen call or by unary Complete) and not known applied, by
  // execution ID: if the Fabric delivers one of these executions (again), it is completed
  // again instead of run again.
  struct Unconfirmed {
    SharedCompletion completion;
    const ListenReactor* delivered_by = nullptr;  // the call that delivered the execution
  };
  std::map<std::string, Unconfirmed> unconfirmed_ ABSL_GUARDED_BY(mu_);
  int unary_completes_ ABSL_GUARDED_BY(mu_) = 0;  // unary Complete calls in flight
};

}  // namespace perper::internal
