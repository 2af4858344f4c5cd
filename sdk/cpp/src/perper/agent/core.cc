// SPDX-License-Identifier: MIT
#include "perper/agent/core.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <iterator>
#include <random>
#include <utility>

#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>

#include "perper/agent/ambient.h"
#include "perper/agent/counters.h"
#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/status_macros.h"
#include "perper/common/text.h"

namespace perper {
namespace internal {
namespace {

// The error message an execution is completed with: never empty, since an empty message means
// success on the wire.
std::string ErrorMessage(const absl::Status& status) {
  if (!status.message().empty()) {
    return std::string(status.message());
  }
  return absl::StatusCodeToString(status.code());
}

thread_local Context* current_context = nullptr;

// The agent and delegate of the recorded Deploy execution (its instance is "<agent>-deploy").
constexpr std::string_view kDeployRecordAgent = "perper.Deploy";
constexpr std::string_view kDeployDelegate = "Deploy";

}  // namespace

struct ContextAccess {
  static ExecutionState& Of(Context& context) { return *context.execution_; }
  static const std::shared_ptr<ExecutionState>& Shared(Context& context) {
    return context.execution_;
  }
};

std::shared_ptr<KeptCalls> CurrentKeptCalls() {
  Context* context = current_context;
  if (context == nullptr) {
    return nullptr;
  }
  const std::shared_ptr<ExecutionState>& execution = ContextAccess::Shared(*context);
  return std::shared_ptr<KeptCalls>(execution, &execution->kept_calls);
}

std::vector<std::string> KeptCalls::Add(std::string id, size_t limit) {
  std::vector<std::string> dropped;
  absl::MutexLock lock(&mu_);
  if (released_) {
    dropped.push_back(std::move(id));
    return dropped;
  }
  ids_.push_back(std::move(id));
  while (ids_.size() > limit) {
    dropped.push_back(std::move(ids_.front()));
    ids_.pop_front();
  }
  return dropped;
}

bool KeptCalls::Empty() {
  absl::MutexLock lock(&mu_);
  return ids_.empty();
}

std::vector<std::string> KeptCalls::Release() {
  absl::MutexLock lock(&mu_);
  released_ = true;
  std::vector<std::string> ids(std::make_move_iterator(ids_.begin()),
                               std::make_move_iterator(ids_.end()));
  ids_.clear();
  return ids;
}

std::string NewId(std::string_view prefix, bool* derived) {
  if (derived != nullptr) {
    *derived = false;
  }
  if (Context* context = current_context; context != nullptr) {
    ExecutionState& execution = ContextAccess::Of(*context);
    if (execution.derive_ids) {
      if (derived != nullptr) {
        *derived = true;
      }
      uint64_t n = execution.ids_made.fetch_add(1) + 1;
      return absl::StrCat(std::string(prefix), "-", DerivedUuid(execution.id, n));
    }
  }
  return absl::StrCat(std::string(prefix), "-", NewUuid());
}

ScopedAmbientContext::ScopedAmbientContext(Context* context) : previous_(current_context) {
  current_context = context;
}
ScopedAmbientContext::~ScopedAmbientContext() { current_context = previous_; }

bool IsTransient(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return false;
    default:
      return true;
  }
}

absl::Duration Backoff::Next() {
  absl::Duration delay = next_;
  next_ = std::min(next_ * 2, kMax);
  thread_local std::mt19937 random(std::random_device{}());
  // Up to 20 % less, so that processes that lost the Fabric together do not return in step.
  return delay - delay * (std::uniform_int_distribution<int>(0, 20)(random) / 100.0);
}

// The ListenAndReserve call of a process. Thin reactions: a received message is handed to Core
// (which posts it to its dispatch strand) and the next read starts; only one read and one write
// are outstanding. Credits and completions handed over while a write is in flight are gathered
// into the next write, so one message finishes several executions and asks for as many more.
// A hold keeps OnDone away until Close, so a write is never started after OnDone.
//
// A completion is kept until the Fabric has certainly applied it. There is no reply per
// message, but the Fabric reads messages in order and grants a message's credits only after
// applying its completions: so once it has delivered more executions than the credits granted
// before a message, it has read that message (Core::Confirmed is told). What is not known
// applied when the call ends is handed back by TakeUnconfirmed.
// Thread-safe.
class ListenReactor : public grpc::ClientBidiReactor<grpc2::ExecutionsListenAndReserveRequest,
                                                     grpc2::ExecutionsListenResponse> {
 public:
  explicit ListenReactor(Core* core) : core_(core), endpoint_(core->endpoint_index()) {}

  // The index of the Fabric address the call is made to.
  size_t endpoint() const { return endpoint_; }

  // REQUIRES: called once. Grants before Start are summed into the write after the first.
  void Start(grpc2::ExecutionsListenAndReserveRequest first) {
    grpc2::FabricExecutions::Stub* stub = core_->executions(endpoint_);
    context_.set_wait_for_ready(core_->wait_for_ready());
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
      core_->Confirmed(confirmed, /*applied=*/true);
    }
    core_->OnListenMessage(this, std::move(message));
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override { core_->OnListenDone(this, status); }

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

  Core* const core_;
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

Counters& CountersForTest() {
  static Counters counters;
  return counters;
}

Core::Core(const Agent& agent, RunOptions options)
    : agent_(agent),
      options_(std::move(options)),
      work_(asio::make_work_guard(io_)),
      dispatch_strand_(asio::make_strand(io_)),
      reconnect_timer_(dispatch_strand_) {}

Core::~Core() {
  RequestStop(0);
  Wait();
  absl::MutexLock lock(&contexts_->mu);
  if (!contexts_->mu.AwaitWithTimeout(absl::Condition(contexts_.get(), &LiveContexts::None),
                                      absl::Seconds(5))) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] {} call contexts still held at exit", agent_.name(),
                    contexts_->count);
  }
}

