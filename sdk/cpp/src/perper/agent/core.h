// SPDX-License-Identifier: MIT
// Internals of the agent runtime: the connection to the Fabric, the listen call, running
// executions. Not part of the public API.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <asio/cancellation_signal.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <grpcpp/grpcpp.h>

#include "perper/agent/agent.h"
#include "perper/agent/endpoints.h"
#include "perper/agent/ids.h"
#include "perper/common/grpc_status.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

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

// Whether a call that failed with `status` may succeed if made again once the Fabric is back
// (UNAVAILABLE after a restart, a cancelled stream at shutdown), as opposed to a refusal.
bool IsTransient(const grpc::Status& status);

// Exponential back-off for reconnecting: 50 ms doubling to 5 s, with jitter. Not thread-safe.
class Backoff {
 public:
  absl::Duration Next();
  void Reset() { next_ = kInitial; }

 private:
  static constexpr absl::Duration kInitial = absl::Milliseconds(50);
  static constexpr absl::Duration kMax = absl::Seconds(5);
  absl::Duration next_ = kInitial;
};

// The kept calls of the execution whose handler is running on this thread (the ambient
// context), or null outside a handler.
std::shared_ptr<KeptCalls> CurrentKeptCalls();

// Emits the terminal cancellation on `execution`'s strand, unless its handler has returned.
void CancelExecution(const std::shared_ptr<ExecutionState>& execution);

class Core;

// Init of one instance in this process. Only touched on the instance's strand.
struct InstanceInit {
  explicit InstanceInit(Strand strand) : finished(strand) {}
  bool running = false;
  bool done = false;
  // Executions waiting for a running Init wait on this timer; it is cancelled when Init ends.
  asio::steady_timer finished;
};

// FabricInstances.StopAndDelete of `instance`; a failed Stop is UNKNOWN with its message.
Task<absl::Status> DestroyInstance(Core* core, model::PerperInstance instance);

// Everything a running agent process shares: the gRPC channel and stubs, the io_context and
// its threads, the table of running executions, the stop state. Owned by Runtime; coroutines
// hold a raw pointer, valid until Runtime::Wait has stopped every thread.
// Thread-safe as annotated.
class Core {
 public:
  Core(const Agent& agent, RunOptions options);
  ~Core();

  absl::Status Start();
  void RequestStop(int exit_code);
  int Wait();

  // A unary call to the Fabric, resumed on the awaiting coroutine's executor (never on a gRPC
  // thread). `start(context, request, response, done)` starts the RPC through a stub's async()
  // interface. Cancelling the awaiting coroutine cancels the RPC; stopping the runtime cancels it.
  //
  //   auto response = co_await core->Unary<grpc2::StreamsCreateRequest, google::protobuf::Empty>(
  //       std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
  //         core->streams()->async()->Create(context, req, resp, std::move(done));
  //       });
  template <typename Request, typename Response, typename StartFn>
  Task<absl::StatusOr<Response>> Unary(Request request, StartFn start);

  Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> InstancesCall(
      grpc2::ExecutionsCreateRequest request);
  Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> InstancesCreateAndStart(
      grpc2::InstancesCreateAndStartRequest request);
  Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> InstancesStopAndDelete(
      grpc2::InstancesStopAndDeleteRequest request);
  Task<absl::Status> ExecutionsComplete(grpc2::ExecutionsCompleteRequest request);
  // Deletes execution `id` from a coroutine of its own (not cancelled with its caller), best
  // effort: a cancelled call's execution (a failure is logged as a warning), or a kept call no
  // longer needed (`kept_call`; a failure is logged at debug level).
  void DeleteExecutionDetached(std::string id, bool kept_call = false);
  // Beside a call of `agent` (execution `id`): once RunOptions::unserved_check_after has
  // passed, asks the Fabric whether any process listens for `agent` and warns when none does.
  // Destroying the returned watch (the call was answered) ends it. Null when disabled.
  struct UnservedWatch {
    std::function<void()> end;
    ~UnservedWatch() {
      if (end) end();
    }
  };
  std::unique_ptr<UnservedWatch> WatchUnserved(std::string agent, std::string id);
  // Deletes each of `ids` (kept calls no longer needed) by DeleteExecutionDetached.
  void DeleteKeptCalls(std::vector<std::string> ids);
  // The most finished calls a running execution keeps (RunOptions::max_kept_calls).
  size_t max_kept_calls() const { return options_.max_kept_calls; }

