// SPDX-License-Identifier: MIT
#include "perper/fabric/execution_calls.h"

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"

#include "perper/common/values.h"

namespace perper::fabric {

std::string RandomHex() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(engine()));
  return buffer;
}

grpc2::ExecutionsGetResultResponse ResultOf(const std::vector<std::string>& results,
                                            const std::optional<std::string>& error) {
  grpc2::ExecutionsGetResultResponse response;
  for (const std::string& result : results) *response.add_results() = ParseAny(result);
  if (error.has_value()) response.mutable_error()->set_message(*error);
  return response;
}

grpc2::ExecutionsGetResultResponse ResultOf(const storage::ExecutionRecord& record) {
  return ResultOf(record.results, record.error);
}

std::string DescribeOutcome(const grpc2::ExecutionsGetResultResponse& response) {
  if (response.deleted()) return "deleted";
  if (response.has_error() && !response.error().message().empty()) {
    return "failed: " + response.error().message();
  }
  return absl::StrCat(response.results_size(),
                      response.results_size() == 1 ? " result" : " results");
}

// ---------------------------------------------------------------------------------------------

std::shared_ptr<ResultWaiter> ResultWaiter::Start(const ServiceContext& context,
                                                  std::string execution, bool wait_for_creation,
                                                  Done done) {
  auto waiter = Subscribe(context, std::move(execution), wait_for_creation, std::move(done));
  waiter->Arm(/*fresh=*/false);
  return waiter;
}

std::shared_ptr<ResultWaiter> ResultWaiter::Subscribe(const ServiceContext& context,
                                                      std::string execution, bool wait_for_creation,
                                                      Done done) {
  auto waiter =
      std::make_shared<ResultWaiter>(context, execution, wait_for_creation, std::move(done));
  std::weak_ptr<ResultWaiter> weak = waiter;
  auto subscriber = std::make_shared<GuardedSubscriber>([weak](const storage::Change& change) {
    if (auto self = weak.lock()) self->Check(&change);
  });
  absl::MutexLock lock(&waiter->mu_);
  waiter->subscription_ =
      context.hub->Subscribe(Topic::kExecution, std::move(execution), std::move(subscriber));
  return waiter;
}

void ResultWaiter::Arm(bool fresh) {
  bool read = true;
  {
    absl::MutexLock lock(&mu_);
    armed_ = true;
    // A fresh execution is unfinished and every change after its creation is hinted, so only
    // a hint that came while unarmed calls for a read.
    if (fresh) {
      seen_ = true;
      read = hinted_while_unarmed_;
    }
  }
  // Read only after subscribing, so a change between the read and the subscription is not lost.
  if (read) Check(nullptr);
}

void ResultWaiter::Cancel() {
  ChangeHub::Subscription subscription;
  {
    absl::MutexLock lock(&mu_);
    done_ = nullptr;
    subscription = std::move(subscription_);
  }
}

void ResultWaiter::Check(const storage::Change* hint) {
  Done done;
  grpc2::ExecutionsGetResultResponse response;
  ChangeHub::Subscription subscription;
  {
    absl::MutexLock lock(&mu_);
    if (done_ == nullptr) return;
    // A creation is never finished: the completion that follows has a hint of its own.
    const bool created = hint != nullptr && hint->kind == storage::Change::Kind::kExecutionCreated;
    if (!armed_) {
      // The caller is still creating the execution: a hint now may be about an earlier
      // execution of the same ID. Arm reads once instead.
      if (!created) hinted_while_unarmed_ = true;
      return;
    }
    if (created) {
      seen_ = true;
      return;
    }
    // A hint about the execution itself proves it existed. A resync proves nothing: it only
    // asks for a read, and an absent execution may still be about to be created.
    if (hint != nullptr && hint->kind != storage::Change::Kind::kReservationReleased &&
        hint->kind != storage::Change::Kind::kResync) {
      seen_ = true;
    }
    bool finished = false;
    absl::StatusOr<bool> found = true;
    if (hint != nullptr && hint->outcome != nullptr) {
      // Completed by this process, with the outcome attached: no need to read it back.
      finished = true;
      response = ResultOf(hint->outcome->results, hint->outcome->error);
    } else {
      found = context_.store->executions().ReadExecution(
          execution_, [&](const storage::ExecutionRecord& record) {
            if (!record.finished) return;
            finished = true;
            response = ResultOf(record);
          });
    }
    // A read that failed (the store is unreachable) waits for the next hint; a remote store
    // sends every waiter a resync once it is reachable again.
    if (!found.ok()) return;
    if (*found) {
      seen_ = true;
      if (!finished) return;
    } else {
      if (wait_for_creation_ && !seen_) return;
      response.set_deleted(true);
    }
    done = std::move(done_);
    done_ = nullptr;
    // Unsubscribe before `done` runs: it may change this very execution (delete it), and the
    // hub must not deliver that change back into this subscriber while it is still running.
    subscription = std::move(subscription_);
  }
  subscription.Reset();
  done(std::move(response));
}

// ---------------------------------------------------------------------------------------------

std::shared_ptr<ExecutionCall> ExecutionCall::Start(const ServiceContext& context,
                                                    storage::ExecutionRecord record, Done done) {
  std::string id = record.execution;
  auto call = std::make_shared<ExecutionCall>(context, id, std::move(done));
  // Subscribed before the creation, so that a fresh execution needs no read: its completion
  // is hinted whenever it comes.
  auto waiter = ResultWaiter::Subscribe(
      context, id, /*wait_for_creation=*/false,
      [call](grpc2::ExecutionsGetResultResponse response) { call->OnResult(std::move(response)); });
  {
    absl::MutexLock lock(&call->mu_);
    call->waiter_ = waiter;
  }
  absl::StatusOr<bool> created = context.store->executions().CreateExecution(std::move(record));
  if (!created.ok()) {
    waiter->Cancel();
    Done report;
    {
      absl::MutexLock lock(&call->mu_);
      report = std::move(call->done_);
      call->done_ = nullptr;
      call->waiter_ = nullptr;
    }
    if (report) report(created.status());
    return call;
  }
  waiter->Arm(/*fresh=*/*created);
  return call;
}

void ExecutionCall::OnResult(grpc2::ExecutionsGetResultResponse response) {
  Done done;
  {
    absl::MutexLock lock(&mu_);
    done = std::move(done_);
    done_ = nullptr;
    waiter_ = nullptr;  // Breaks the cycle call -> waiter -> callback -> call.
  }
  if (!done) return;
  (void)context_.store->executions().DeleteExecution(execution_);
  done(std::move(response));
}

void ExecutionCall::Cancel() {
  Done done;
  std::shared_ptr<ResultWaiter> waiter;
  {
    absl::MutexLock lock(&mu_);
    done = std::move(done_);
    done_ = nullptr;
    waiter = std::move(waiter_);
  }
  if (waiter != nullptr) waiter->Cancel();
  if (!done) return;  // Already reported: the execution is gone or was never made.
  (void)context_.store->executions().DeleteExecution(execution_);
  done(absl::CancelledError("call of execution " + execution_ + " was cancelled"));
}

}  // namespace perper::fabric
