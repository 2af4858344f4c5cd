// SPDX-License-Identifier: MIT
#include "perper/fabric/executions_service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/values.h"
#include "perper/fabric/execution_calls.h"
#include "perper/fabric/feed_reactor.h"
#include "perper/fabric/finish_gate.h"
#include "perper/fabric/first_message_timer.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {

using grpc2::ExecutionsListenResponse;
using storage::Change;
using storage::ExecutionRecord;

namespace {

absl::Status CheckFilter(const grpc2::ExecutionsListenRequest& request, std::string_view field) {
  // No execution can have an empty agent, so an empty one would match nothing, ever.
  return RequireNonEmpty(request.instance_filter().agent(),
                         std::string(field) + "instance_filter.agent");
}

storage::ExecutionFilter FilterOf(const grpc2::ExecutionsListenRequest& request) {
  storage::ExecutionFilter filter;
  filter.agent = request.instance_filter().agent();
  filter.instance = request.instance_filter().instance();
  filter.delegate = request.delegate();
  return filter;
}

// Listen and ListenAndReserve: a FeedReactor each, which differ in how the call starts.
class ListenReactor final : public FeedReactor<grpc::ServerWriteReactor<ExecutionsListenResponse>> {
 public:
  ListenReactor(const ServiceContext& context, const grpc2::ExecutionsListenRequest& request)
      : FeedReactor(context) {
    if (!HasSlot("Listen")) return;
    absl::Status status = CheckRequestStrings(request, context.limits);
    if (status.ok()) status = CheckFilter(request, "");
    if (!status.ok()) {
      FinishOnce(ToGrpcStatus(status));
      return;
    }
    Begin(FilterOf(request), /*reserve=*/false, "");
  }
};

class ListenAndReserveReactor final
    : public FeedReactor<grpc::ServerBidiReactor<grpc2::ExecutionsListenAndReserveRequest,
                                                 ExecutionsListenResponse>> {
 public:
  explicit ListenAndReserveReactor(const ServiceContext& context) : FeedReactor(context) {
    if (!HasSlot("ListenAndReserve")) return;
    const absl::Duration timeout = context.limits.first_message_timeout;
    first_message_timer_.Arm(timeout, [this, timeout] {
      FinishOnce(ToGrpcStatus(absl::DeadlineExceededError(
          "no first message within " + absl::FormatDuration(timeout) +
          ": ListenAndReserve must open with a message carrying filter")));
    });
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    // Disarm returns after a running expiry; a first message that came too late is dropped.
    if (first_ && first_message_timer_.Disarm()) return;
    // !ok: the client half-closed (or the call broke, or a message did not parse). After the
    // first message, half-close does not end the call: the client may keep receiving;
    // cancellation or disconnection ends it (OnCancel).
    if (!ok) {
      if (first_) {
        FinishOnce(ToGrpcStatus(absl::InvalidArgumentError(
            "the first message of ListenAndReserve is missing or could not be parsed; it must "
            "carry filter")));
      }
      return;
    }
    if (absl::Status s = CheckRequestStrings(request_, context_.limits); !s.ok()) {
      FinishOnce(ToGrpcStatus(s));
      return;
    }
    std::vector<Completion> completions;
    completions.reserve(request_.completions_size());
    for (int i = 0; i < request_.completions_size(); ++i) {
      absl::StatusOr<Completion> completion = CompletionFromRequest(
          request_.completions(i), context_.limits, "completions[" + std::to_string(i) + "].");
      if (!completion.ok()) {
        FinishOnce(ToGrpcStatus(completion.status()));
        return;
      }
      completions.push_back(std::move(completion).value());
    }
    if (first_) {
      first_ = false;
      absl::Status status =
          request_.has_filter()
              ? CheckFilter(request_.filter(), "filter.")
              : absl::InvalidArgumentError("filter must be set in the first message");
      if (!status.ok()) {
        FinishOnce(ToGrpcStatus(status));
        return;
      }
      // Completions (a reconnecting worker's) before the scan, so it does not deliver them
      // again; credits first, so the scan can already be delivered before start_of_stream.
      CompleteThenCredit(std::move(completions), request_.reserve_next(),
                         /*inline_writes=*/true);
      grpc2::ExecutionsListenRequest filter = request_.filter();
      std::string workgroup = request_.workgroup();
      // One read outstanding, always: that is how further credits arrive.
      StartRead(&request_);
      Begin(FilterOf(filter), /*reserve=*/true, std::move(workgroup));
      return;
    }
    uint64_t credits = request_.reserve_next();
    StartRead(&request_);
    if (completions.empty()) {
      AddCredits(credits);
    } else {
      CompleteThenCredit(std::move(completions), credits, /*inline_writes=*/false);
    }
  }

 private:
  bool first_ = true;  // Only OnReadDone touches it, one at a time.
  grpc2::ExecutionsListenAndReserveRequest request_;
  FirstMessageTimer first_message_timer_;  // Its destructor waits for a running expiry.
};

// ---------------------------------------------------------------------------------------------
// Reserve: emits one Empty once (execution, workgroup) is held; holds it until the call ends.
class ReserveReactor final : public grpc::ServerWriteReactor<google::protobuf::Empty> {
 public:
  ReserveReactor(const ServiceContext& context, const grpc2::ExecutionsReserveRequest& request)
      : context_(context),
        execution_(request.execution().execution()),
        workgroup_(request.workgroup()),
        holder_(NewHolderId("reserve")),
        slot_(context.open_calls->TryOpen()) {
    absl::Status status = slot_ ? CheckRequestStrings(request, context.limits)
                                : context.open_calls->Refusal("Reserve");
    if (status.ok()) status = RequireNonEmpty(execution_, "execution.execution");
    if (!status.ok()) {
      FinishOnce(ToGrpcStatus(status));
      return;
    }
    // Every other hint, kResync included, may mean the reservation can be taken now.
    subscriber_ = std::make_shared<GuardedSubscriber>([this](const Change& change) {
      if (change.kind == Change::Kind::kReservationReleased && change.workgroup != workgroup_) {
        return;
      }
      Try();
    });
    subscription_ = context_.hub->Subscribe(Topic::kExecution, execution_, subscriber_);
    Try();
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> deferred;
    {
      absl::MutexLock lock(&mu_);
      deferred = gate_.WriteDone();
    }
    if (deferred.has_value()) {
      Finish(std::move(*deferred));
      return;
    }
    if (!ok) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "the client stream is broken"));
  }
  void OnCancel() override { FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    if (subscriber_ != nullptr) subscriber_->Close();
    subscription_.Reset();
    bool held;
    {
      absl::MutexLock lock(&mu_);
      held = held_;
    }
    if (held &&
        context_.store->executions().ReleaseReservation(execution_, workgroup_, holder_).ok()) {
      PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reservation released: its call ended",
                       execution_, holder_);
    }
    delete this;
  }

 private:
  void Try() {
    std::optional<grpc::Status> finish;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (gate_.finished()) return;
      auto& executions = context_.store->executions();
      absl::StatusOr<ExecutionRecord> record = executions.GetExecution(execution_);
      if (!record.ok()) {
        // Gone: before it was held that is NOT_FOUND; once held there is nothing left to hold.
        finish = held_ ? grpc::Status::OK : ToGrpcStatus(record.status());
      } else if (!held_) {
        if (record->finished) {
          finish = ToGrpcStatus(
              absl::FailedPreconditionError("execution " + execution_ + " is already finished"));
        } else {
          absl::StatusOr<bool> reserved = executions.TryReserve(execution_, workgroup_, holder_);
          if (!reserved.ok()) {
            finish = ToGrpcStatus(reserved.status());
          } else if (*reserved) {
            held_ = true;
            write = true;
            gate_.StartingWrite();
            PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reserved (workgroup '{}')",
                             execution_, holder_, workgroup_);
          }
        }
      }
      // The write decided by another Try may not be started yet: the gate keeps the finish.
      if (finish.has_value()) finish = gate_.Finish(*std::move(finish));
    }
    if (write) StartWrite(&empty_);
    if (finish.has_value()) Finish(*finish);
  }

  // Finishes the call once; while a write is in flight, OnWriteDone does (FinishGate).
  void FinishOnce(grpc::Status status) {
    std::optional<grpc::Status> now;
    {
      absl::MutexLock lock(&mu_);
      now = gate_.Finish(std::move(status));
    }
    if (now.has_value()) Finish(std::move(*now));
  }

  const ServiceContext context_;
  const std::string execution_;
  const std::string workgroup_;
  const std::string holder_;
  const OpenCalls::Slot slot_;
  std::shared_ptr<GuardedSubscriber> subscriber_;
  ChangeHub::Subscription subscription_;
  google::protobuf::Empty empty_;
  absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  FinishGate gate_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------------------------