  // The stubs of the current Fabric address, for Unary and streaming calls.
  grpc2::FabricExecutions::Stub* executions() { return Current().executions.get(); }
  grpc2::FabricInstances::Stub* instances() { return Current().instances.get(); }
  grpc2::FabricStatesDictionary::Stub* dictionaries() { return Current().dictionaries.get(); }
  grpc2::FabricStatesList::Stub* lists() { return Current().lists.get(); }
  grpc2::FabricStreams::Stub* streams() { return Current().streams.get(); }
  grpc2::FabricIntrospection::Stub* introspection() { return Current().introspection.get(); }
  grpc2::FabricExecutions::Stub* executions(size_t endpoint) {
    return endpoints_[endpoint]->executions.get();
  }

  // The index of the current Fabric address. A call notes it before starting, and on
  // UNAVAILABLE calls MoveFrom with it: the next attempts go to the next address (round robin),
  // unless another call has moved already.
  size_t endpoint_index() const { return endpoint_.load(); }
  void MoveFrom(size_t endpoint);
  // Whether calls wait for the Fabric to be reachable: with one address they wait (for it to
  // restart); with several, they fail at once so that the caller moves to another address.
  bool wait_for_ready() const { return endpoints_.size() == 1; }

  // A context for a call of this runtime. The Core outlives every one: a context holds the
  // channel, and the channel must not be released last by a context freed on a gRPC thread
  // after the call's callback (gRPC's callback threads would then be stopped from one of
  // themselves).
  std::shared_ptr<grpc::ClientContext> NewContext();

  // Registers a streaming call's context, so that stopping cancels it and waits for it.
  uint64_t AddCall(std::shared_ptr<grpc::ClientContext> context);
  void RemoveCall(uint64_t id);

  bool stopping() const { return stopping_.load(); }
  const Agent& agent() const { return agent_; }

  // Called by a listen reactor, on a gRPC thread.
  void OnListenMessage(ListenReactor* from, grpc2::ExecutionsListenResponse message);
  void OnListenDone(ListenReactor* from, const grpc::Status& status);
  // `completions` need not be sent again: the Fabric has applied them (`applied`: the calls
  // their executions kept are deleted), or they are given up or assumed applied.
  void Confirmed(const std::vector<SharedCompletion>& completions, bool applied);

