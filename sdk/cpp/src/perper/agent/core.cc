// SPDX-License-Identifier: MIT
#include "perper/agent/core.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <asio/post.hpp>

#include "perper/agent/ambient.h"
#include "perper/agent/counters.h"
#include "perper/common/logging.h"
#include "perper/common/status_macros.h"

namespace perper {
namespace internal {
namespace {

thread_local Context* current_context = nullptr;

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

Counters& ProcessCounters() {
  static Counters counters;
  return counters;
}

Core::Core(const Agent& agent, RunOptions options)
    : agent_(agent),
      options_(std::move(options)),
      work_(asio::make_work_guard(io_)),
      dispatch_strand_(asio::make_strand(io_)),
      connection_(agent_, options_, io_),
      reservation_(
          agent_, options_, connection_, io_, dispatch_strand_,
          [this](const ListenReactor* from, const grpc2::ExecutionsListenResponse& message) {
            dispatcher_.Handle(from, message);
          },
          [this](int exit_code) { RequestStop(exit_code); }),
      dispatcher_(this, agent_, options_, connection_, reservation_, io_, dispatch_strand_) {}

Core::~Core() {
  RequestStop(0);
  Wait();
  connection_.AwaitContextsFreed(absl::Seconds(5));
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
      return absl::InvalidArgumentError(
          absl::StrCat("PERPER_LOG_LEVEL must be trace, debug, info, warn, error or off, got '",
                       options_.log_level, "'"));
    }
  }
  connection_.Connect(*addresses);

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

  reservation_.Start();
  dispatcher_.StartDeploy();
  return absl::OkStatus();
}

void Core::RequestStop(int exit_code) {
  // The reservation call stops reconnecting first: Wait, woken below, closes the current call
  // and must find no newer one.
  reservation_.StopReconnecting();
  absl::MutexLock lock(&mu_);
  if (!stop_requested_) {
    stop_requested_ = true;
    exit_code_ = exit_code;
  }
}

int Core::Wait() {
  int code = 0;
  {
    absl::MutexLock lock(&mu_);
    if (waited_) {
      return waited_code_;
    }
    mu_.Await(absl::Condition(this, &Core::StopRequested));
    code = exit_code_;
  }
  connection_.SetStopping();
  reservation_.Close();
  CancelAll();
  // Up to 5 s for the cancelled handlers, the unary Completes and the calls in flight to end:
  // the two parts' conditions must hold at once, so the first is checked again after the second.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  bool idle = false;
  while (!idle && reservation_.AwaitIdle(deadline) && connection_.calls().AwaitEmpty(deadline)) {
    idle = reservation_.AwaitIdle(absl::Now());
  }
  if (!idle) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] {} handlers still running at stop", agent_.name(),
                    reservation_.running_count());
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
  absl::MutexLock lock(&mu_);
  waited_ = true;
  waited_code_ = code;
  return code;
}

void Core::CancelAll() {
  for (auto& execution : reservation_.Running()) {
    CancelExecution(execution);
  }
  connection_.calls().CancelAll();
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
    if (auto parsed = ParseFabricEndpoints(value, "PERPER_FABRIC_ENDPOINT"); !parsed.ok()) {
      return parsed.status();
    }
    options.fabric_endpoint = value;
  }
  // Only for tests: pins the start address, otherwise chosen by the process ID.
  if (const char* value = std::getenv("PERPER_FABRIC_ENDPOINT_INDEX"); value != nullptr && *value) {
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