std::shared_ptr<grpc::ClientContext> Core::NewContext() {
  {
    absl::MutexLock lock(&contexts_->mu);
    ++contexts_->count;
  }
  return std::shared_ptr<grpc::ClientContext>(new grpc::ClientContext(),
                                              [contexts = contexts_](grpc::ClientContext* context) {
                                                delete context;
                                                absl::MutexLock lock(&contexts->mu);
                                                --contexts->count;
                                              });
}

void Core::MoveFrom(size_t endpoint) {
  size_t next = (endpoint + 1) % endpoints_.size();
  if (next != endpoint && endpoint_.compare_exchange_strong(endpoint, next)) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] Fabric {} unavailable; moving to {}",
                    agent_.name(), endpoints_[endpoint]->address, endpoints_[next]->address);
  }
}

absl::StatusOr<std::vector<std::string>> ParseFabricEndpoints(absl::string_view value,
                                                              absl::string_view source) {
  std::vector<std::string> addresses;
  for (absl::string_view entry : absl::StrSplit(value, ',')) {
    absl::string_view address = absl::StripAsciiWhitespace(entry);
    if (absl::StartsWith(address, "https://")) {
      return absl::InvalidArgumentError(absl::StrCat(source, " '", value, "': ", address,
                                                     ": TLS is not supported yet"));
    }
    absl::ConsumePrefix(&address, "http://");
    if (address.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, " '", value, "' has an empty address"));
    }
    addresses.emplace_back(address);
  }
  return addresses;
}

absl::Status Core::Start() {
  auto addresses = ParseFabricEndpoints(options_.fabric_endpoint, "fabric endpoint");
  if (!addresses.ok()) {
    return addresses.status();
  }
  if (options_.concurrency == 0 || options_.threads <= 0) {
    return absl::InvalidArgumentError("concurrency and threads must be positive");
  }
  if (!options_.log_level.empty()) {
    if (absl::Status status = SetLogLevel(options_.log_level); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PERPER_LOG_LEVEL must be trace, debug, info, warn, error or off, got '",
          options_.log_level, "'"));
    }
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  for (const std::string& address : *addresses) {
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->address = address;
    endpoint->channel =
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    endpoint->executions = grpc2::FabricExecutions::NewStub(endpoint->channel);
    endpoint->instances = grpc2::FabricInstances::NewStub(endpoint->channel);
    endpoint->dictionaries = grpc2::FabricStatesDictionary::NewStub(endpoint->channel);
    endpoint->lists = grpc2::FabricStatesList::NewStub(endpoint->channel);
    endpoint->streams = grpc2::FabricStreams::NewStub(endpoint->channel);
    endpoint->introspection = grpc2::FabricIntrospection::NewStub(endpoint->channel);
    endpoints_.push_back(std::move(endpoint));
  }
  // The processes of one machine start at different addresses, spreading them over the Fabric.
  endpoint_ = options_.fabric_endpoint_index.value_or(static_cast<size_t>(getpid())) %
              endpoints_.size();

  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { io_.run(); });
  }
  if (options_.handle_signals) {
    signals_ = std::make_unique<asio::signal_set>(io_, SIGINT, SIGTERM);
    signals_->async_wait([this](const asio::error_code& error, int signal) {
      if (!error) {
        PERPER_LOG_INFO(Logger::kSdk, "[agent={}] signal {}: stopping", agent_.name(), signal);
        RequestStop(0);
      }
    });
  }

  StartListen();  // "serving" is logged once the Fabric has answered it

  if (agent_.find("Deploy") != nullptr) {
    std::string instance = agent_.name() + "-deploy";
    auto deploy = std::make_shared<ExecutionState>(StrandOf(instance));
    deploy->id = instance + "-deploy";
    deploy->instance.set_instance(instance);
    deploy->instance.set_agent(agent_.name());
    deploy->delegate = std::string(kDeployDelegate);
    deploy->synthetic = true;
    deploy->recorded = options_.record_deploy;
    deploy->derive_ids = options_.record_deploy;
    {
      absl::MutexLock lock(&mu_);
      running_[deploy->id] = deploy;
    }
    if (deploy->recorded) {
      asio::co_spawn(io_, RecordAndLaunchDeploy(this, deploy), asio::detached);
    } else {
      asio::post(dispatch_strand_, [this, deploy] { Launch(deploy); });
    }
  }
  return absl::OkStatus();
}