 private:
  bool Idle() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return running_.empty() && calls_.empty() && unary_completes_ == 0;
  }
  bool StopRequested() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_requested_; }
  bool ListenDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return listen_done_; }
  bool UnaryCompletesDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return unary_completes_ == 0; }

  // Opens a ListenAndReserve call, replacing the previous one (at start and after a reconnect
  // delay); credits are the concurrency minus the executions still running.
  void StartListen();
  std::shared_ptr<ListenReactor> CurrentListen();
  Strand StrandOf(const std::string& instance);
  // On dispatch_strand_.
  void HandleMessage(const ListenReactor* from, const grpc2::ExecutionsListenResponse& message);
  void Launch(std::shared_ptr<ExecutionState> execution);
  void Finished(const std::shared_ptr<ExecutionState>& execution);
  // Finishes `execution` with its completion: on the listen call, with the credit it frees;
  // when no live call takes it, by a unary Complete.
  void CompleteExecution(const std::shared_ptr<ExecutionState>& execution,
                         grpc2::ExecutionsCompleteRequest request);
  // Completes by a unary Complete (the fallback when no listen call can take a completion).
  void CompleteByUnary(SharedCompletion completion);
  static Task<void> UnaryComplete(Core* core, SharedCompletion completion);
  // Waits until the Fabric has finished the execution of `completion`, sent on a listen call
  // (which answers no message; the usual confirmation waits for later deliveries), then deletes
  // the calls it kept.
  static Task<void> ReleaseWhenApplied(Core* core, SharedCompletion completion);
  static Task<void> Dispatch(Core* core, std::shared_ptr<ExecutionState> execution,
                             std::shared_ptr<Context> context);
  // Records Deploy as an execution in the Fabric, then runs it unless it finished before.
  static Task<void> RecordAndLaunchDeploy(Core* core, std::shared_ptr<ExecutionState> deploy);
  // Whether execution `id` (of `instance`, `delegate`) exists and has finished.
  Task<absl::StatusOr<bool>> ExecutionFinished(const model::PerperInstance& instance,
                                               std::string delegate, std::string id);
  // Runs Init for the execution's instance if this process has not yet (on its strand).
  Task<absl::Status> EnsureInit(const std::shared_ptr<ExecutionState>& execution, Context& context);
  void CancelAll();

  // The contexts made by NewContext and not yet freed.
  struct LiveContexts {
    absl::Mutex mu;
    int count ABSL_GUARDED_BY(mu) = 0;
    bool None() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return count == 0; }
  };

  const Agent& agent_;
  const RunOptions options_;
  const std::shared_ptr<LiveContexts> contexts_ = std::make_shared<LiveContexts>();
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  Strand dispatch_strand_;
  std::unique_ptr<asio::signal_set> signals_;
  std::vector<std::thread> threads_;

  // One channel per Fabric address, made at Start and kept until the runtime ends.
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc2::FabricExecutions::Stub> executions;
    std::unique_ptr<grpc2::FabricInstances::Stub> instances;
    std::unique_ptr<grpc2::FabricStatesDictionary::Stub> dictionaries;
    std::unique_ptr<grpc2::FabricStatesList::Stub> lists;
    std::unique_ptr<grpc2::FabricStreams::Stub> streams;
    std::unique_ptr<grpc2::FabricIntrospection::Stub> introspection;
  };
  Endpoint& Current() { return *endpoints_[endpoint_.load()]; }
  std::vector<std::unique_ptr<Endpoint>> endpoints_;  // fixed after Start
  std::atomic<size_t> endpoint_{0};
  // The current ListenAndReserve call, and the ones it replaced (kept until the runtime ends,
  // since gRPC may still be returning from their OnDone).
  std::shared_ptr<ListenReactor> listen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<ListenReactor>> replaced_listens_ ABSL_GUARDED_BY(mu_);
  // Reconnecting the listen call; only touched on dispatch_strand_.
  Backoff listen_backoff_;
  // Set by the first answer of a listen call (on dispatch_strand_): later ones are reconnections.
  bool serving_ = false;
  asio::steady_timer reconnect_timer_;

  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<ExecutionState>> running_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Strand> strands_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<InstanceInit>> inits_ ABSL_GUARDED_BY(mu_);
  // Completions sent (on a listen call or by unary Complete) and not known applied, by
  // execution ID: if the Fabric delivers one of these executions (again), it is completed
  // again instead of run again.
  struct Unconfirmed {
    SharedCompletion completion;
    const ListenReactor* delivered_by = nullptr;  // the call that delivered the execution
  };
  std::map<std::string, Unconfirmed> unconfirmed_ ABSL_GUARDED_BY(mu_);
  int unary_completes_ ABSL_GUARDED_BY(mu_) = 0;  // unary Complete calls in flight
  // Unary calls in flight, so that stopping can cancel them and wait for their callbacks.
  uint64_t next_call_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::shared_ptr<grpc::ClientContext>> calls_ ABSL_GUARDED_BY(mu_);
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  int exit_code_ ABSL_GUARDED_BY(mu_) = 0;
  bool listen_done_ ABSL_GUARDED_BY(mu_) = false;
  bool waited_ = false;
  int waited_code_ = 0;
};

template <typename Request, typename Response, typename StartFn>
Task<absl::StatusOr<Response>> Core::Unary(Request request, StartFn start) {
  struct Attempt {
    std::shared_ptr<const Request> request;
    std::shared_ptr<grpc::ClientContext> context;
    Response response;
    Oneshot<grpc::Status> done;
  };
  auto state = co_await asio::this_coro::cancellation_state;
  auto shared_request = std::make_shared<const Request>(std::move(request));
  Backoff backoff;
  while (true) {
    if (state.cancelled() != asio::cancellation_type::none) {
      co_return absl::CancelledError("the calling execution was cancelled");
    }
    auto attempt = std::make_shared<Attempt>();
    attempt->context = NewContext();
    attempt->request = shared_request;
    // While the Fabric is unreachable (restarting), the call waits for it instead of failing.
    attempt->context->set_wait_for_ready(wait_for_ready());
    uint64_t id = AddCall(attempt->context);
    size_t endpoint = endpoint_index();
    auto slot = state.slot();
    if (slot.is_connected()) {
      slot.assign([attempt](asio::cancellation_type) { attempt->context->TryCancel(); });
    }
    start(attempt->context.get(), attempt->request.get(), &attempt->response,
          [this, attempt, id](grpc::Status status) {
            attempt->done.Set(std::move(status));
            RemoveCall(id);
          });
    grpc::Status status = co_await attempt->done.Wait();
    if (slot.is_connected()) {
      slot.clear();
    }
    if (status.ok()) {
      co_return std::move(attempt->response);
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || stopping()) {
      co_return FromGrpcStatus(status);
    }
    MoveFrom(endpoint);
    // The connection broke mid-call (the Fabric restarted). Every Fabric operation the SDK
    // makes is keyed by ID, so sending it again is safe; at worst an item is appended twice.
    auto timer = asio::steady_timer(co_await asio::this_coro::executor,
                                    absl::ToChronoMilliseconds(backoff.Next()));
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

}  // namespace perper::internal
