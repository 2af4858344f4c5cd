// SPDX-License-Identifier: MIT
// Asynchronous building blocks shared by FabricExecutions and FabricInstances: waiting for an
// execution's result, making a whole call (create, wait, delete), and answering a unary
// callback reactor exactly once from whichever thread gets there first. None of them parks a
// thread: each waits on a ChangeHub subscription and re-reads the store on every hint.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/support/server_callback.h>

#include "perper/common/grpc_status.h"
#include "perper/fabric/change_hub.h"
#include "perper/fabric/service_context.h"
#include "perper/grpc2/executions.pb.h"
#include "perper/storage/store.h"

namespace perper::fabric {

// A random 64-bit value in hex, for IDs the Fabric makes ("Start-<hex>", holder IDs).
std::string RandomHex();

// The result of an execution as GetResult reports it: results, and error only when failed.
grpc2::ExecutionsGetResultResponse ResultOf(const storage::ExecutionRecord& record);

// A call's outcome for a log line: "2 results", "failed: <message>", "deleted".
std::string DescribeOutcome(const grpc2::ExecutionsGetResultResponse& response);

// Waits until an execution is finished or deleted, then calls `done` once with the response
// (deleted=true when it was deleted, or is absent and `wait_for_creation` is false). Subscribes
// before reading, so no change is missed. `done` may run on the calling thread (inside Start)
// or on the thread that made the change.
//
// Thread safety: Start and Cancel may be called from any thread. After Cancel returns, `done`
// is not started any more (a call already under way may still be running).
class ResultWaiter : public std::enable_shared_from_this<ResultWaiter> {
 public:
  using Done = std::function<void(grpc2::ExecutionsGetResultResponse)>;

  static std::shared_ptr<ResultWaiter> Start(const ServiceContext& context, std::string execution,
                                             bool wait_for_creation, Done done);
  // Start in two steps, for a caller that creates the execution in between: Subscribe before
  // the creation, Arm after it. Hints before Arm are held back (they may concern an earlier
  // execution of the same ID). Arm(fresh=true) says the caller has just created it, so no read
  // is needed unless a hint came meanwhile.
  static std::shared_ptr<ResultWaiter> Subscribe(const ServiceContext& context,
                                                 std::string execution, bool wait_for_creation,
                                                 Done done);
  void Arm(bool fresh);
  void Cancel();

  // Use Start.
  ResultWaiter(const ServiceContext& context, std::string execution, bool wait_for_creation,
               Done done)
      : context_(context),
        execution_(std::move(execution)),
        wait_for_creation_(wait_for_creation),
        done_(std::move(done)) {}

 private:
  void Check(const storage::Change* hint);

  const ServiceContext context_;
  const std::string execution_;
  const bool wait_for_creation_;
  absl::Mutex mu_;
  Done done_ ABSL_GUARDED_BY(mu_);          // Null once called or cancelled.
  bool seen_ ABSL_GUARDED_BY(mu_) = false;  // The execution was seen to exist.
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool hinted_while_unarmed_ ABSL_GUARDED_BY(mu_) = false;
  ChangeHub::Subscription subscription_ ABSL_GUARDED_BY(mu_);
};

// One whole call: creates `record`, waits for its result, deletes it, and reports the result
// (or the error of the creation). Cancel deletes the execution (the cancellation signal for
// its handler) and reports CANCELLED unless the result was already reported.
//
// Thread safety: as ResultWaiter.
class ExecutionCall : public std::enable_shared_from_this<ExecutionCall> {
 public:
  using Done = std::function<void(absl::StatusOr<grpc2::ExecutionsGetResultResponse>)>;

  static std::shared_ptr<ExecutionCall> Start(const ServiceContext& context,
                                              storage::ExecutionRecord record, Done done);
  void Cancel();

  ExecutionCall(const ServiceContext& context, std::string execution, Done done)
      : context_(context), execution_(std::move(execution)), done_(std::move(done)) {}

 private:
  void OnResult(grpc2::ExecutionsGetResultResponse response);

  const ServiceContext context_;
  const std::string execution_;
  absl::Mutex mu_;
  Done done_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<ResultWaiter> waiter_ ABSL_GUARDED_BY(mu_);
};

// Answers a unary callback reactor once. Whoever calls Finish first wins; later calls do
// nothing. After the reactor's OnDone the Answer may outlive it (it is shared with pending
// callbacks) but never touches it again, because OnDone comes only after Finish.
//
// Thread safety: thread-safe.
template <class Response>
class Answer {
 public:
  Answer(grpc::ServerUnaryReactor* reactor, Response* response)
      : reactor_(reactor), response_(response) {}

  bool Finish(absl::StatusOr<Response> result) {
    {
      absl::MutexLock lock(&mu_);
      if (done_) return false;
      done_ = true;
      if (result.ok()) *response_ = std::move(result).value();
    }
    // Not under mu_: gRPC may run reactions inline.
    reactor_->Finish(result.ok() ? grpc::Status::OK : ToGrpcStatus(result.status()));
    return true;
  }
  bool Finish(absl::Status status) { return Finish(absl::StatusOr<Response>(std::move(status))); }

 private:
  grpc::ServerUnaryReactor* const reactor_;
  Response* const response_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace perper::fabric
