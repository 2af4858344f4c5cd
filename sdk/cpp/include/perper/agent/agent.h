// SPDX-License-Identifier: MIT
// The application layer of the Perper agent SDK: registering handlers and running the process.
//
// Provides:
//   perper::Agent       an agent type: its name and its handlers
//   perper::RunOptions  where the Fabric is and how much work the process takes at once
//   perper::Runtime     runs an Agent in this process (start, stop, wait)
//   perper::Run(app)    the whole process lifecycle for main(): environment, signals, exit code
//
// Example:
//
//   int main() {
//     perper::Agent app("Calculator");
//     app.on("Add", [](int64_t a, int64_t b) -> perper::Task<int64_t> { co_return a + b; });
//     app.on("Twice", [](int64_t x) -> perper::Task<int64_t> {
//       perper::Result<int64_t> sum = co_await perper::call<int64_t>("Add", x, x);
//       co_return sum.value_or(0);
//     });
//     return perper::Run(app);
//   }
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include <google/protobuf/any.pb.h>

#include "perper/agent/context.h"
#include "perper/agent/stream_producer.h"
#include "perper/agent/task.h"
#include "perper/agent/value.h"

namespace perper {

namespace internal {

class Core;

using Values = std::vector<google::protobuf::Any>;

template <typename T>
struct AwaitableValue;
template <typename T, typename E>
struct AwaitableValue<asio::awaitable<T, E>> {
  using type = T;
};

// What a handler takes and returns: (Context&, A...) or (A...), returning Task<R>.
template <bool TakesContext, typename R, typename... A>
struct Signature {
  static constexpr bool kTakesContext = TakesContext;
  using Return = typename AwaitableValue<R>::type;
  using Args = std::tuple<std::decay_t<A>...>;
};
template <typename R, typename... A>
struct SignatureOf : Signature<false, R, A...> {};
template <typename R, typename... A>
struct SignatureOf<R, Context&, A...> : Signature<true, R, A...> {};

template <typename F>
struct HandlerTraits : HandlerTraits<decltype(&F::operator())> {};
template <typename C, typename R, typename... A>
struct HandlerTraits<R (C::*)(A...) const> : SignatureOf<R, A...> {};
template <typename C, typename R, typename... A>
struct HandlerTraits<R (C::*)(A...)> : SignatureOf<R, A...> {};
template <typename R, typename... A>
struct HandlerTraits<R (*)(A...)> : SignatureOf<R, A...> {};

template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// Packs a handler's return value as execution results (or the execution's error).
template <typename R>
absl::StatusOr<Values> PackResult(R result) {
  if constexpr (std::is_same_v<R, absl::Status>) {
    if (!result.ok()) {
      return result;
    }
    return Values{};
  } else if constexpr (IsStatusOr<R>::value) {
    if (!result.ok()) {
      return result.status();
    }
    return PackResult(*std::move(result));
  } else if constexpr (IsTuple<R>::value) {
    return std::apply([](const auto&... v) { return PackAll(v...); }, result);
  } else {
    return PackAll(result);
  }
}

template <typename Tuple, std::size_t... I>
absl::Status UnpackArguments(const std::string& delegate, const Values& values, Tuple& out,
                             std::index_sequence<I...> indices) {
  if (values.size() > sizeof...(I)) {
    return absl::InvalidArgumentError(absl::StrCat("delegate ", delegate, " takes ", sizeof...(I),
                                                   " arguments, got ", values.size()));
  }
  return ReadValuesInto(
      values, out,
      [&](std::size_t index) {
        return absl::StrCat("argument ", index, " of delegate ", delegate);
      },
      indices);
}

// Runs a typed handler on raw arguments. A named coroutine taking everything by value, so no
// lambda capture outlives its frame.
template <typename F>
Task<absl::StatusOr<Values>> InvokeTyped(std::shared_ptr<const F> handler, Context& ctx,
                                         std::string delegate, Values arguments) {
  using Traits = HandlerTraits<F>;
  using Args = typename Traits::Args;
  using R = typename Traits::Return;
  Args args;
  absl::Status status = UnpackArguments(delegate, arguments, args,
                                        std::make_index_sequence<std::tuple_size_v<Args>>());
  if (!status.ok()) {
    co_return status;
  }
  auto invoke = [&](auto&... a) {
    if constexpr (Traits::kTakesContext) {
      return (*handler)(ctx, std::move(a)...);
    } else {
      return (*handler)(std::move(a)...);
    }
  };
  if constexpr (std::is_void_v<R>) {
    co_await std::apply(invoke, args);
    co_return Values{};
  } else {
    R result = co_await std::apply(invoke, args);
    co_return PackResult(std::move(result));
  }
}

}  // namespace internal

// An agent type: a name and the handlers of its delegates. Register handlers before running;
// the Agent must outlive the Runtime that runs it. Not thread-safe while registering.
//
//   perper::Agent app("Calculator");
//   app.on("Add", [](perper::Context&, int64_t a, int64_t b) -> perper::Task<int64_t> {
//     co_return a + b;
//   });
//   app.on_deploy([](perper::Context& ctx) -> perper::Task<void> { ... co_return; });
class Agent {
 public:
  // A handler on raw values: arguments in, results (or the execution's error) out.
  using RawHandler =
      std::function<Task<absl::StatusOr<internal::Values>>(Context&, internal::Values)>;

