// SPDX-License-Identifier: MIT
#include "perper/fabric/executions_service.h"

#include <atomic>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/values.h"
#include "perper/fabric/execution_calls.h"
#include "perper/fabric/first_message_timer.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {

using grpc2::ExecutionsListenResponse;
using storage::Change;
using storage::ExecutionRecord;

namespace {

// Debian's abseil has its own string_view; heterogeneous lookups take that one.
absl::string_view Key(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Unique per call across Fabric processes sharing a store: a process-random prefix and a count.
std::string NewHolderId(std::string_view kind) {
  static const std::string process = RandomHex();
  static std::atomic<uint64_t> next{1};
  return std::string(kind) + "-" + process + "-" + std::to_string(next.fetch_add(1));
}

ExecutionsListenResponse ToListenResponse(const ExecutionRecord& record) {
  ExecutionsListenResponse response;
  response.mutable_execution()->set_execution(record.execution);
  response.mutable_instance()->set_instance(record.instance);
  response.mutable_instance()->set_agent(record.agent);
  response.set_delegate(record.delegate);
  for (const std::string& argument : record.arguments)
    *response.add_arguments() = ParseAny(argument);
  return response;
}

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

// A checked completion: what Complete and ListenAndReserve's `completions` apply.
struct Completion {
  std::string id;
  std::vector<std::string> results;  // Serialized Anys.
  std::optional<std::string> error;
};

// Checks a completion request (`field` prefixes the names in error messages, e.g.
// "completions[2].").
absl::StatusOr<Completion> CompletionFromRequest(const grpc2::ExecutionsCompleteRequest& request,
                                                 const FabricLimits& limits,
                                                 std::string_view field) {
  Completion completion;
  completion.id = request.execution().execution();
  if (absl::Status s = RequireNonEmpty(completion.id, std::string(field) + "execution.execution");
      !s.ok()) {
    return s;
  }
  const std::string& id = completion.id;
  completion.results.reserve(request.results_size());
  for (int i = 0; i < request.results_size(); ++i) {
    if (absl::Status s = CheckValueSize(request.results(i), limits,
                                        std::string(field) + "results[" + std::to_string(i) +
                                            "] of execution " + id);
        !s.ok()) {
      return s;
    }
    completion.results.push_back(SerializeAny(request.results(i)));
  }
  // An absent error and an empty message both mean success (upstream clients send either).
  // Its length was checked with the request's strings (max_error_bytes).
  if (request.has_error() && !request.error().message().empty()) {
    completion.error = request.error().message();
  }
  return completion;
}

// Stores the completion, then completes the execution's linked stream.
absl::Status ApplyCompletion(const ServiceContext& context, Completion completion) {
  absl::Status status = context.store->executions().CompleteExecution(
      completion.id, std::move(completion.results), completion.error);
  if (status.ok()) CompleteLinkedStream(context, completion.id, std::move(completion.error));
  return status;
}

// ---------------------------------------------------------------------------------------------
// The feed behind Listen and ListenAndReserve.
//
// Hints for the filter's agent put execution IDs on a queue; the queue is drained one write at a
// time, and each ID is reconciled against the store: what this call has delivered (ID and the
// sequence of the incarnation) versus what the store holds now. That yields at most one message
// per step (the execution, or deleted=true), and after "deleted" the ID is reconciled again, so
// a deleted-then-recreated ID gives "deleted" and then the new execution. Hints are only hints:
// duplicates, stale ones and reordered ones all reconcile to the right messages; and when some
// may have been lost (kResync), everything the call could have missed is reconciled again.
//
// With reservation, an execution is delivered only when a credit is left and TryReserve
// succeeds; IDs without credit wait in `starved_` until the client grants more, IDs held by
// another member wait in `waiting_` until a kReservationReleased hint for our workgroup.
//
// Thread safety: state is guarded by mu_; StartWrite and Finish are called outside it.
template <class Base>
class FeedReactor : public Base {
 protected:
  explicit FeedReactor(const ServiceContext& context)
      : context_(context), call_(NewHolderId("listen")), slot_(context.open_calls->TryOpen()) {}

  // Finishes with RESOURCE_EXHAUSTED when no open-call slot was free; then returns false.
  bool HasSlot(const std::string& what) {
    if (slot_) return true;
    FinishOnce(ToGrpcStatus(context_.open_calls->Refusal(what)));
    return false;
  }

  // Subscribes, scans, and starts delivering. REQUIRES: called once.
  void Begin(storage::ExecutionFilter filter, bool reserve, std::string workgroup) {
    {
      absl::MutexLock lock(&mu_);
      filter_ = filter;
      reserve_ = reserve;
      workgroup_ = std::move(workgroup);
      if (reserve_) holder_ = call_;
      scanning_ = true;
      begun_ = true;
    }
    // Counted from before the scan: an execution created from now on has a process that
    // serves it (ListAgentListeners).
    listener_ = context_.listeners->Open(filter.agent, reserve);
    PERPER_LOG_DEBUG(Logger::kFabric, "[call={} agent={}] {} opened{}{}{}", call_, filter.agent,
                     reserve ? "ListenAndReserve" : "Listen",
                     filter.instance.empty() ? "" : " for instance " + filter.instance,
                     filter.delegate.empty() ? "" : " for delegate " + filter.delegate,
                     reserve ? " (workgroup '" + workgroup_ + "')" : "");
    subscriber_ =
        std::make_shared<GuardedSubscriber>([this](const Change& change) { OnHint(change); });
    // Subscribe before scanning: an execution created during the scan is then either in the
    // scan or in a buffered hint (or both; reconciling deduplicates).
    subscription_ = context_.hub->Subscribe(Topic::kAgentExecutions, filter.agent, subscriber_);
    // IDs only: each is read when its turn comes (Reconcile).
    absl::StatusOr<std::vector<std::string>> existing =
        context_.store->executions().ListExecutionIds(filter, std::numeric_limits<size_t>::max());
    if (!existing.ok()) {
      FinishOnce(ToGrpcStatus(existing.status()));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      std::deque<Entry> queue;
      for (std::string& id : *existing)
        queue.push_back({std::move(id)});
      queue.push_back({"", /*marker=*/true});
      for (Entry& entry : queue_)
        queue.push_back(std::move(entry));
      queue_ = std::move(queue);
      scanning_ = false;
      started_ = true;
    }
    Pump();
  }

  void AddCredits(uint64_t credits) {
    {
      absl::MutexLock lock(&mu_);
      if (credits == 0) return;
      credits_ = credits_ > std::numeric_limits<uint64_t>::max() - credits
                     ? std::numeric_limits<uint64_t>::max()
                     : credits_ + credits;
    }
    Pump();
  }

  // Finishes the call once. A write that Pump decided on may not have been started yet (it
  // calls StartWrite after releasing mu_), and StartWrite after Finish would have gRPC end the
  // call twice; so while a write is in flight, OnWriteDone finishes instead.
  void FinishOnce(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      end_ = status.ok() ? "ended" : "ended: " + FromGrpcStatus(status).ToString();
      if (writing_) {
        deferred_finish_ = std::move(status);
        return;
      }
    }
    this->Finish(std::move(status));
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> deferred;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      deferred.swap(deferred_finish_);
    }
    if (deferred.has_value()) {
      this->Finish(std::move(*deferred));
      return;
    }
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "the client stream is broken"));
      return;
    }
    Pump();
  }

  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED,
                            "cancelled by the client, or its connection was lost"));
  }

  void OnDone() override {
    // Close first: after Close no hint runs, so nothing touches this object any more.
    if (subscriber_ != nullptr) subscriber_->Close();
    subscription_.Reset();
    listener_.Reset();
    std::vector<std::string> held;
    std::string workgroup, holder, agent, end;
    bool begun = false;
    {
      absl::MutexLock lock(&mu_);
      if (reserve_) {
        for (const auto& [id, delivered] : delivered_)
          held.push_back(id);
        workgroup = workgroup_;
        holder = holder_;
      }
      agent = filter_.agent;
      end = end_;
      begun = begun_;
    }
    if (begun) {
      PERPER_LOG_DEBUG(Logger::kFabric,
                       "[call={} agent={}] listen call {}; {} reservations released", call_, agent,
                       end, held.size());
    }
    // Other members of the workgroup get these executions at once (at-least-once delivery).
    // A release that fails (the store is unreachable) is not retried: a remote store's
    // reservations end with the lease of this process instead.
    for (const std::string& id : held) {
      if (context_.store->executions().ReleaseReservation(id, workgroup, holder).ok()) {
        PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reservation released: its call ended",
                         id, call_);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      if (tasks_ > 0) return;  // The last completion task deletes this.
    }
    delete this;
  }

  // Applies completions sent on this call, then grants `credits`: inline with the memory
  // backend (or when `inline_writes`), on the write pool with a durable one, so that an fsync
  // never holds a gRPC thread. The reactor outlives its pool tasks (OnDone defers the delete).
  void CompleteThenCredit(std::vector<Completion> completions, uint64_t credits,
                          bool inline_writes) {
    {
      absl::MutexLock lock(&mu_);
      for (const Completion& completion : completions) {
        if (auto it = delivered_.find(Key(completion.id)); it != delivered_.end()) {
          it->second.completed_here = true;
        }
      }
      if (context_.writes != nullptr && !inline_writes) ++tasks_;
    }
    auto apply = [this, completions = std::move(completions), credits]() mutable {
      for (Completion& completion : completions) {
        std::string id = completion.id;
        absl::Status status = ApplyCompletion(context_, std::move(completion));
        // Deleted or finished already: a benign race with a cancellation or a retry.
        bool settled = status.ok() || absl::IsNotFound(status) ||
                       absl::IsFailedPrecondition(status);
        if (!settled) {
          PERPER_LOG_WARN(Logger::kFabric, "[exec={}] completion on the reservation stream: {}",
                          id, status.ToString());
        }
        absl::MutexLock lock(&mu_);
        if (auto it = delivered_.find(Key(id)); it != delivered_.end()) {
          // Settled: nothing more to say about it. Not settled: it stays reserved by this call
          // until the call ends, and is then handed to another member.
          if (settled) {
            Forget(it);
          } else {
            it->second.completed_here = false;
          }
        }
      }
      AddCredits(credits);
    };
    if (context_.writes == nullptr || inline_writes) {
      apply();
      return;
    }
    context_.writes->Post([this, apply = std::move(apply)]() mutable {
      apply();
      bool remove = false;
      {
        absl::MutexLock lock(&mu_);
        remove = --tasks_ == 0 && done_;
      }
      if (remove) delete this;
    });
  }

  const ServiceContext context_;
  const std::string call_;  // This call's ID in logs, and its reservations' holder.

 private:
  const OpenCalls::Slot slot_;
  struct Entry {
    std::string id;
    bool marker = false;  // start_of_stream
  };
  // What a deletion message needs of an execution delivered on this call. The agent is the
  // filter's; instance and delegate are indexes into `names_`, since a call's executions share
  // a few of them: a delivered execution costs this call its ID and 16 bytes.
  struct Delivered {
    uint64_t sequence;
    uint32_t instance, delegate;
    // Completed on this call (being applied): no deleted=true for it.
    bool completed_here = false;
  };
  // The instances and delegates of the delivered executions, each once, counted.
  struct Name {
    std::string value;
    uint32_t refs = 0;
  };

  uint32_t Intern(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto [it, inserted] = name_index_.try_emplace(name, 0);
    if (inserted) {
      if (free_names_.empty()) {
        it->second = static_cast<uint32_t>(names_.size());
        names_.emplace_back();
      } else {
        it->second = free_names_.back();
        free_names_.pop_back();
      }
      names_[it->second] = {name, 0};
    }
    ++names_[it->second].refs;
    return it->second;
  }
  void Release(uint32_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Name& name = names_[index];
    if (--name.refs > 0) return;
    name_index_.erase(name.value);
    name.value = std::string();
    free_names_.push_back(index);
  }
  void Forget(typename absl::flat_hash_map<std::string, Delivered>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Release(it->second.instance);
    Release(it->second.delegate);
    delivered_.erase(it);
  }

  void Enqueue(std::string id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.push_back({std::move(id)});
  }

  void OnHint(const Change& change) {
    if (change.kind == Change::Kind::kResync) {
      Resync();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      switch (change.kind) {
        case Change::Kind::kExecutionCreated:
          if (delivered_.contains(Key(change.id)) ||
              ((filter_.instance.empty() || change.instance == filter_.instance) &&
               (filter_.delegate.empty() || change.delegate == filter_.delegate))) {
            Enqueue(change.id);
          }
          break;
        case Change::Kind::kExecutionDeleted:
          if (delivered_.contains(Key(change.id))) Enqueue(change.id);
          waiting_.erase(Key(change.id));
          break;
        case Change::Kind::kReservationReleased:
          if (reserve_ && change.workgroup == workgroup_ && waiting_.erase(Key(change.id)) > 0) {
            // Older than every execution still waiting for a credit (this call passed it on
            // the way to them), so it goes first: a dead member's work is taken up at once.
            starved_.push_front(change.id);
          }
          break;
        case Change::Kind::kExecutionCompleted:
          // Completion is not signalled on Listen; a finished execution is never dispatched.
          waiting_.erase(Key(change.id));
          break;
        default:
          break;
      }
    }
    Pump();
  }

  // Hints may have been lost: reconcile everything this call could have missed, as the start
  // did. The delivered executions (any may have been deleted or re-created unseen), the ones
  // held by another member (the release may be the lost hint), and the filter's executions
  // now in the store. Reconciling drops what was delivered already, so nothing goes twice.
  void Resync() {
    storage::ExecutionFilter filter;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      filter = filter_;
    }
    // Listed outside mu_, as the first scan: a listing of many executions must not stall
    // deliveries. A change during it is in the listing or in a hint after this one.
    absl::StatusOr<std::vector<std::string>> listed =
        context_.store->executions().ListExecutionIds(filter, std::numeric_limits<size_t>::max());
    if (!listed.ok()) {
      // As at the start: the call ends with the store's status, and its client reconnects.
      FinishOnce(ToGrpcStatus(listed.status()));
      return;
    }
    std::vector<std::string> ids = std::move(listed).value();
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      // Already pending (queued or waiting for a credit): no second entry.
      absl::flat_hash_set<std::string> pending(starved_.begin(), starved_.end());
      for (const Entry& entry : queue_) {
        if (!entry.marker) pending.insert(entry.id);
      }
      for (const auto& [id, delivered] : delivered_) ids.push_back(id);
      ids.insert(ids.end(), waiting_.begin(), waiting_.end());
      waiting_.clear();  // Reconcile puts back those still held by another member.
      for (std::string& id : ids) {
        if (pending.insert(id).second) Enqueue(std::move(id));
      }
    }
    Pump();
  }

  // The next message for `id`, if any; updates what this call has delivered.
  std::optional<ExecutionsListenResponse> Reconcile(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto& executions = context_.store->executions();
    if (auto it = delivered_.find(Key(id)); it != delivered_.end()) {
      if (it->second.completed_here) return std::nullopt;  // Forgotten once applied.
      uint64_t sequence = 0;
      absl::StatusOr<bool> found = executions.ReadExecution(
          id, [&](const ExecutionRecord& record) { sequence = record.sequence; });
      if (!found.ok()) return Fail(found.status());
      if (*found && sequence == it->second.sequence) return std::nullopt;
      ExecutionsListenResponse response;
      response.mutable_execution()->set_execution(id);
      response.mutable_instance()->set_instance(names_[it->second.instance].value);
      response.mutable_instance()->set_agent(filter_.agent);
      response.set_delegate(names_[it->second.delegate].value);
      response.set_deleted(true);
      Forget(it);
      return response;
    }
    // Without a credit there is nothing to decide yet: the ID waits, unread, until one comes.
    // (Reading it now would cost a store read per waiting execution per credit.)
    if (reserve_ && credits_ == 0) {
      starved_.push_back(id);
      return std::nullopt;
    }
    std::optional<ExecutionsListenResponse> response;
    uint64_t sequence = 0;
    auto visit = [&](const ExecutionRecord& record) {
      response = ToListenResponse(record);
      sequence = record.sequence;
    };
    if (reserve_) {
      using Outcome = storage::ExecutionStore::ReserveOutcome;
      absl::StatusOr<Outcome> outcome =
          executions.ReadAndReserve(id, filter_, workgroup_, holder_, visit);
      if (!outcome.ok()) return Fail(outcome.status());
      if (*outcome == Outcome::kSkipped) return std::nullopt;
      if (*outcome == Outcome::kHeldByOther) {
        waiting_.insert(id);
        return std::nullopt;
      }
      --credits_;
      PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reserved: {}.{} on instance {}", id,
                       call_, response->instance().agent(), response->delegate(),
                       response->instance().instance());
    } else {
      absl::StatusOr<bool> found = executions.ReadExecution(id, [&](const ExecutionRecord& record) {
        if (!record.finished && storage::Matches(filter_, record)) visit(record);
      });
      if (!found.ok()) return Fail(found.status());
      if (!response.has_value()) return std::nullopt;
    }
    delivered_[id] = {sequence, Intern(response->instance().instance()),
                      Intern(response->delegate())};
    return response;
  }

  // Starts the next write if none is in flight. IDs that found no credit go first, in the order
  // they came, as soon as there is a credit.
  void Pump() {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (finished_ || writing_ || !started_) return;
        Entry entry;
        if (reserve_ && credits_ > 0 && !starved_.empty()) {
          entry.id = std::move(starved_.front());
          starved_.pop_front();
        } else if (!queue_.empty()) {
          entry = std::move(queue_.front());
          queue_.pop_front();
        } else {
          return;
        }
        if (entry.marker) {
          response_.Clear();
          response_.set_start_of_stream(true);
        } else {
          std::optional<ExecutionsListenResponse> message = Reconcile(entry.id);
          if (!message.has_value()) {
            if (!failure_.ok()) break;
            continue;
          }
          response_ = std::move(*message);
          // After "deleted", the same ID may hold a new execution to deliver next. After an
          // execution, a later change to it comes with a hint of its own (or a resync): reading
          // it again would cost every delivery a second store read.
          if (response_.deleted()) queue_.push_front(std::move(entry));
        }
        writing_ = true;
      }
      this->StartWrite(&response_);
      return;
    }
    // Only a store failure leaves the loop: the call ends with it, and the client reconnects.
    absl::Status failure;
    {
      absl::MutexLock lock(&mu_);
      failure = failure_;
    }
    FinishOnce(ToGrpcStatus(failure));
  }

  // Records a store failure for Pump to end the call with; returns nothing to deliver.
  std::optional<ExecutionsListenResponse> Fail(absl::Status status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    failure_ = std::move(status);
    return std::nullopt;
  }

  std::shared_ptr<GuardedSubscriber> subscriber_;
  ChangeHub::Subscription subscription_;
  AgentListeners::Registration listener_;  // Set once by Begin, reset by OnDone.

  absl::Mutex mu_;
  storage::ExecutionFilter filter_ ABSL_GUARDED_BY(mu_);
  bool reserve_ ABSL_GUARDED_BY(mu_) = false;
  std::string workgroup_ ABSL_GUARDED_BY(mu_);
  std::string holder_ ABSL_GUARDED_BY(mu_);
  bool scanning_ ABSL_GUARDED_BY(mu_) = false;
  bool begun_ ABSL_GUARDED_BY(mu_) = false;  // Begin ran: the call was logged as opened.
  std::string end_ ABSL_GUARDED_BY(mu_) = "ended";  // How the call ended, for the log.
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // FinishOnce's status while a write was in flight; OnWriteDone finishes with it.
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
  uint64_t credits_ ABSL_GUARDED_BY(mu_) = 0;
  int tasks_ ABSL_GUARDED_BY(mu_) = 0;     // Completion tasks posted and not yet run.
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // OnDone ran: the last task deletes.
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> starved_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> waiting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Delivered> delivered_ ABSL_GUARDED_BY(mu_);
  std::vector<Name> names_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_names_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint32_t> name_index_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // A store failure that ends the call.
  ExecutionsListenResponse response_;  // Owned by the write in flight while writing_.
};

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
          request_.completions(i), context_.limits,
          "completions[" + std::to_string(i) + "].");
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
      writing_ = false;
      deferred.swap(deferred_finish_);
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
      if (finished_) return;
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
            writing_ = true;
            PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reserved (workgroup '{}')",
                             execution_, holder_, workgroup_);
          }
        }
      }
      if (finish.has_value()) {
        finished_ = true;
        // The write decided by another Try may not be started yet: see FinishOnce.
        if (writing_) {
          deferred_finish_ = std::move(finish);
          finish.reset();
        }
      }
    }
    if (write) StartWrite(&empty_);
    if (finish.has_value()) Finish(*finish);
  }

  // Finishes the call once. The write Try decided is started after mu_ is released, and
  // StartWrite after Finish would have gRPC end the call twice; so while a write is in flight,
  // OnWriteDone finishes instead.
  void FinishOnce(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (writing_) {
        deferred_finish_ = std::move(status);
        return;
      }
    }
    Finish(std::move(status));
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
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // StartWrite decided, OnWriteDone not yet run.
  // A finish decided while writing_; OnWriteDone finishes with it.
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
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

