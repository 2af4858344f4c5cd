// SPDX-License-Identifier: MIT
#include "perper/agent/reservation_call.h"

#include <deque>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>

#include "perper/agent/counters.h"
#include "perper/common/logging.h"

namespace perper::internal {

// The ListenAndReserve call of a process. Thin reactions: a received message is handed to
// ReservationCall (which posts it to its strand) and the next read starts; only one read and one
// write are outstanding. Credits and completions handed over while a write is in flight are
// gathered into the next write, so one message finishes several executions and asks for as many
// more. A hold keeps OnDone away until Close, so a write is never started after OnDone.
//
// A completion is kept until the Fabric has certainly applied it. There is no reply per
// message, but the Fabric reads messages in order and grants a message's credits only after
// applying its completions: so once it has delivered more executions than the credits granted
// before a message, it has read that message (ReservationCall::Confirmed is told). What is not
// known applied when the call ends is handed back by TakeUnconfirmed. Thread-safe.
class ListenReactor : public grpc::ClientBidiReactor<grpc2::ExecutionsListenAndReserveRequest,
                                                     grpc2::ExecutionsListenResponse> {
 public:
  ListenReactor(ReservationCall* owner, Connection* connection)
      : owner_(owner), connection_(connection), endpoint_(connection->endpoint_index()) {}

  // The index of the Fabric address the call is made to.
  size_t endpoint() const { return endpoint_; }

  // REQUIRES: called once. Grants before Start are summed into the write after the first.
  void Start(grpc2::ExecutionsListenAndReserveRequest first) {
    grpc2::FabricExecutions::Stub* stub = connection_->executions(endpoint_);
    context_.set_wait_for_ready(connection_->wait_for_ready());
    first_ = std::move(first);
    {
      absl::MutexLock lock(&mu_);
      granted_ = first_.reserve_next();
    }
    stub->async()->ListenAndReserve(&context_, this);
    AddHold();
    StartWrite(&first_);
    StartRead(&response_);
    StartCall();
  }

  // Adds `credits` and, when given, `completion` to the next write. False, with nothing taken,
  // once the call takes no more writes (closed, or a write failed).
  bool Grant(uint64_t credits, SharedCompletion completion = nullptr) {
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (closed_ || write_failed_) {
        return false;
      }
      pending_ += credits;
      if (completion != nullptr) {
        pending_completions_.push_back(std::move(completion));
      }
      write = TakeWrite();
    }
    if (write) {
      StartWrite(&next_);
    }
    return true;
  }

