// SPDX-License-Identifier: MIT
// FeedReactor: the delivery of executions behind FabricExecutions.Listen and ListenAndReserve
// (docs/protocol/executions.md), and the completions a ListenAndReserve call carries.
//
// Thread safety: as FeedReactor states below; the free functions may be called from any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/support/server_callback.h>

#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/strings.h"
#include "perper/fabric/finish_gate.h"
#include "perper/fabric/name_table.h"
#include "perper/fabric/service_context.h"
#include "perper/fabric/unary.h"
#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::fabric {

// Unique per call across Fabric processes sharing a store: `kind`, a process-random prefix and a
// count. A call's ID in logs, and the holder of its reservations.
std::string NewHolderId(std::string_view kind);

// The Listen message that delivers `record`.
grpc2::ExecutionsListenResponse ToListenResponse(const storage::ExecutionRecord& record);

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
                                                 std::string_view field);

// Stores the completion, then completes the execution's linked stream.
absl::Status ApplyCompletion(const ServiceContext& context, Completion completion);

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
// another member wait in `waiting_` until a kReservationReleased hint for our workgroup. With
// more than one credit, the IDs waiting behind the next one are tried together
// (ReadAndReserveMany: one round trip per Redis node instead of one per ID), and the messages
// of those reserved are written one after another.
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
      workgroup_ = workgroup;  // Copied: the log line below reads it outside mu_.
      if (reserve_) holder_ = call_;
      begun_ = true;
    }
    // Counted from before the scan: an execution created from now on has a process that
    // serves it (ListAgentListeners).
    listener_ = context_.listeners->Open(filter.agent, reserve);
    PERPER_LOG_DEBUG(Logger::kFabric, "[call={} agent={}] {} opened{}{}{}", call_, filter.agent,
                     reserve ? "ListenAndReserve" : "Listen",
                     filter.instance.empty() ? "" : " for instance " + filter.instance,
                     filter.delegate.empty() ? "" : " for delegate " + filter.delegate,
                     reserve ? " (workgroup '" + workgroup + "')" : "");
    subscriber_ = std::make_shared<GuardedSubscriber>(
        [this](const storage::Change& change) { OnHint(change); });
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
      for (std::string& id : *existing) queue.push_back({std::move(id)});
      queue.push_back({"", /*marker=*/true});
      for (Entry& entry : queue_) queue.push_back(std::move(entry));
      queue_ = std::move(queue);
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

  // Finishes the call once; while a write is in flight, OnWriteDone does (FinishGate).
  void FinishOnce(grpc::Status status) {
    std::optional<grpc::Status> now;
    {
      absl::MutexLock lock(&mu_);
      if (gate_.finished()) return;
      end_ = status.ok() ? "ended" : "ended: " + FromGrpcStatus(status).ToString();
      now = gate_.Finish(std::move(status));
    }
    if (now.has_value()) this->Finish(std::move(*now));
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> deferred;
    {
      absl::MutexLock lock(&mu_);
      deferred = gate_.WriteDone();
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
    std::string workgroup, holder, agent, end, tried;
    bool begun = false;
    {
      absl::MutexLock lock(&mu_);
      if (reserve_) {
        tried = absl::StrCat("; tried: ", stats_.reserved, " reserved, ", stats_.held_by_other,
                             " held by another, ", stats_.skipped,
                             " finished or gone; longest backlog ", stats_.longest_backlog);
      }
      if (reserve_) {
        for (const auto& [id, delivered] : delivered_) held.push_back(id);
        workgroup = workgroup_;
        holder = holder_;
      }
      agent = filter_.agent;
      end = end_;
      begun = begun_;
    }
    if (begun) {
      PERPER_LOG_DEBUG(Logger::kFabric,
                       "[call={} agent={}] listen call {}; {} reservations released{}", call_,
                       agent, end, held.size(), tried);
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

  // Applies completions sent on this call, then grants `credits`: where writes run (RunWrite),
  // so that an fsync or a round trip never holds a gRPC thread, unless `inline_writes` (the
  // first message's, which must be applied before the scan starts). The reactor outlives its
  // pool tasks (OnDone defers the delete).
  void CompleteThenCredit(std::vector<Completion> completions, uint64_t credits,
                          bool inline_writes) {
    const bool posted = !inline_writes && !WritesRunInline(context_);
    {
      absl::MutexLock lock(&mu_);
      for (const Completion& completion : completions) {
        if (auto it = delivered_.find(AbslView(completion.id)); it != delivered_.end()) {
          it->second.completed_here = true;
        }
      }
      if (posted) ++tasks_;
    }
    auto apply = [this, completions = std::move(completions), credits]() mutable {
      for (Completion& completion : completions) {
        std::string id = completion.id;
        absl::Status status = ApplyCompletion(context_, std::move(completion));
        // Deleted or finished already: a benign race with a cancellation or a retry.
        bool settled =
            status.ok() || absl::IsNotFound(status) || absl::IsFailedPrecondition(status);
        if (!settled) {
          PERPER_LOG_WARN(Logger::kFabric, "[exec={}] completion on the reservation stream: {}", id,
                          status.ToString());
        }
        absl::MutexLock lock(&mu_);
        if (auto it = delivered_.find(AbslView(id)); it != delivered_.end()) {
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
    if (!posted) {
      apply();
      return;
    }
    RunWrite(context_, [this, apply = std::move(apply)]() mutable {
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

  void Forget(typename absl::flat_hash_map<std::string, Delivered>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    names_.Release(it->second.instance);
    names_.Release(it->second.delegate);
    delivered_.erase(it);
  }

  void Enqueue(std::string id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.push_back({std::move(id)});
    NoteBacklog();
  }
  void NoteBacklog() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.longest_backlog = std::max(stats_.longest_backlog, queue_.size() + starved_.size());
  }

  void OnHint(const storage::Change& change) {
    if (change.kind == storage::Change::Kind::kResync) {
      Resync();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (gate_.finished()) return;
      switch (change.kind) {
        case storage::Change::Kind::kExecutionCreated:
          if (delivered_.contains(AbslView(change.id)) ||
              ((filter_.instance.empty() || change.instance == filter_.instance) &&
               (filter_.delegate.empty() || change.delegate == filter_.delegate))) {
            Enqueue(change.id);
          }
          break;
        case storage::Change::Kind::kExecutionDeleted:
          if (delivered_.contains(AbslView(change.id))) Enqueue(change.id);
          waiting_.erase(AbslView(change.id));
          break;
        case storage::Change::Kind::kReservationReleased:
          if (reserve_ && change.workgroup == workgroup_ &&
              waiting_.erase(AbslView(change.id)) > 0) {
            // Older than every execution still waiting for a credit (this call passed it on
            // the way to them), so it goes first: a dead member's work is taken up at once.
            starved_.push_front(change.id);
          }
          break;
        case storage::Change::Kind::kExecutionCompleted:
          // Completion is not signalled on Listen; a finished execution is never dispatched.
          waiting_.erase(AbslView(change.id));
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
      if (gate_.finished()) return;
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
      if (gate_.finished()) return;
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
  std::optional<grpc2::ExecutionsListenResponse> Reconcile(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto& executions = context_.store->executions();
    if (auto it = delivered_.find(AbslView(id)); it != delivered_.end()) {
      if (it->second.completed_here) return std::nullopt;  // Forgotten once applied.
      uint64_t sequence = 0;
      absl::StatusOr<bool> found = executions.ReadExecution(
          id, [&](const storage::ExecutionRecord& record) { sequence = record.sequence; });
      if (!found.ok()) return Fail(found.status());
      if (*found && sequence == it->second.sequence) return std::nullopt;
      grpc2::ExecutionsListenResponse response;
      response.mutable_execution()->set_execution(id);
      response.mutable_instance()->set_instance(names_.Get(it->second.instance));
      response.mutable_instance()->set_agent(filter_.agent);
      response.set_delegate(names_.Get(it->second.delegate));
      response.set_deleted(true);
      Forget(it);
      return response;
    }
    // Without a credit there is nothing to decide yet: the ID waits, unread, until one comes.
    // (Reading it now would cost a store read per waiting execution per credit.)
    if (reserve_ && credits_ == 0) {
      starved_.push_back(id);
      NoteBacklog();
      return std::nullopt;
    }
    std::optional<grpc2::ExecutionsListenResponse> response;
    uint64_t sequence = 0;
    auto visit = [&](const storage::ExecutionRecord& record) {
      response = ToListenResponse(record);
      sequence = record.sequence;
    };
    if (reserve_) {
      using Outcome = storage::ExecutionStore::ReserveOutcome;
      absl::StatusOr<Outcome> outcome =
          executions.ReadAndReserve(id, filter_, workgroup_, holder_, visit);
      if (!outcome.ok()) return Fail(outcome.status());
      if (*outcome == Outcome::kSkipped) {
        ++stats_.skipped;
        return std::nullopt;
      }
      if (*outcome == Outcome::kHeldByOther) {
        ++stats_.held_by_other;
        waiting_.insert(id);
        return std::nullopt;
      }
      ++stats_.reserved;
      --credits_;
      waiting_.erase(id);  // Held by another once; a late release hint must not bring it back.
      PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reserved: {}.{} on instance {}", id,
                       call_, response->instance().agent(), response->delegate(),
                       response->instance().instance());
    } else {
      // The visitor runs inside ReadExecution, so under mu_.
      absl::StatusOr<bool> found = executions.ReadExecution(
          id, [&](const storage::ExecutionRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            if (!record.finished && storage::Matches(filter_, record)) visit(record);
          });
      if (!found.ok()) return Fail(found.status());
      if (!response.has_value()) return std::nullopt;
    }
    delivered_[id] = {sequence, names_.Intern(response->instance().instance()),
                      names_.Intern(response->delegate())};
    return response;
  }

  // Starts the next write if none is in flight. IDs that found no credit go first, in the order
  // they came, as soon as there is a credit.
  void Pump() {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (gate_.finished() || gate_.writing() || !started_) return;
        Entry entry;
        bool from_starved = false;
        bool ready = false;  // response_ holds the next message
        if (!reserved_.empty()) {
          // Reserved together with an earlier one: its message is ready.
          response_ = std::move(reserved_.front());
          reserved_.pop_front();
          ready = true;
        } else if (reserve_ && credits_ > 0 && !starved_.empty()) {
          entry.id = std::move(starved_.front());
          starved_.pop_front();
          from_starved = true;
        } else if (!queue_.empty()) {
          entry = std::move(queue_.front());
          queue_.pop_front();
        } else {
          return;
        }
        if (ready) {
          // The message taken from reserved_ above.
        } else if (!entry.marker && reserve_ && credits_ > 1 && !delivered_.contains(entry.id)) {
          // Credits for more than one: the IDs waiting behind it are tried in the same round
          // trip (a store that needs one per operation answers them together).
          if (!ReserveTogether(std::move(entry.id), from_starved)) {
            if (!failure_.ok()) break;
            continue;
          }
          response_ = std::move(reserved_.front());
          reserved_.pop_front();
        } else if (entry.marker) {
          response_.Clear();
          response_.set_start_of_stream(true);
        } else {
          std::optional<grpc2::ExecutionsListenResponse> message = Reconcile(entry.id);
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
        gate_.StartingWrite();
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

  // Tries `first` and the IDs waiting right behind it (in starved_ or in queue_, up to the
  // credits and to a start_of_stream marker), in one ReadAndReserveMany; the messages of those
  // reserved go to reserved_, in order. An ID this call has delivered already is never asked
  // again: the store answers "reserved" to its own holder, which would deliver it twice (a
  // release heard late can put such an ID back in starved_). False when none was reserved (or
  // the store failed: failure_).
  bool ReserveTogether(std::string first, bool from_starved) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    constexpr size_t kMostTogether = 32;
    std::vector<std::string> ids = {std::move(first)};
    absl::flat_hash_set<std::string> taken = {ids.front()};
    const size_t most = std::min<uint64_t>(credits_, kMostTogether);
    while (ids.size() < most) {
      if (from_starved) {
        if (starved_.empty()) break;
        std::string id = std::move(starved_.front());
        starved_.pop_front();
        // Delivered already, or twice in the batch: dropped, as Reconcile would drop it.
        if (delivered_.contains(id) || !taken.insert(id).second) continue;
        ids.push_back(std::move(id));
      } else {
        if (queue_.empty() || queue_.front().marker || delivered_.contains(queue_.front().id) ||
            !taken.insert(queue_.front().id).second) {
          break;
        }
        ids.push_back(std::move(queue_.front().id));
        queue_.pop_front();
      }
    }
    std::vector<std::optional<grpc2::ExecutionsListenResponse>> responses(ids.size());
    std::vector<uint64_t> sequences(ids.size(), 0);
    using Outcome = storage::ExecutionStore::ReserveOutcome;
    absl::StatusOr<std::vector<Outcome>> outcomes = context_.store->executions().ReadAndReserveMany(
        ids, filter_, workgroup_, holder_, [&](size_t i, const storage::ExecutionRecord& record) {
          responses[i] = ToListenResponse(record);
          sequences[i] = record.sequence;
        });
    if (!outcomes.ok()) {
      Fail(outcomes.status());
      return false;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      switch ((*outcomes)[i]) {
        case Outcome::kSkipped:
          ++stats_.skipped;
          continue;
        case Outcome::kHeldByOther:
          ++stats_.held_by_other;
          waiting_.insert(ids[i]);
          continue;
        case Outcome::kReserved:
          break;
      }
      ++stats_.reserved;
      --credits_;
      waiting_.erase(ids[i]);
      grpc2::ExecutionsListenResponse& response = *responses[i];
      PERPER_LOG_DEBUG(Logger::kFabric, "[exec={} call={}] reserved: {}.{} on instance {}", ids[i],
                       call_, response.instance().agent(), response.delegate(),
                       response.instance().instance());
      delivered_[ids[i]] = {sequences[i], names_.Intern(response.instance().instance()),
                            names_.Intern(response.delegate())};
      reserved_.push_back(std::move(response));
    }
    return !reserved_.empty();
  }

  // Records a store failure for Pump to end the call with; returns nothing to deliver.
  std::optional<grpc2::ExecutionsListenResponse> Fail(absl::Status status)
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
  bool begun_ ABSL_GUARDED_BY(mu_) = false;         // Begin ran: the call was logged as opened.
  std::string end_ ABSL_GUARDED_BY(mu_) = "ended";  // How the call ended, for the log.
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  FinishGate gate_ ABSL_GUARDED_BY(mu_);
  uint64_t credits_ ABSL_GUARDED_BY(mu_) = 0;
  int tasks_ ABSL_GUARDED_BY(mu_) = 0;      // Completion tasks posted and not yet run.
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // OnDone ran: the last task deletes.
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> starved_ ABSL_GUARDED_BY(mu_);
  // Messages of executions reserved together with an earlier one, written next, in order.
  std::deque<grpc2::ExecutionsListenResponse> reserved_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> waiting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Delivered> delivered_ ABSL_GUARDED_BY(mu_);
  // The instances and delegates of the delivered executions, each once, counted.
  NameTable names_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // A store failure that ends the call.
  // What the call's reservation attempts came to, for its last log line.
  struct {
    uint64_t reserved = 0, held_by_other = 0, skipped = 0;
    size_t longest_backlog = 0;
  } stats_ ABSL_GUARDED_BY(mu_);
  grpc2::ExecutionsListenResponse response_;  // Owned by the write in flight (gate_.writing()).
};

}  // namespace perper::fabric