void Core::StartListen() {
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
    listen = std::make_shared<ListenReactor>(this);
    if (listen_ != nullptr) {
      replaced_listens_.push_back(std::move(listen_));
    }
    listen_ = listen;
    listen_done_ = false;
  }
  listen->Start(std::move(first));
}

std::shared_ptr<ListenReactor> Core::CurrentListen() {
  absl::MutexLock lock(&mu_);
  return listen_;
}

void Core::RequestStop(int exit_code) {
  absl::MutexLock lock(&mu_);
  if (!stop_requested_) {
    stop_requested_ = true;
    exit_code_ = exit_code;
  }
}

int Core::Wait() {
  if (waited_) {
    return waited_code_;
  }
  int code = 0;
  {
    absl::MutexLock lock(&mu_, absl::Condition(this, &Core::StopRequested));
    code = exit_code_;
  }
  stopping_ = true;
  asio::post(dispatch_strand_, [this] { reconnect_timer_.cancel(); });
  if (std::shared_ptr<ListenReactor> listen = CurrentListen(); listen != nullptr) {
    // Completions handed to the call go out before it is cancelled.
    if (!listen->AwaitWritten(absl::Seconds(2))) {
      PERPER_LOG_WARN(Logger::kSdk, "[agent={}] listen call writes did not finish", agent_.name());
    }
    listen->Close(/*cancel=*/true);
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Core::ListenDone), absl::Seconds(5))) {
      PERPER_LOG_ERROR(Logger::kSdk, "[agent={}] listen call did not end", agent_.name());
    }
  }
  {
    // Completions the listen call could not send go by unary Complete, before those calls are
    // cancelled.
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Core::UnaryCompletesDone), absl::Seconds(2))) {
      PERPER_LOG_WARN(Logger::kSdk, "[agent={}] {} completions not sent at stop", agent_.name(),
                      unary_completes_);
    }
  }
  CancelAll();
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Core::Idle), absl::Seconds(5))) {
      PERPER_LOG_WARN(Logger::kSdk, "[agent={}] {} handlers still running at stop", agent_.name(),
                      running_.size());
    }
  }
  if (signals_ != nullptr) {
    asio::post(io_, [this] { signals_->cancel(); });
  }
  work_.reset();
  io_.stop();
  for (auto& thread : threads_) {
    thread.join();
  }
  threads_.clear();
  waited_ = true;
  waited_code_ = code;
  return code;
}

void Core::CancelAll() {
  std::vector<std::shared_ptr<ExecutionState>> running;
  std::vector<std::shared_ptr<grpc::ClientContext>> calls;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, execution] : running_) {
      running.push_back(execution);
    }
    for (auto& [id, call] : calls_) {
      calls.push_back(call);
    }
  }
  for (auto& execution : running) {
    CancelExecution(execution);
  }
  for (auto& call : calls) {
    call->TryCancel();
  }
}

void CancelExecution(const std::shared_ptr<ExecutionState>& execution) {
  asio::post(execution->strand, [execution] {
    if (!execution->handler_returned) {
      execution->cancelled = true;
      execution->cancel.emit(asio::cancellation_type::terminal);
    }
  });
}