  // Waits (at most `timeout`) until everything handed over has been written, or will not be.
  bool AwaitWritten(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(this, &ListenReactor::Written), timeout);
  }

  // Ends the call (when `cancel`) and lets OnDone happen once no write is in flight.
  void Close(bool cancel) {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
      if (!writing_ && !released_) {
        released_ = true;
        release = true;
      }
    }
    if (cancel) {
      context_.TryCancel();
    }
    if (release) {
      RemoveHold();
    }
  }

  // After OnDone: the completions not known applied, split into those never written (or whose
  // write failed) and those written.
  void TakeUnconfirmed(std::vector<SharedCompletion>& unwritten,
                       std::vector<SharedCompletion>& written) {
    absl::MutexLock lock(&mu_);
    for (Sent& sent : sent_) {
      auto& out = sent.written ? written : unwritten;
      out.insert(out.end(), sent.completions.begin(), sent.completions.end());
    }
    sent_.clear();
    unwritten.insert(unwritten.end(), pending_completions_.begin(), pending_completions_.end());
    pending_completions_.clear();
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!in_flight_.empty()) {
        sent_.push_back(Sent{next_credits_before_, ok, std::move(in_flight_)});
        in_flight_.clear();
      }
      next_.clear_completions();
      if (!ok) {
        write_failed_ = true;
      }
      if (closed_) {
        release = !released_;
        released_ = true;
      } else {
        write = TakeWrite();
      }
    }
    if (write) {
      StartWrite(&next_);
    }
    if (release) {
      RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close(/*cancel=*/false);
      return;
    }
    grpc2::ExecutionsListenResponse message;
    message.Swap(&response_);
    std::vector<SharedCompletion> confirmed;
    if (!message.start_of_stream() && !message.deleted()) {
      absl::MutexLock lock(&mu_);
      ++delivered_;
      // The Fabric spent credits of this message at least, so it read every message before.
      while (!sent_.empty() && sent_.front().credits_before < delivered_) {
        confirmed.insert(confirmed.end(), sent_.front().completions.begin(),
                         sent_.front().completions.end());
        sent_.pop_front();
      }
    }
    if (!confirmed.empty()) {
      owner_->Confirmed(confirmed, /*applied=*/true);
    }
    owner_->OnListenMessage(this, std::move(message));
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override { owner_->OnListenDone(this, status); }

 private:
  // The completions of one written message, and the credits granted before it.
  struct Sent {
    uint64_t credits_before = 0;
    bool written = false;
    std::vector<SharedCompletion> completions;
  };

  bool Written() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // (Once closed, or after a failed write, nothing more will be written.)
    return !writing_ &&
           (closed_ || write_failed_ || (pending_ == 0 && pending_completions_.empty()));
  }

  bool TakeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || write_failed_ || (pending_ == 0 && pending_completions_.empty())) {
      return false;
    }
    next_.Clear();
    next_.set_reserve_next(pending_);
    // Completions up to kMaxWriteBytes (at least one); the rest go in the next write.
    size_t bytes = 0;
    size_t taken = 0;
    for (; taken < pending_completions_.size(); ++taken) {
      const SharedCompletion& completion = pending_completions_[taken];
      if (taken > 0 && bytes + completion->bytes > kMaxWriteBytes) {
        break;
      }
      bytes += completion->bytes;
      *next_.add_completions() = completion->request;
    }
    in_flight_.assign(pending_completions_.begin(), pending_completions_.begin() + taken);
    pending_completions_.erase(pending_completions_.begin(), pending_completions_.begin() + taken);
    next_credits_before_ = granted_;
    granted_ += pending_;
    pending_ = 0;
    writing_ = true;
    return true;
  }

  // The most completion bytes in one message (far below the Fabric's message limit).
  static constexpr size_t kMaxWriteBytes = 4 << 20;

  ReservationCall* const owner_;
  Connection* const connection_;
  const size_t endpoint_;
  grpc::ClientContext context_;
  grpc2::ExecutionsListenAndReserveRequest first_;
  grpc2::ExecutionsListenAndReserveRequest next_;  // only touched while no write is in flight
  grpc2::ExecutionsListenResponse response_;       // only touched by the read chain
  mutable absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = true;  // the first write, started by Start
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<SharedCompletion> pending_completions_ ABSL_GUARDED_BY(mu_);
  std::vector<SharedCompletion> in_flight_ ABSL_GUARDED_BY(mu_);  // in next_, being written
  // Credits granted by the messages written so far (the one in flight included), and by the
  // ones before the message in flight; executions delivered on this call.
  uint64_t granted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_credits_before_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Sent> sent_ ABSL_GUARDED_BY(mu_);
};

ReservationCall::ReservationCall(const Agent& agent, const RunOptions& options,
                                 Connection& connection, asio::io_context& io, Strand strand,
                                 Deliver deliver, std::function<void(int)> request_stop)
    : agent_(agent),
      options_(options),
      connection_(connection),
      io_(io),
      strand_(std::move(strand)),
      deliver_(std::move(deliver)),
      request_stop_(std::move(request_stop)),
      reconnect_timer_(strand_) {}

ReservationCall::~ReservationCall() = default;