// GetResult: a ResultWaiter answering a unary reactor.
class GetResultReactor final : public grpc::ServerUnaryReactor {
 public:
  GetResultReactor(const ServiceContext& context, const grpc2::ExecutionsGetResultRequest& request,
                   grpc2::ExecutionsGetResultResponse* response)
      : answer_(std::make_shared<Answer<grpc2::ExecutionsGetResultResponse>>(this, response)),
        slot_(context.open_calls->TryOpen()) {
    const std::string& id = request.execution().execution();
    absl::Status status = slot_ ? CheckRequestStrings(request, context.limits)
                                : context.open_calls->Refusal("GetResult");
    if (status.ok()) status = RequireNonEmpty(id, "execution.execution");
    if (!status.ok()) {
      answer_->Finish(status);
      return;
    }
    auto answer = answer_;
    waiter_ = ResultWaiter::Start(
        context, id, request.wait_for_creation(),
        [answer](grpc2::ExecutionsGetResultResponse result) { answer->Finish(std::move(result)); });
  }

  void OnCancel() override { answer_->Finish(absl::CancelledError("cancelled")); }
  void OnDone() override {
    if (waiter_ != nullptr) waiter_->Cancel();
    delete this;
  }

 private:
  std::shared_ptr<Answer<grpc2::ExecutionsGetResultResponse>> answer_;
  const OpenCalls::Slot slot_;
  std::shared_ptr<ResultWaiter> waiter_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::StatusOr<ExecutionRecord> RecordFromCreateRequest(
    const grpc2::ExecutionsCreateRequest& request, const FabricLimits& limits) {
  if (absl::Status s = RequireNonEmpty(request.execution().execution(), "execution.execution");
      !s.ok()) {
    return s;
  }
  const std::string& id = request.execution().execution();
  if (!request.has_instance()) {
    return absl::InvalidArgumentError("instance must be set (execution " + id + ")");
  }
  if (request.instance().agent().empty()) {
    return absl::InvalidArgumentError("instance.agent must not be empty (execution " + id + ")");
  }
  if (request.delegate().empty()) {
    return absl::InvalidArgumentError("delegate must not be empty (execution " + id + ")");
  }
  ExecutionRecord record;
  record.execution = id;
  record.agent = request.instance().agent();
  record.instance = request.instance().instance();
  record.delegate = request.delegate();
  for (int i = 0; i < request.arguments_size(); ++i) {
    if (absl::Status s = CheckValueSize(request.arguments(i), limits,
                                        "arguments[" + std::to_string(i) + "] of execution " + id);
        !s.ok()) {
      return s;
    }
    record.arguments.push_back(SerializeAny(request.arguments(i)));
  }
  return record;
}

void ReportLinkedStream(const std::string& execution, const absl::Status& stream) {
  if (stream.ok() || absl::IsNotFound(stream) || absl::IsFailedPrecondition(stream)) return;
  PERPER_LOG_WARN(Logger::kFabric, "[exec={} stream={}] linked stream not completed: {}", execution,
                  execution, stream.ToString());
}

void CompleteLinkedStream(const ServiceContext& context, const std::string& execution,
                          std::optional<std::string> error) {
  ReportLinkedStream(execution,
                     context.store->streams().CompleteStream(execution, std::move(error)));
}

grpc::ServerUnaryReactor* ExecutionsService::Create(grpc::CallbackServerContext* call,
                                                    const grpc2::ExecutionsCreateRequest* request,
                                                    google::protobuf::Empty* /*response*/) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  absl::StatusOr<ExecutionRecord> record = RecordFromCreateRequest(*request, context_.limits);
  if (!record.ok()) return FinishUnary(call, record.status());
  return AnswerWrite(context_, call,
                     [store = context_.store, record = std::move(record).value()]() mutable {
                       return store->executions().CreateExecution(std::move(record)).status();
                     });
}