  explicit Agent(std::string name) : name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  // Registers `handler` for `delegate`. The handler is a function or lambda (without captures
  // that must outlive a suspension; see docs/sdk-cpp.md) of the form
  //   (A1, A2, ...) -> perper::Task<R>      the context is ambient: perper::context()
  //   (perper::Context&, A1, A2, ...) -> perper::Task<R>
  // Arguments are read with FromAny<Ai> (a mismatch fails the execution with INVALID_ARGUMENT;
  // a missing argument reads as null). R may be void (no results), a value (one result), a
  // std::tuple (several results), absl::Status or absl::StatusOr<V> (an error fails the
  // execution with the status's message). A thrown exception fails the execution with what().
  template <typename F>
  Agent& on(std::string delegate, F handler) {
    auto shared = std::make_shared<const F>(std::move(handler));
    return on_raw(delegate, [shared, delegate](Context& ctx, internal::Values args) {
      return internal::InvokeTyped<F>(shared, ctx, delegate, std::move(args));
    });
  }

  // Registers a raw handler for `delegate`.
  Agent& on_raw(std::string delegate, RawHandler handler) {
    handlers_[std::move(delegate)] = std::move(handler);
    return *this;
  }

  // Registers Deploy: run once when the process starts, as a synthetic execution on the
  // instance "<name>-deploy", ID "<name>-deploy-deploy" (stored in the Fabric only with
  // RunOptions::record_deploy, which also skips a Deploy that finished there before).
  // Its form is (perper::Context&) -> perper::Task<void>.
  template <typename F>
  Agent& on_deploy(F handler) {
    return on("Deploy", std::move(handler));
  }

  // Registers Init (upstream's EnterContainer): run once per instance in each process, before
  // the first execution of that instance there (its Start included), with that instance's
  // context; executions of the instance wait for it. If it fails, those executions fail with
  // its error and the next execution of the instance runs it again.
  // Its form is ([perper::Context&]) -> perper::Task<void> (or Task<absl::Status>).
  template <typename F>
  Agent& on_init(F handler) {
    return on("Init", std::move(handler));
  }

  // Registers the stream delegate `delegate`, whose handler writes a stream:
  //   ([perper::Context&,] perper::StreamWriter<T>&, A1, A2, ...) -> perper::Task<void>
  // (or perper::Task<absl::Status>). Each start of the delegate creates a stream with `options`
  // and runs the handler as its producer (the execution "<delegate>-stream"; see
  // perper/agent/stream_delegate.h). The stream completes when the handler returns, and fails
  // with the message when it throws or returns an error. Calling `delegate` itself starts the
  // stream on the called instance and returns its PerperStream.
  //
  //   app.stream("Count", [](perper::StreamWriter<int64_t>& out, int64_t n) -> perper::Task<void> {
  //     for (int64_t i = 0; i < n; ++i) co_await out.write(i);
  //   }, perper::StreamOptions{.ephemeral = false});
  template <typename F>
  Agent& stream(std::string delegate, F handler, StreamOptions options = {}) {
    auto shared = std::make_shared<const F>(std::move(handler));
    stream_options_[delegate] = options;
    on_raw(delegate, [delegate, options](Context& ctx, internal::Values args) {
      return internal::StartFromCall(ctx, delegate, options, std::move(args));
    });
    return on_raw(delegate + "-stream",
                  [shared, delegate, options](Context& ctx, internal::Values args) {
                    return internal::Produce<F>(shared, ctx, delegate, options, std::move(args));
                  });
  }

  // The options `delegate` was registered with by stream(), or nullptr.
  const StreamOptions* stream_options(std::string_view delegate) const {
    auto it = stream_options_.find(std::string(delegate));
    return it == stream_options_.end() ? nullptr : &it->second;
  }

  // The handler of `delegate`, or nullptr.
  const RawHandler* find(std::string_view delegate) const {
    auto it = handlers_.find(std::string(delegate));
    return it == handlers_.end() ? nullptr : &it->second;
  }