void ReservationCall::StartListen() {
  grpc2::ExecutionsListenAndReserveRequest first;
  first.mutable_filter()->mutable_instance_filter()->set_agent(agent_.name());
  first.mutable_filter()->mutable_instance_filter()->set_instance(options_.instance);
  first.set_workgroup(options_.workgroup);
  std::shared_ptr<ListenReactor> listen;
  {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) {
      return;
    }
    // Executions still running from an earlier call keep their credits: each grants one to the
    // current call when it finishes (under this lock, so no credit is lost in between).
    uint64_t busy = 0;
    for (const auto& [id, execution] : running_) {
      busy += execution->synthetic ? 0 : 1;
    }
    first.set_reserve_next(busy >= options_.concurrency ? 0 : options_.concurrency - busy);
    listen = std::make_shared<ListenReactor>(this, &connection_);
    if (listen_ != nullptr) {
      replaced_listens_.push_back(std::move(listen_));
    }
    listen_ = listen;
    listen_done_ = false;
  }
  listen->Start(std::move(first));
}

std::shared_ptr<ListenReactor> ReservationCall::CurrentListen() {
  absl::MutexLock lock(&mu_);
  return listen_;
}

void ReservationCall::StopReconnecting() {
  absl::MutexLock lock(&mu_);
  stop_requested_ = true;
}

void ReservationCall::Close() {
  asio::post(strand_, [this] { reconnect_timer_.cancel(); });
  if (std::shared_ptr<ListenReactor> listen = CurrentListen(); listen != nullptr) {
    // Completions handed to the call go out before it is cancelled.
    if (!listen->AwaitWritten(absl::Seconds(2))) {
      PERPER_LOG_WARN(Logger::kSdk, "[agent={}] listen call writes did not finish", agent_.name());
    }
    listen->Close(/*cancel=*/true);
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &ReservationCall::ListenDone),
                              absl::Seconds(5))) {
      PERPER_LOG_ERROR(Logger::kSdk, "[agent={}] listen call did not end", agent_.name());
    }
  }
  // Completions the listen call could not send go by unary Complete, before those calls are
  // cancelled.
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(this, &ReservationCall::UnaryCompletesDone),
                            absl::Seconds(2))) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] {} completions not sent at stop", agent_.name(),
                    unary_completes_);
  }
}

bool ReservationCall::AwaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(this, &ReservationCall::Idle), deadline);
}

size_t ReservationCall::running_count() {
  absl::MutexLock lock(&mu_);
  return running_.size();
}

std::vector<std::shared_ptr<ExecutionState>> ReservationCall::Running() {
  std::vector<std::shared_ptr<ExecutionState>> running;
  absl::MutexLock lock(&mu_);
  for (auto& [id, execution] : running_) {
    running.push_back(execution);
  }
  return running;
}

void ReservationCall::AddRunning(std::shared_ptr<ExecutionState> execution) {
  absl::MutexLock lock(&mu_);
  running_[execution->id] = std::move(execution);
}

std::shared_ptr<ExecutionState> ReservationCall::FindDelivered(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(id);
  if (it == running_.end() || it->second->synthetic) {
    return nullptr;
  }
  return it->second;
}

void ReservationCall::OnListenMessage(ListenReactor* from,
                                      grpc2::ExecutionsListenResponse message) {
  asio::post(strand_, [this, from, message = std::move(message)] {
    backoff_.Reset();  // the connection works
    if (message.start_of_stream()) {
      Answered(from);
    } else {
      deliver_(from, message);
    }
  });
}

void ReservationCall::Answered(const ListenReactor* from) {
  const std::string& endpoint = connection_.address(from->endpoint());
  if (!serving_) {
    serving_ = true;
    PERPER_LOG_INFO(Logger::kSdk, "[agent={}] serving from {} (concurrency {}, workgroup '{}')",
                    agent_.name(), endpoint, options_.concurrency, options_.workgroup);
  } else {
    PERPER_LOG_INFO(Logger::kSdk, "[agent={}] listen call reconnected to {}", agent_.name(),
                    endpoint);
  }
}

