// SPDX-License-Identifier: MIT
// The connection of an agent process to the Fabric: one gRPC channel per Fabric address, the
// stubs, the contexts of calls, the registry of calls in flight, and unary calls with retries
// (like sdk/python/perper/connection.py). Not part of the public API.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <grpcpp/grpcpp.h>

#include "perper/agent/agent.h"
#include "perper/common/grpc_status.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace perper::internal {

// Whether a call that failed with `status` may succeed if made again once the Fabric is back
// (UNAVAILABLE after a restart, a cancelled stream at shutdown), as opposed to a refusal.
bool IsTransient(const grpc::Status& status);

// Exponential back-off of retried unary calls, the reservation call and stream readers: 50 ms
// growing x1.5 up to 2 s, each delay within 20 % either side, as in the Python and .NET SDKs
// (STYLE.md, "What the SDKs share"). Not thread-safe.
class Backoff {
 public:
  static constexpr absl::Duration kInitial = absl::Milliseconds(50);
  static constexpr absl::Duration kMax = absl::Seconds(2);
  static constexpr double kFactor = 1.5;
  static constexpr double kJitter = 0.2;

  absl::Duration Next();
  void Reset() { next_ = kInitial; }

 private:
  absl::Duration next_ = kInitial;
};

// The calls in flight (unary and streaming), by the context each was made with, so that stopping
// can cancel them and wait for their callbacks to have run. Owned by Connection.
// Thread-safe (mu_): calls start on coroutines and end on gRPC threads.
class CallRegistry {
 public:
  // Registers `context`; the returned ID removes it.
  uint64_t Add(std::shared_ptr<grpc::ClientContext> context);
  void Remove(uint64_t id);
  // Cancels the calls registered now. (TryCancel is called outside mu_: a cancelled call's
  // callback may run at once and remove itself.)
  void CancelAll();
  // Waits until no call is registered, or `deadline` passes; true when none is.
  bool AwaitEmpty(absl::Time deadline);
  size_t size();

 private:
  bool Empty() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return calls_.empty(); }

  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::shared_ptr<grpc::ClientContext>> calls_ ABSL_GUARDED_BY(mu_);
};

// The process's connection to the Fabric. Owned by Core (made before, and destroyed after, the
// other parts); coroutines hold it through Core until Core::Wait has stopped every thread.
// Thread-safe: the endpoints are fixed by Connect (before any call), the current address is an
// atomic, and the contexts and the call registry have their own mutexes.
class Connection {
 public:
  // `agent` and `options` (only read) and `io` outlive the connection.
  Connection(const Agent& agent, const RunOptions& options, asio::io_context& io);

  // Makes a channel and the stubs for each of `addresses` (parsed RunOptions::fabric_endpoint)
  // and picks the first address. REQUIRES: called once, before any call.
  void Connect(const std::vector<std::string>& addresses);

  // A unary call to the Fabric, resumed on the awaiting coroutine's executor (never on a gRPC
  // thread). `start(context, request, response, done)` starts the RPC through a stub's async()
  // interface. Cancelling the awaiting coroutine cancels the RPC; stopping the runtime cancels it.
  // UNAVAILABLE is retried with Backoff, at the next address, until
  // RunOptions::unary_retry_timeout has passed since the first attempt.
  //
  //   auto response = co_await connection.Unary<grpc2::StreamsCreateRequest,
  //                                             google::protobuf::Empty>(
  //       std::move(request), [&connection](auto* context, auto* req, auto* resp, auto done) {
  //         connection.streams()->async()->Create(context, req, resp, std::move(done));
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
  // Deletes each of `ids` (kept calls no longer needed) by DeleteExecutionDetached.
  void DeleteKeptCalls(std::vector<std::string> ids);
  // Beside a call of `agent` (execution `id`), or a start or destroy of an instance of `agent`
  // (`id` is the instance's): once RunOptions::unserved_check_after has
  // passed, asks the Fabric whether any process listens for `agent` and warns when none does.
  // Destroying the returned watch (the call was answered) ends it. Null when disabled.
  struct UnservedWatch {
    std::function<void()> end;
    ~UnservedWatch() {
      if (end) end();
    }
  };
  std::unique_ptr<UnservedWatch> WatchUnserved(std::string agent, std::string id);
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
  const std::string& address(size_t endpoint) const { return endpoints_[endpoint]->address; }

  // The index of the current Fabric address. A call notes it before starting, and on
  // UNAVAILABLE calls MoveFrom with it: the next attempts go to the next address (round robin),
  // unless another call has moved already.
  size_t endpoint_index() const { return endpoint_.load(); }
  void MoveFrom(size_t endpoint);
  // Whether calls wait for the Fabric to be reachable: with one address they wait (for it to
  // restart); with several, they fail at once so that the caller moves to another address.
  bool wait_for_ready() const { return endpoints_.size() == 1; }

  // A context for a call of this runtime. The connection outlives every one: a context holds
  // the channel, and the channel must not be released last by a context freed on a gRPC thread
  // after the call's callback (gRPC's callback threads would then be stopped from one of
  // themselves).
  std::shared_ptr<grpc::ClientContext> NewContext();
  // Waits (at most `timeout`) until every context made by NewContext has been freed; warns
  // naming how many are still held otherwise.
  void AwaitContextsFreed(absl::Duration timeout);

  // Registers a call's context, so that stopping cancels it and waits for it.
  uint64_t AddCall(std::shared_ptr<grpc::ClientContext> context) {
    return calls_.Add(std::move(context));
  }
  void RemoveCall(uint64_t id) { calls_.Remove(id); }
  CallRegistry& calls() { return calls_; }

  // Set once the runtime stops: failed calls are no longer retried, executions not completed.
  bool stopping() const { return stopping_.load(); }
  void SetStopping() { stopping_ = true; }

 private:
  // One channel per Fabric address, made by Connect and kept until the runtime ends.
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

  // The contexts made by NewContext and not yet freed (shared with their deleters).
  struct LiveContexts {
    absl::Mutex mu;
    int count ABSL_GUARDED_BY(mu) = 0;
    bool None() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return count == 0; }
  };

  const Agent& agent_;
  const RunOptions& options_;
  asio::io_context& io_;
  const std::shared_ptr<LiveContexts> contexts_ = std::make_shared<LiveContexts>();
  std::vector<std::unique_ptr<Endpoint>> endpoints_;  // fixed after Connect
  std::atomic<size_t> endpoint_{0};
  CallRegistry calls_;
  std::atomic<bool> stopping_{false};
};

template <typename Request, typename Response, typename StartFn>
Task<absl::StatusOr<Response>> Connection::Unary(Request request, StartFn start) {
  struct Attempt {
    std::shared_ptr<const Request> request;
    std::shared_ptr<grpc::ClientContext> context;
    Response response;
    Oneshot<grpc::Status> done;
  };
  auto state = co_await asio::this_coro::cancellation_state;
  auto shared_request = std::make_shared<const Request>(std::move(request));
  Backoff backoff;
  const absl::Time give_up = absl::Now() + absl::FromChrono(options_.unary_retry_timeout);
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
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || stopping() ||
        absl::Now() >= give_up) {
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