 private:
  std::string name_;
  std::map<std::string, RawHandler> handlers_;
  std::map<std::string, StreamOptions> stream_options_;
};

// The most finished calls a running execution keeps for a re-run (RunOptions::max_kept_calls).
inline constexpr size_t kMaxKeptCalls = 1000;

// Options of a running agent process. FromEnvironment reads what the scaler sets.
struct RunOptions {
  // host:port of the Fabric (an "http://" prefix is accepted), or a comma-separated list of
  // them (the processes of one Fabric): the runtime starts at the one at index pid % n and moves
  // to the next when its address becomes unavailable. PERPER_FABRIC_ENDPOINT.
  std::string fabric_endpoint = "127.0.0.1:40400";
  // Pins the start address of fabric_endpoint (taken modulo its length); unset: pid % n. For
  // tests. PERPER_FABRIC_ENDPOINT_INDEX.
  std::optional<size_t> fabric_endpoint_index;
  // Serve only this instance; empty: every instance of the agent. X_PERPER_INSTANCE.
  std::string instance;
  // The reservation workgroup: each execution goes to one member. PERPER_WORKGROUP.
  std::string workgroup;
  // Executions handled at once (the ListenAndReserve credits). PERPER_CONCURRENCY.
  uint32_t concurrency = 64;
  // Threads running handlers (one asio::io_context). PERPER_THREADS.
  int threads = 2;
  // Stop on SIGINT and SIGTERM.
  bool handle_signals = false;
  // Record Deploy in the Fabric as the execution "<name>-deploy-deploy" (agent "perper.Deploy",
  // instance "<name>-deploy"): Deploy then runs only if that execution has not finished yet,
  // with derived IDs, and its result or error completes it. X_PERPER_RECORD_DEPLOY=1 (set by
  // `perper up` for the deploy process).
  bool record_deploy = false;
  // The most finished calls one running execution keeps so that a re-run gets their stored
  // results (docs/sdk-cpp.md, "Stable IDs"): when a newer call finishes, the oldest beyond this
  // is deleted. Lowered by tests; not read from the environment.
  size_t max_kept_calls = kMaxKeptCalls;
  // How long a unary call (a call's creation, a state operation, a write, ...) goes on retrying
  // UNAVAILABLE, with back-off and moving between addresses, before it fails with it; as the
  // Python SDK's retry_timeout and the .NET SDK's RetryTimeout. With one address, each attempt
  // waits for the Fabric to be reachable, so this bounds the retries after broken connections.
  // Lowered by tests; not read from the environment.
  std::chrono::milliseconds unary_retry_timeout{60000};
  // How long a call, start_agent or destroy (whose Start or Stop runs in a process of the agent)
  // waits for its answer before checking that some process serves the agent (a warning names
  // the agent when none does; the wait goes on). Zero: never.
  // Lowered by tests; not read from the environment.
  std::chrono::milliseconds unserved_check_after{5000};
  // The level of the SDK's log (trace, debug, info, warn, error or off; it applies to every
  // Perper logger of the process); empty: left as it is (info). PERPER_LOG_LEVEL, the variable
  // the Fabric and the Python SDK read too.
  std::string log_level;

  // Defaults overridden by the environment; an unparsable number is INVALID_ARGUMENT. When
  // X_PERPER_AGENT is set and differs from `agent`, FAILED_PRECONDITION.
  static absl::StatusOr<RunOptions> FromEnvironment(std::string_view agent);
};

// Runs one Agent in this process: listens for its executions (ListenAndReserve with
// `concurrency` credits), runs each handler as a coroutine on a strand of its instance,
// completes the execution with the results or the error, and cancels a handler whose execution
// is deleted. Deploy, if registered, runs once after Start.
// Start, RequestStop and Wait may be called from any thread; RequestStop also from handlers.
//
//   perper::Runtime runtime(app, options);
//   if (auto s = runtime.Start(); !s.ok()) return 1;
//   return runtime.Wait();   // until RequestStop, a signal, or a fatal error
class Runtime {
 public:
  // Keeps a reference to `agent`.
  Runtime(const Agent& agent, RunOptions options);
  // Stops (RequestStop) and waits.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  absl::Status Start();
  // Asks to stop; Wait then returns `exit_code`. The first request wins. Does not block.
  void RequestStop(int exit_code = 0);
  // Blocks until a stop is requested, then stops gracefully: ends the listen call (the Fabric
  // hands unfinished executions to other members), cancels running handlers, waits up to 5 s
  // for them, and stops the threads. Returns the exit code. Idempotent.
  int Wait();

 private:
  std::unique_ptr<internal::Core> core_;
};

// The process lifecycle for main(): reads RunOptions from the environment, runs `app` until
// SIGINT, SIGTERM or Context::stop_process, and returns the exit code (2 for bad
// configuration, 1 when the Fabric connection fails).
int Run(const Agent& app);
int Run(const Agent& app, RunOptions options);

}  // namespace perper