void ReservationCall::OnListenDone(ListenReactor* from, const grpc::Status& status) {
  // Completions the Fabric may not have applied are sent by unary Complete. After a broken
  // connection that includes the written ones; when this process ended the call itself (at
  // stop, with every write finished first), what was written reached the Fabric, and should it
  // not have, the Fabric delivers the execution again (at-least-once).
  std::vector<SharedCompletion> unwritten;
  std::vector<SharedCompletion> written;
  from->TakeUnconfirmed(unwritten, written);
  if (connection_.stopping()) {
    Confirmed(written, /*applied=*/false);
  } else {
    unwritten.insert(unwritten.end(), written.begin(), written.end());
  }
  for (auto& completion : unwritten) {
    CompleteByUnary(std::move(completion));
  }
  {
    absl::MutexLock lock(&mu_);
    if (listen_.get() != from) {
      return;  // a call already replaced
    }
    listen_done_ = true;
    if (stop_requested_) {
      return;
    }
  }
  if (!IsTransient(status)) {
    PERPER_LOG_ERROR(Logger::kSdk, "[agent={}] listen call ended: {} {}", agent_.name(),
                     static_cast<int>(status.error_code()), status.error_message());
    request_stop_(1);
    return;
  }
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    connection_.MoveFrom(from->endpoint());
  }
  asio::post(strand_, [this, code = status.error_code(), message = status.error_message()] {
    absl::Duration delay = backoff_.Next();
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] listen call ended ({} {}); reconnecting in {} ms",
                    agent_.name(), static_cast<int>(code), message,
                    absl::ToInt64Milliseconds(delay));
    reconnect_timer_.expires_after(absl::ToChronoMilliseconds(delay));
    reconnect_timer_.async_wait([this](const asio::error_code& error) {
      if (!error) {
        StartListen();
      }
    });
  });
}

bool ReservationCall::Admit(const ListenReactor* from, const std::string& id) {
  bool duplicate = false;
  SharedCompletion known;
  {
    absl::MutexLock lock(&mu_);
    duplicate = running_.contains(id);
    // On the call that delivered it, an ID comes again only when it was deleted and created
    // anew: that one runs.
    if (auto it = unconfirmed_.find(id);
        !duplicate && it != unconfirmed_.end() && it->second.delivered_by != from) {
      known = it->second.completion;
      it->second.delivered_by = from;
    }
  }
  if (known != nullptr) {
    // Finished here, but the Fabric had not applied the completion when it delivered the
    // execution (again): complete it again on this call, returning the credit. The first
    // completion to arrive wins; the Fabric skips the other.
    ProcessCounters().completed_again.fetch_add(1, std::memory_order_relaxed);
    // (A large one is on its way by unary Complete: only the credit goes back.)
    bool small = known->bytes <= kMaxListenCompletionBytes;
    if (auto listen = CurrentListen();
        listen != nullptr && listen->Grant(1, small ? known : nullptr) && small) {
      ProcessCounters().stream_completions.fetch_add(1, std::memory_order_relaxed);
    }
    return false;
  }
  if (duplicate) {
    // Delivered again (after a reconnect) while still running here: keep the running one,
    // return the credit.
    if (auto listen = CurrentListen(); listen != nullptr) {
      listen->Grant(1);
    }
    return false;
  }
  return true;
}

void ReservationCall::Finished(const std::shared_ptr<ExecutionState>& execution) {
  std::shared_ptr<ListenReactor> listen;
  {
    absl::MutexLock lock(&mu_);
    auto it = running_.find(execution->id);
    if (it != running_.end() && it->second == execution) {
      running_.erase(it);
    }
    listen = listen_;
  }
  if (!execution->synthetic && !connection_.stopping() && listen != nullptr) {
    listen->Grant(1);
  }
}