grpc::ServerWriteReactor<ExecutionsListenResponse>* ExecutionsService::Listen(
    grpc::CallbackServerContext* /*context*/, const grpc2::ExecutionsListenRequest* request) {
  return new ListenReactor(context_, *request);
}

grpc::ServerBidiReactor<grpc2::ExecutionsListenAndReserveRequest, ExecutionsListenResponse>*
ExecutionsService::ListenAndReserve(grpc::CallbackServerContext* /*context*/) {
  return new ListenAndReserveReactor(context_);
}

grpc::ServerWriteReactor<google::protobuf::Empty>* ExecutionsService::Reserve(
    grpc::CallbackServerContext* /*context*/, const grpc2::ExecutionsReserveRequest* request) {
  return new ReserveReactor(context_, *request);
}

grpc::ServerUnaryReactor* ExecutionsService::Complete(
    grpc::CallbackServerContext* call, const grpc2::ExecutionsCompleteRequest* request,
    google::protobuf::Empty* /*response*/) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  absl::StatusOr<Completion> completion = CompletionFromRequest(*request, context_.limits, "");
  if (!completion.ok()) return FinishUnary(call, completion.status());
  return AnswerWrite(context_, call,
                     [call = context_, completion = std::move(completion).value()]() mutable {
                       return ApplyCompletion(call, std::move(completion));
                     });
}