void CompleteLinkedStream(const ServiceContext& context, const std::string& execution,
                          std::optional<std::string> error) {
  absl::Status status = context.store->streams().CompleteStream(execution, std::move(error));
  if (status.ok() || absl::IsNotFound(status) || absl::IsFailedPrecondition(status)) return;
  PERPER_LOG_WARN(Logger::kFabric, "[exec={} stream={}] linked stream not completed: {}", execution,
                  execution, status.ToString());
}

grpc::ServerUnaryReactor* ExecutionsService::Create(grpc::CallbackServerContext* context,
                                                    const grpc2::ExecutionsCreateRequest* request,
                                                    google::protobuf::Empty* /*response*/) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(context, s);
  }
  absl::StatusOr<ExecutionRecord> record = RecordFromCreateRequest(*request, context_.limits);
  if (!record.ok()) return FinishUnary(context, record.status());
  return AnswerUnary(context_.writes, context,
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
    grpc::CallbackServerContext* context, const grpc2::ExecutionsCompleteRequest* request,
    google::protobuf::Empty* /*response*/) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(context, s);
  }
  absl::StatusOr<Completion> completion = CompletionFromRequest(*request, context_.limits, "");
  if (!completion.ok()) return FinishUnary(context, completion.status());
  return AnswerUnary(context_.writes, context,
                     [context = context_, completion = std::move(completion).value()]() mutable {
                       return ApplyCompletion(context, std::move(completion));
                     });
}