Strand Core::StrandOf(const std::string& instance) {
  absl::MutexLock lock(&mu_);
  auto it = strands_.find(instance);
  if (it == strands_.end()) {
    it = strands_.emplace(instance, asio::make_strand(io_)).first;
  }
  return it->second;
}

void Core::OnListenMessage(ListenReactor* from, grpc2::ExecutionsListenResponse message) {
  asio::post(dispatch_strand_, [this, from, message = std::move(message)] {
    listen_backoff_.Reset();  // the connection works
    HandleMessage(from, message);
  });
}

void Core::OnListenDone(ListenReactor* from, const grpc::Status& status) {
  // Completions the Fabric may not have applied are sent by unary Complete. After a broken
  // connection that includes the written ones; when this process ended the call itself (at
  // stop, with every write finished first), what was written reached the Fabric, and should it
  // not have, the Fabric delivers the execution again (at-least-once).
  std::vector<SharedCompletion> unwritten;
  std::vector<SharedCompletion> written;
  from->TakeUnconfirmed(unwritten, written);
  if (stopping_) {
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
    RequestStop(1);
    return;
  }
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    MoveFrom(from->endpoint());
  }
  asio::post(
      dispatch_strand_, [this, code = status.error_code(), message = status.error_message()] {
        absl::Duration delay = listen_backoff_.Next();
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

void Core::HandleMessage(const ListenReactor* from,
                         const grpc2::ExecutionsListenResponse& message) {
  if (message.start_of_stream()) {
    const std::string& endpoint = endpoints_[from->endpoint()]->address;
    if (!serving_) {
      serving_ = true;
      PERPER_LOG_INFO(Logger::kSdk, "[agent={}] serving from {} (concurrency {}, workgroup '{}')",
                      agent_.name(), endpoint, options_.concurrency, options_.workgroup);
    } else {
      PERPER_LOG_INFO(Logger::kSdk, "[agent={}] listen call reconnected to {}", agent_.name(),
                      endpoint);
    }
    return;
  }
  const std::string& id = message.execution().execution();
  if (message.deleted()) {
    std::shared_ptr<ExecutionState> execution;
    {
      absl::MutexLock lock(&mu_);
      auto it = running_.find(id);
      if (it == running_.end() || it->second->synthetic) {
        return;
      }
      execution = it->second;
    }
    PERPER_LOG_DEBUG(Logger::kSdk, "[agent={} exec={}] deleted: cancelling", agent_.name(), id);
    execution->deleted = true;
    CancelExecution(execution);
    return;
  }
  if (stopping_) {
    return;
  }
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
    CountersForTest().completed_again.fetch_add(1, std::memory_order_relaxed);
    if (auto listen = CurrentListen(); listen != nullptr && listen->Grant(1, known)) {
      CountersForTest().stream_completions.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  if (duplicate) {
    // Delivered again (after a reconnect) while still running here: keep the running one,
    // return the credit.
    if (auto listen = CurrentListen(); listen != nullptr) {
      listen->Grant(1);
    }
    return;
  }
  auto execution = std::make_shared<ExecutionState>(StrandOf(message.instance().instance()));
  execution->id = id;
  execution->instance = message.instance();
  execution->delegate = message.delegate();
  execution->arguments.assign(message.arguments().begin(), message.arguments().end());
  execution->delivered_by = from;
  execution->derive_ids = true;
  {
    absl::MutexLock lock(&mu_);
    running_[id] = execution;
  }
  Launch(std::move(execution));
}

void Core::Launch(std::shared_ptr<ExecutionState> execution) {
  auto slot = execution->cancel.slot();
  auto context = std::make_shared<Context>(this, execution);
  AmbientExecutor<Strand> executor(execution->strand, context);
  asio::co_spawn(executor, Dispatch(this, execution, std::move(context)),
                 asio::bind_cancellation_slot(slot, [this, execution](std::exception_ptr error) {
                   if (error) {
                     // Dispatch catches every handler exception; this is an SDK failure.
                     PERPER_LOG_ERROR(Logger::kSdk, "[agent={} exec={}] dispatch failed",
                                      agent_.name(), execution->id);
                     Finished(execution);
                   }
                 }));
}

Task<void> Core::Dispatch(Core* core, std::shared_ptr<ExecutionState> execution,
                          std::shared_ptr<Context> context) {
  // Cancellation shows as statuses and operation_aborted, never as exceptions (style §4.3).
  co_await asio::this_coro::throw_if_cancelled(false);
  absl::StatusOr<Values> result;
  absl::Status init = co_await core->EnsureInit(execution, *context);
  if (!init.ok()) {
    result = init;
  } else {
    const Agent::RawHandler* handler = core->agent_.find(execution->delegate);
    if (handler == nullptr) {
      if (execution->delegate == "Start" || execution->delegate == "Stop") {
        result = Values{};  // the default constructor and destructor do nothing
      } else {
        result = absl::UnimplementedError(
            absl::StrCat("agent ", core->agent_.name(), " has no delegate ", execution->delegate));
      }
    } else {
      try {
        result = co_await (*handler)(*context, execution->arguments);
      } catch (const std::exception& e) {
        result = absl::UnknownError(e.what());
      } catch (...) {
        result =
            absl::UnknownError("the handler threw an exception not derived from std::exception");
      }
    }
  }
  execution->handler_returned = true;
  context.reset();
  bool complete = !execution->deleted && !(core->stopping() && execution->cancelled);
  if (execution->synthetic && !result.ok()) {
    PERPER_LOG_ERROR(Logger::kSdk, "[agent={} exec={}] {} failed: {}", core->agent_.name(),
                     execution->id, execution->delegate, result.status().ToString());
  } else if (complete && !result.ok()) {
    // The caller gets the error; the log tells the agent's operator (a cancelled one is not a
    // failure).
    PERPER_LOG_WARN(Logger::kSdk, "[agent={} exec={}] {} failed: {}", core->agent_.name(),
                    execution->id, execution->delegate, result.status().ToString());
  }
  if (complete && (!execution->synthetic || execution->recorded)) {
    grpc2::ExecutionsCompleteRequest request;
    request.mutable_execution()->set_execution(execution->id);
    if (result.ok()) {
      for (auto& value : *result) {
        *request.add_results() = std::move(value);
      }
    } else {
      request.mutable_error()->set_message(
          BoundedText(ErrorMessage(result.status()), kMaxErrorTextBytes));
    }
    if (!execution->synthetic) {
      core->CompleteExecution(execution, std::move(request));
      co_return;
    }
    // A recorded Deploy: not on the listen call, since Deploy holds none of its credits.
    size_t bytes = request.ByteSizeLong();
    core->CompleteByUnary(std::make_shared<const Completion>(Completion{
        std::move(request), bytes,
        std::shared_ptr<KeptCalls>(execution, &execution->kept_calls)}));
  }
  core->Finished(execution);
}

Task<void> Core::RecordAndLaunchDeploy(Core* core, std::shared_ptr<ExecutionState> deploy) {
  grpc2::ExecutionsCreateRequest create;
  create.mutable_execution()->set_execution(deploy->id);
  create.mutable_instance()->set_instance(deploy->instance.instance());
  create.mutable_instance()->set_agent(std::string(kDeployRecordAgent));
  create.set_delegate(deploy->delegate);
  model::PerperInstance recorded_instance = create.instance();
  // Create is idempotent: the record of an earlier run is left as it is.
  auto created = co_await core->Unary<grpc2::ExecutionsCreateRequest, google::protobuf::Empty>(
      std::move(create), [core](auto* context, auto* req, auto* resp, auto done) {
        core->executions()->async()->Create(context, req, resp, std::move(done));
      });
  absl::StatusOr<bool> finished = false;
  if (created.ok()) {
    finished = co_await core->ExecutionFinished(recorded_instance, deploy->delegate, deploy->id);
  } else {
    finished = created.status();
  }
  if (!finished.ok()) {
    PERPER_LOG_ERROR(Logger::kSdk, "[agent={} exec={}] cannot record Deploy: {}",
                     core->agent_.name(), deploy->id, finished.status().ToString());
    core->Finished(deploy);
    co_return;
  }
  if (*finished) {
    PERPER_LOG_INFO(Logger::kSdk,
                    "[agent={}] Deploy already ran on this Fabric (execution {}); `perper up "
                    "--reset` runs it anew",
                    core->agent_.name(), deploy->id);
    CountersForTest().deploys_skipped.fetch_add(1, std::memory_order_relaxed);
    core->Finished(deploy);
    co_return;
  }
  asio::post(core->dispatch_strand_, [core, deploy] { core->Launch(deploy); });
}

Task<absl::StatusOr<bool>> Core::ExecutionFinished(const model::PerperInstance& instance,
                                                   std::string delegate, std::string id) {
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_agent(instance.agent());
  request.set_instance(instance.instance());
  request.set_delegate(std::move(delegate));
  request.set_include_finished(true);
  auto listing = co_await Unary<grpc2::IntrospectionListExecutionsRequest,
                                grpc2::IntrospectionListExecutionsResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        introspection()->async()->ListExecutions(context, req, resp, std::move(done));
      });
  if (!listing.ok()) {
    co_return listing.status();
  }
  for (const auto& summary : listing->executions()) {
    if (summary.execution().execution() == id) {
      co_return summary.finished();
    }
  }
  co_return false;
}

Task<absl::Status> Core::EnsureInit(const std::shared_ptr<ExecutionState>& execution,
                                    Context& context) {
  const Agent::RawHandler* handler = agent_.find("Init");
  if (handler == nullptr || execution->synthetic) {
    co_return absl::OkStatus();
  }
  std::shared_ptr<InstanceInit> init;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = inits_[execution->instance.instance()];
    if (slot == nullptr) {
      slot = std::make_shared<InstanceInit>(execution->strand);
    }
    init = slot;
  }
  // Only this instance's strand touches `init`, so these checks and updates do not race.
  while (init->running) {
    co_await init->finished.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (execution->cancelled) {
      co_return absl::CancelledError("cancelled while waiting for Init");
    }
  }
  if (init->done) {
    co_return absl::OkStatus();
  }
  init->running = true;
  init->finished.expires_at(asio::steady_timer::time_point::max());
  absl::StatusOr<Values> result;
  try {
    result = co_await (*handler)(context, {});
  } catch (const std::exception& e) {
    result = absl::UnknownError(e.what());
  }
  init->running = false;
  init->done = result.ok();
  init->finished.cancel();
  if (!result.ok()) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={} instance={}] Init failed: {}", agent_.name(),
                    execution->instance.instance(), result.status().ToString());
    co_return absl::Status(result.status().code(),
                           absl::StrCat("Init of instance ", execution->instance.instance(),
                                        " failed: ", result.status().message()));
  }
  co_return absl::OkStatus();
}

