// SPDX-License-Identifier: MIT
// Client-side helpers for the executions, reservations and instances tests: request builders,
// a Listen / ListenAndReserve reader, and a small in-test agent that serves executions over
// ListenAndReserve the way an SDK would.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include <gtest/gtest.h>

#include "tests/support/fabric_fixture.h"

namespace perper::testing {

inline grpc2::ExecutionsCreateRequest CreateRequest(const std::string& id, const std::string& agent,
                                                    const std::string& instance,
                                                    const std::string& delegate,
                                                    std::vector<google::protobuf::Any> args = {}) {
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution(id);
  request.mutable_instance()->set_agent(agent);
  request.mutable_instance()->set_instance(instance);
  request.set_delegate(delegate);
  for (auto& a : args) *request.add_arguments() = std::move(a);
  return request;
}

inline grpc::Status CreateExecution(grpc2::FabricExecutions::Stub& stub, const std::string& id,
                                    const std::string& agent, const std::string& instance,
                                    const std::string& delegate,
                                    std::vector<google::protobuf::Any> args = {}) {
  google::protobuf::Empty empty;
  return stub.Create(Context().get(), CreateRequest(id, agent, instance, delegate, std::move(args)),
                     &empty);
}

inline grpc::Status CompleteExecution(grpc2::FabricExecutions::Stub& stub, const std::string& id,
                                      std::vector<google::protobuf::Any> results = {},
                                      const std::string& error = "") {
  grpc2::ExecutionsCompleteRequest request;
  request.mutable_execution()->set_execution(id);
  for (auto& r : results) *request.add_results() = std::move(r);
  if (!error.empty()) request.mutable_error()->set_message(error);
  google::protobuf::Empty empty;
  return stub.Complete(Context().get(), request, &empty);
}

inline grpc::Status DeleteExecution(grpc2::FabricExecutions::Stub& stub, const std::string& id) {
  grpc2::ExecutionsDeleteRequest request;
  request.mutable_execution()->set_execution(id);
  google::protobuf::Empty empty;
  return stub.Delete(Context().get(), request, &empty);
}

// A Listen call. Read() blocks until the next message (or the call's 10 s deadline).
class ListenCall {
 public:
  ListenCall(grpc2::FabricExecutions::Stub& stub, const std::string& agent,
             const std::string& instance = "", const std::string& delegate = "")
      : context_(Context()) {
    grpc2::ExecutionsListenRequest request;
    request.mutable_instance_filter()->set_agent(agent);
    request.mutable_instance_filter()->set_instance(instance);
    request.set_delegate(delegate);
    reader_ = stub.Listen(context_.get(), request);
  }
  ~ListenCall() {
    if (finished_) return;
    context_->TryCancel();
    grpc2::ExecutionsListenResponse ignored;
    while (reader_->Read(&ignored)) {
    }
    (void)reader_->Finish();
  }
  bool Read(grpc2::ExecutionsListenResponse* response) { return reader_->Read(response); }
  // Reads until start_of_stream, returning the execution IDs before it.
  std::vector<std::string> ReadInitial() {
    std::vector<std::string> ids;
    grpc2::ExecutionsListenResponse response;
    while (Read(&response) && !response.start_of_stream()) {
      ids.push_back(response.execution().execution());
    }
    return ids;
  }
  grpc::Status Finish() {
    finished_ = true;
    return reader_->Finish();
  }
  grpc::ClientContext& context() { return *context_; }