grpc::ServerUnaryReactor* ExecutionsService::GetResult(
    grpc::CallbackServerContext* /*context*/, const grpc2::ExecutionsGetResultRequest* request,
    grpc2::ExecutionsGetResultResponse* response) {
  return new GetResultReactor(context_, *request, response);
}

grpc::ServerUnaryReactor* ExecutionsService::Delete(grpc::CallbackServerContext* context,
                                                    const grpc2::ExecutionsDeleteRequest* request,
                                                    google::protobuf::Empty* /*response*/) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(context, s);
  }
  const std::string& id = request->execution().execution();
  if (absl::Status s = RequireNonEmpty(id, "execution.execution"); !s.ok()) {
    return FinishUnary(context, s);
  }
  return AnswerUnary(context_.writes, context, [context = context_, id]() {
    auto& executions = context.store->executions();
    bool finished_before = false;
    absl::StatusOr<bool> existed = executions.ReadExecution(
        id, [&](const ExecutionRecord& record) { finished_before = record.finished; });
    if (!existed.ok()) return existed.status();
    absl::StatusOr<bool> deleted = executions.DeleteExecution(id);
    if (!deleted.ok()) return deleted.status();
    // Deleting an unfinished producer cancels it; its consumers must not wait forever.
    if (*deleted && *existed && !finished_before) {
      CompleteLinkedStream(context, id, "execution " + id + " was deleted before it completed");
    }
    return absl::OkStatus();
  });
}

}  // namespace perper::fabric