void ReservationCall::CompleteExecution(const std::shared_ptr<ExecutionState>& execution,
                                        grpc2::ExecutionsCompleteRequest request) {
  size_t bytes = request.ByteSizeLong();
  SharedCompletion completion = std::make_shared<const Completion>(Completion{
      std::move(request), bytes, std::shared_ptr<KeptCalls>(execution, &execution->kept_calls)});
  bool on_listen = false;
  {
    // Under one lock: a new listen call counts this execution as running (its credit comes
    // with the completion) or not (its credit is in the call's first message), never both, and
    // a delivery finds the execution in running_ or in unconfirmed_.
    absl::MutexLock lock(&mu_);
    auto it = running_.find(execution->id);
    if (it != running_.end() && it->second == execution) {
      running_.erase(it);
    }
    if (bytes > kMaxListenCompletionBytes) {
      // Only the credit rides on the call. Recorded here, under the same lock, for a delivery
      // to find; no call carries it, so none is named.
      unconfirmed_[execution->id] = Unconfirmed{completion, nullptr};
      if (listen_ != nullptr && !connection_.stopping()) {
        listen_->Grant(1);
      }
    } else {
      unconfirmed_[execution->id] = Unconfirmed{completion, execution->delivered_by};
      if (listen_ != nullptr && listen_->Grant(connection_.stopping() ? 0 : 1, completion)) {
        ProcessCounters().stream_completions.fetch_add(1, std::memory_order_relaxed);
        on_listen = true;
      }
    }
  }
  if (!on_listen) {
    CompleteByUnary(std::move(completion));
  } else if (!connection_.stopping() && !completion->kept_calls->Empty()) {
    // (Not when stopping: a call started after the stop cancelled the others would hold it up.
    // Outside mu_: co_spawn may start the coroutine on this thread, and its call takes locks.)
    asio::co_spawn(io_, ReleaseWhenApplied(&connection_, std::move(completion)), asio::detached);
  }
}

Task<void> ReservationCall::ReleaseWhenApplied(Connection* connection,
                                               SharedCompletion completion) {
  grpc2::ExecutionsGetResultRequest request;
  *request.mutable_execution() = completion->request.execution();
  // Answers once the execution has finished (or is gone): either way it will not run again.
  // (The answer carries the results again: the price of an acknowledgement, paid only by an
  // execution that kept calls.)
  auto result =
      co_await connection
          ->Unary<grpc2::ExecutionsGetResultRequest, grpc2::ExecutionsGetResultResponse>(
              std::move(request), [connection](auto* context, auto* req, auto* resp, auto done) {
                connection->executions()->async()->GetResult(context, req, resp, std::move(done));
              });
  if (result.ok() || absl::IsNotFound(result.status())) {
    connection->DeleteKeptCalls(completion->kept_calls->Release());
  }
}

void ReservationCall::Confirmed(const std::vector<SharedCompletion>& completions, bool applied) {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& completion : completions) {
      auto it = unconfirmed_.find(completion->request.execution().execution());
      if (it != unconfirmed_.end() && it->second.completion == completion) {
        unconfirmed_.erase(it);
      }
    }
  }
  if (!applied) {
    return;
  }
  // A completed execution is never run again, so the calls it kept for a re-run can go.
  for (const auto& completion : completions) {
    if (completion->kept_calls != nullptr) {
      connection_.DeleteKeptCalls(completion->kept_calls->Release());
    }
  }
}

void ReservationCall::CompleteByUnary(SharedCompletion completion) {
  {
    absl::MutexLock lock(&mu_);
    // Kept (or put back) in unconfirmed_, with the call that delivered the execution, if known.
    Unconfirmed& entry = unconfirmed_[completion->request.execution().execution()];
    if (entry.completion != completion) {
      entry = Unconfirmed{completion, nullptr};
    }
    ++unary_completes_;
  }
  asio::co_spawn(io_, UnaryComplete(this, std::move(completion)), asio::detached);
}

Task<void> ReservationCall::UnaryComplete(ReservationCall* self, SharedCompletion completion) {
  ProcessCounters().unary_completes.fetch_add(1, std::memory_order_relaxed);
  absl::Status status = co_await self->connection_.ExecutionsComplete(completion->request);
  // NOT_FOUND: deleted meanwhile; FAILED_PRECONDITION: a completion sent on a listen call was
  // applied after all. Either way the execution will not run again.
  bool final = status.ok() || absl::IsNotFound(status) || absl::IsFailedPrecondition(status);
  if (!final) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={} exec={}] complete failed: {}", self->agent_.name(),
                    completion->request.execution().execution(), status.ToString());
  }
  self->Confirmed({completion}, /*applied=*/final);
  absl::MutexLock lock(&self->mu_);
  --self->unary_completes_;
}

}  // namespace perper::internal