void Core::Finished(const std::shared_ptr<ExecutionState>& execution) {
  std::shared_ptr<ListenReactor> listen;
  {
    absl::MutexLock lock(&mu_);
    auto it = running_.find(execution->id);
    if (it != running_.end() && it->second == execution) {
      running_.erase(it);
    }
    listen = listen_;
  }
  if (!execution->synthetic && !stopping_ && listen != nullptr) {
    listen->Grant(1);
  }
}

void Core::CompleteExecution(const std::shared_ptr<ExecutionState>& execution,
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
    unconfirmed_[execution->id] = Unconfirmed{completion, execution->delivered_by};
    if (listen_ != nullptr && listen_->Grant(stopping_ ? 0 : 1, completion)) {
      CountersForTest().stream_completions.fetch_add(1, std::memory_order_relaxed);
      on_listen = true;
    }
  }
  if (!on_listen) {
    CompleteByUnary(std::move(completion));
  } else if (!stopping_ && !completion->kept_calls->Empty()) {
    // (Not when stopping: a call started after the stop cancelled the others would hold it up.
    // Outside mu_: co_spawn may start the coroutine on this thread, and its call takes mu_.)
    asio::co_spawn(io_, ReleaseWhenApplied(this, std::move(completion)), asio::detached);
  }
}