grpc::ServerUnaryReactor* ExecutionsService::GetResult(
    grpc::CallbackServerContext* /*context*/, const grpc2::ExecutionsGetResultRequest* request,
    grpc2::ExecutionsGetResultResponse* response) {
  return new GetResultReactor(context_, *request, response);
}

grpc::ServerUnaryReactor* ExecutionsService::Delete(grpc::CallbackServerContext* call,
                                                    const grpc2::ExecutionsDeleteRequest* request,
                                                    google::protobuf::Empty* /*response*/) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& id = request->execution().execution();
  if (absl::Status s = RequireNonEmpty(id, "execution.execution"); !s.ok()) {
    return FinishUnary(call, s);
  }
  return AnswerWrite(context_, call, [call = context_, id]() {
    auto& executions = call.store->executions();
    bool finished_before = false;
    absl::StatusOr<bool> existed = executions.ReadExecution(
        id, [&](const ExecutionRecord& record) { finished_before = record.finished; });
    if (!existed.ok()) return existed.status();
    absl::StatusOr<bool> deleted = executions.DeleteExecution(id);
    if (!deleted.ok()) return deleted.status();
    // Deleting an unfinished producer cancels it; its consumers must not wait forever.
    if (*deleted && *existed && !finished_before) {
      CompleteLinkedStream(call, id, "execution " + id + " was deleted before it completed");
    }
    return absl::OkStatus();
  });
}

}  // namespace perper::fabric