 private:
  bool finished_ = false;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<grpc2::ExecutionsListenResponse>> reader_;
};

// A ListenAndReserve call driven by the test.
class ReserveCall {
 public:
  ReserveCall(grpc2::FabricExecutions::Stub& stub, const std::string& agent, uint64_t credits,
              const std::string& workgroup = "", const std::string& delegate = "",
              const std::string& instance = "")
      : context_(Context()) {
    stream_ = stub.ListenAndReserve(context_.get());
    grpc2::ExecutionsListenAndReserveRequest first;
    first.mutable_filter()->mutable_instance_filter()->set_agent(agent);
    first.mutable_filter()->mutable_instance_filter()->set_instance(instance);
    first.mutable_filter()->set_delegate(delegate);
    first.set_workgroup(workgroup);
    first.set_reserve_next(credits);
    // May fail when the Fabric rejects the call at once; Read then reports the status.
    (void)stream_->Write(first);
  }
  ~ReserveCall() { Cancel(); }
  bool Read(grpc2::ExecutionsListenResponse* response) { return stream_->Read(response); }
  // The next execution, skipping start_of_stream; "" when the call ended.
  std::string NextExecution() {
    grpc2::ExecutionsListenResponse response;
    while (Read(&response)) {
      if (!response.start_of_stream()) return response.execution().execution();
    }
    return "";
  }
  // Reads the start_of_stream that follows an empty initial scan: the call is then live.
  void ExpectStart() {
    grpc2::ExecutionsListenResponse response;
    ASSERT_TRUE(Read(&response));
    ASSERT_TRUE(response.start_of_stream()) << response.execution().execution();
  }
  bool Write(const grpc2::ExecutionsListenAndReserveRequest& request) {
    return stream_->Write(request);
  }
  bool Grant(uint64_t credits) {
    grpc2::ExecutionsListenAndReserveRequest request;
    request.set_reserve_next(credits);
    return stream_->Write(request);
  }
  // Cancels without reading (for when another thread is reading).
  void TryCancel() { context_->TryCancel(); }
  // Ends the call unless Finish() was called already.
  void Cancel() {
    if (done_) return;
    done_ = true;
    context_->TryCancel();
    grpc2::ExecutionsListenResponse ignored;
    while (stream_->Read(&ignored)) {
    }
    (void)stream_->Finish();
  }
  grpc::Status Finish() {
    done_ = true;
    return stream_->Finish();
  }
  grpc::ClientReaderWriter<grpc2::ExecutionsListenAndReserveRequest,
                           grpc2::ExecutionsListenResponse>&
  stream() {
    return *stream_;
  }

 private:
  bool done_ = false;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<grpc2::ExecutionsListenAndReserveRequest,
                                           grpc2::ExecutionsListenResponse>>
      stream_;
};

// A small agent: serves every execution of `agent` (any instance and delegate) on its own
// channel over ListenAndReserve, completing each with what `handler` returns (results, error).
class TestAgent {
 public:
  struct Outcome {
    std::vector<google::protobuf::Any> results;
    std::string error;
  };
  using Handler = std::function<Outcome(const grpc2::ExecutionsListenResponse&)>;

  TestAgent(std::shared_ptr<grpc::Channel> channel, std::string agent, Handler handler)
      : stub_(grpc2::FabricExecutions::NewStub(channel)),
        agent_(std::move(agent)),
        handler_(std::move(handler)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    thread_ = std::thread([this] { Run(); });
    (void)ready_.WaitForNotificationWithTimeout(absl::Seconds(10));
  }
  ~TestAgent() {
    context_.TryCancel();
    thread_.join();
  }
  // Every execution delivered so far, in order ("-deleted" appended for deleted signals).
  std::vector<std::string> Seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  void Run() {
    auto stream = stub_->ListenAndReserve(&context_);
    grpc2::ExecutionsListenAndReserveRequest first;
    first.mutable_filter()->mutable_instance_filter()->set_agent(agent_);
    first.set_reserve_next(16);
    stream->Write(first);
    grpc2::ExecutionsListenResponse response;
    while (stream->Read(&response)) {
      if (response.start_of_stream()) {
        ready_.Notify();
        continue;
      }
      {
        absl::MutexLock lock(&mu_);
        seen_.push_back(response.execution().execution() + (response.deleted() ? "-deleted" : ""));
      }
      if (response.deleted()) continue;
      Outcome outcome = handler_(response);
      grpc2::ExecutionsCompleteRequest complete;
      complete.mutable_execution()->set_execution(response.execution().execution());
      for (auto& r : outcome.results) *complete.add_results() = std::move(r);
      if (!outcome.error.empty()) complete.mutable_error()->set_message(outcome.error);
      google::protobuf::Empty empty;
      grpc::ClientContext context;
      (void)stub_->Complete(&context, complete, &empty);
      grpc2::ExecutionsListenAndReserveRequest more;
      more.set_reserve_next(1);
      stream->Write(more);
    }
    if (!ready_.HasBeenNotified()) ready_.Notify();
    (void)stream->Finish();
  }

  std::unique_ptr<grpc2::FabricExecutions::Stub> stub_;
  std::string agent_;
  Handler handler_;
  grpc::ClientContext context_;
  absl::Notification ready_;
  absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace perper::testing