Task<void> Core::ReleaseWhenApplied(Core* core, SharedCompletion completion) {
  grpc2::ExecutionsGetResultRequest request;
  *request.mutable_execution() = completion->request.execution();
  // Answers once the execution has finished (or is gone): either way it will not run again.
  // (The answer carries the results again: the price of an acknowledgement, paid only by an
  // execution that kept calls.)
  auto result =
      co_await core->Unary<grpc2::ExecutionsGetResultRequest, grpc2::ExecutionsGetResultResponse>(
          std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
            core->executions()->async()->GetResult(context, req, resp, std::move(done));
          });
  if (result.ok() || absl::IsNotFound(result.status())) {
    core->DeleteKeptCalls(completion->kept_calls->Release());
  }
}

void Core::Confirmed(const std::vector<SharedCompletion>& completions, bool applied) {
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
      DeleteKeptCalls(completion->kept_calls->Release());
    }
  }
}

void Core::CompleteByUnary(SharedCompletion completion) {
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

Task<void> Core::UnaryComplete(Core* core, SharedCompletion completion) {
  CountersForTest().unary_completes.fetch_add(1, std::memory_order_relaxed);
  absl::Status status = co_await core->ExecutionsComplete(completion->request);
  // NOT_FOUND: deleted meanwhile; FAILED_PRECONDITION: a completion sent on a listen call was
  // applied after all. Either way the execution will not run again.
  bool final =
      status.ok() || absl::IsNotFound(status) || absl::IsFailedPrecondition(status);
  if (!final) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={} exec={}] complete failed: {}", core->agent_.name(),
                    completion->request.execution().execution(), status.ToString());
  }
  core->Confirmed({completion}, /*applied=*/final);
  absl::MutexLock lock(&core->mu_);
  --core->unary_completes_;
}

uint64_t Core::AddCall(std::shared_ptr<grpc::ClientContext> context) {
  absl::MutexLock lock(&mu_);
  uint64_t id = next_call_++;
  calls_[id] = std::move(context);
  return id;
}

void Core::RemoveCall(uint64_t id) {
  absl::MutexLock lock(&mu_);
  calls_.erase(id);
}

Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> Core::InstancesCall(
    grpc2::ExecutionsCreateRequest request) {
  return Unary<grpc2::ExecutionsCreateRequest, grpc2::ExecutionsGetResultResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        instances()->async()->Call(context, req, resp, std::move(done));
      });
}

Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> Core::InstancesCreateAndStart(
    grpc2::InstancesCreateAndStartRequest request) {
  return Unary<grpc2::InstancesCreateAndStartRequest, grpc2::ExecutionsGetResultResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        instances()->async()->CreateAndStart(context, req, resp, std::move(done));
      });
}

Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> Core::InstancesStopAndDelete(
    grpc2::InstancesStopAndDeleteRequest request) {
  return Unary<grpc2::InstancesStopAndDeleteRequest, grpc2::ExecutionsGetResultResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        instances()->async()->StopAndDelete(context, req, resp, std::move(done));
      });
}

void Core::DeleteExecutionDetached(std::string id, bool kept_call) {
  grpc2::ExecutionsDeleteRequest request;
  request.mutable_execution()->set_execution(std::move(id));
  asio::co_spawn(
      io_,
      [](Core* core, grpc2::ExecutionsDeleteRequest request, bool kept_call) -> Task<void> {
        auto deleted = co_await core->Unary<grpc2::ExecutionsDeleteRequest, google::protobuf::Empty>(
            request, [core](auto* context, auto* req, auto* resp, auto done) {
              core->executions()->async()->Delete(context, req, resp, std::move(done));
            });
        if (deleted.ok() || absl::IsNotFound(deleted.status())) {
          co_return;
        }
        if (kept_call) {
          // Harmless: the call goes with its instance at the latest.
          PERPER_LOG_DEBUG(Logger::kSdk, "[agent={}] delete of kept call {} failed: {}",
                           core->agent_.name(), request.execution().execution(),
                           deleted.status().ToString());
        } else {
          PERPER_LOG_WARN(Logger::kSdk, "[agent={}] delete of a cancelled call failed: {}",
                          core->agent_.name(), deleted.status().ToString());
        }
      }(this, std::move(request), kept_call),
      asio::detached);
}

std::unique_ptr<Core::UnservedWatch> Core::WatchUnserved(std::string agent, std::string id) {
  if (options_.unserved_check_after <= std::chrono::milliseconds::zero()) return nullptr;
  // The timer lives on a strand of its own: the watch ends from the caller's thread.
  auto strand = asio::make_strand(io_);
  auto timer = std::make_shared<asio::steady_timer>(strand, options_.unserved_check_after);
  asio::co_spawn(
      strand,
      [](Core* core, std::shared_ptr<asio::steady_timer> timer, std::string agent,
         std::string id) -> Task<void> {
        auto [waited] =
            co_await timer->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (waited) co_return;  // Answered in time.
        grpc2::IntrospectionListAgentListenersRequest request;
        request.set_agent(agent);
        auto listeners = co_await core->Unary<grpc2::IntrospectionListAgentListenersRequest,
                                              grpc2::IntrospectionListAgentListenersResponse>(
            std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
              core->introspection()->async()->ListAgentListeners(context, req, resp,
                                                                 std::move(done));
            });
        if (!listeners.ok()) co_return;  // An older or unreachable Fabric: nothing to say.
        for (const auto& listened : listeners->agents()) {
          if (listened.agent() == agent &&
              (listened.listen_calls() > 0 || listened.reservation_calls() > 0)) {
            co_return;
          }
        }
        PERPER_LOG_WARN(Logger::kSdk,
                        "[agent={} exec={}] waiting for {}: no process serves agent {} (no listen "
                        "call for it on the Fabric at {}); the call waits until one does",
                        core->agent_.name(), id, agent, agent, core->Current().address);
      }(this, timer, std::move(agent), std::move(id)),
      asio::detached);
  auto watch = std::make_unique<UnservedWatch>();
  watch->end = [strand, timer] { asio::post(strand, [timer] { timer->cancel(); }); };
  return watch;
}

void Core::DeleteKeptCalls(std::vector<std::string> ids) {
  for (std::string& id : ids) {
    DeleteExecutionDetached(std::move(id), /*kept_call=*/true);
  }
}

Task<absl::Status> Core::ExecutionsComplete(grpc2::ExecutionsCompleteRequest request) {
  auto result = co_await Unary<grpc2::ExecutionsCompleteRequest, google::protobuf::Empty>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        executions()->async()->Complete(context, req, resp, std::move(done));
      });
  co_return result.status();
}

}  // namespace internal

Context& context() {
  Context* current = internal::current_context;
  PERPER_CHECK(current != nullptr)
      << "perper::context() was called outside a handler: the ambient context exists only in a "
         "handler's coroutine and in the coroutines it awaits or spawns on its executor";
  return *current;
}

absl::StatusOr<RunOptions> RunOptions::FromEnvironment(std::string_view agent) {
  RunOptions options;
  if (const char* value = std::getenv("X_PERPER_AGENT");
      value != nullptr && *value != '\0' && std::string_view(value) != agent) {
    return absl::FailedPreconditionError(absl::StrCat(
        "X_PERPER_AGENT is ", value, " but this process serves agent ", std::string(agent)));
  }
  if (const char* value = std::getenv("PERPER_FABRIC_ENDPOINT"); value != nullptr && *value) {
    if (auto parsed = internal::ParseFabricEndpoints(value, "PERPER_FABRIC_ENDPOINT");
        !parsed.ok()) {
      return parsed.status();
    }
    options.fabric_endpoint = value;
  }
  // Only for tests: pins the start address, otherwise chosen by the process ID.
  if (const char* value = std::getenv("PERPER_FABRIC_ENDPOINT_INDEX");
      value != nullptr && *value) {
    size_t index = 0;
    if (!absl::SimpleAtoi(value, &index)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PERPER_FABRIC_ENDPOINT_INDEX must be a non-negative integer, got '", value, "'"));
    }
    options.fabric_endpoint_index = index;
  }
  if (const char* value = std::getenv("X_PERPER_INSTANCE"); value != nullptr) {
    options.instance = value;
  }
  if (const char* value = std::getenv("PERPER_WORKGROUP"); value != nullptr) {
    options.workgroup = value;
  }
  if (const char* value = std::getenv("X_PERPER_RECORD_DEPLOY"); value != nullptr) {
    options.record_deploy = std::string_view(value) == "1";
  }
  if (const char* value = std::getenv("PERPER_CONCURRENCY"); value != nullptr && *value) {
    if (!absl::SimpleAtoi(value, &options.concurrency) || options.concurrency == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("PERPER_CONCURRENCY must be a positive integer, got '", value, "'"));
    }
  }
  if (const char* value = std::getenv("PERPER_LOG_LEVEL"); value != nullptr) {
    options.log_level = value;
  }
  if (const char* value = std::getenv("PERPER_THREADS"); value != nullptr && *value) {
    if (!absl::SimpleAtoi(value, &options.threads) || options.threads <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("PERPER_THREADS must be a positive integer, got '", value, "'"));
    }
  }
  return options;
}

Runtime::Runtime(const Agent& agent, RunOptions options)
    : core_(std::make_unique<internal::Core>(agent, std::move(options))) {}
Runtime::~Runtime() = default;
absl::Status Runtime::Start() { return core_->Start(); }
void Runtime::RequestStop(int exit_code) { core_->RequestStop(exit_code); }
int Runtime::Wait() { return core_->Wait(); }

int Run(const Agent& app) {
  auto options = RunOptions::FromEnvironment(app.name());
  if (!options.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.name().c_str(), options.status().ToString().c_str());
    return 2;
  }
  return Run(app, *std::move(options));
}

int Run(const Agent& app, RunOptions options) {
  options.handle_signals = true;
  Runtime runtime(app, std::move(options));
  if (absl::Status status = runtime.Start(); !status.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.name().c_str(), status.ToString().c_str());
    return 2;
  }
  return runtime.Wait();
}

}  // namespace perper
