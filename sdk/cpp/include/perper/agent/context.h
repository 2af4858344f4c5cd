// SPDX-License-Identifier: MIT
// What a handler can do: call delegates on its own or another instance, create instances, use
// state and streams, see cancellation, stop the process.
//
// Provides:
//   perper::Context    the context of one execution
//   perper::context()  the ambient context: the Context of the handler running on this thread
//   perper::call, perper::agent, perper::start_agent, perper::state, ...
//                      shorthands for perper::context().call(...), ...
//   perper::Instance   a reference to an agent instance, usable to call it or destroy it
// and, through state(), the instance's perper::Dictionary (perper/agent/state.h).
//
// The context is coroutine-local: the SDK runs each handler on an executor that carries its
// execution's Context (see src/perper/agent/ambient.h), so perper::context() is right inside a
// handler and in every coroutine it awaits, even while thousands of executions interleave on
// the same threads. A handler may also take it as its first parameter (perper::Context&).
//
// Example:
//
//   app.on("Twice", [](int64_t x) -> perper::Task<int64_t> {
//     perper::Result<int64_t> sum = co_await perper::call<int64_t>("Add", x, x);
//     if (!sum.ok()) throw std::runtime_error(std::string(sum.status().message()));
//     co_return *sum;
//   });
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include <google/protobuf/any.pb.h>

#include "perper/agent/state.h"
#include "perper/agent/stream.h"
#include "perper/agent/stream_delegate.h"
#include "perper/agent/task.h"
#include "perper/agent/value.h"
#include "perper/grpc2/model.pb.h"

namespace perper {

namespace model = ::perper::grpc2::model;

namespace internal {

class Core;
struct ExecutionState;
struct ContextAccess;

// Calls `delegate` on `instance` through the Fabric (create, wait for the result, delete) and
// returns the raw results. An execution error is UNKNOWN with the remote message; a deleted
// execution is ABORTED; a cancelled caller is CANCELLED. Suspends.
Task<absl::StatusOr<std::vector<google::protobuf::Any>>> CallRaw(
    Core* core, model::PerperInstance instance, std::string delegate,
    std::vector<google::protobuf::Any> arguments);

// Reads values[i] into element i of `out`; a missing value reads as null. A mismatch is
// INVALID_ARGUMENT "<describe(i)>: <reason>". Shared by handler arguments and call results.
template <typename Tuple, typename Describe, std::size_t... I>
absl::Status ReadValuesInto(const std::vector<google::protobuf::Any>& values, Tuple& out,
                            const Describe& describe, std::index_sequence<I...>) {
  absl::Status status;
  [[maybe_unused]] auto one = [&](auto& slot, std::size_t index) {
    if (!status.ok()) {
      return;
    }
    auto value = FromAny<std::decay_t<decltype(slot)>>(
        index < values.size() ? values[index] : google::protobuf::Any());
    if (!value.ok()) {
      status =
          absl::InvalidArgumentError(absl::StrCat(describe(index), ": ", value.status().message()));
      return;
    }
    slot = *std::move(value);
  };
  (one(std::get<I>(out), I), ...);
  return status;
}

template <typename Tuple, std::size_t... I>
absl::StatusOr<Tuple> UnpackTuple(const std::vector<google::protobuf::Any>& values,
                                  std::index_sequence<I...> indices) {
  Tuple out;
  absl::Status status = ReadValuesInto(
      values, out, [](std::size_t index) { return absl::StrCat("result ", index); }, indices);
  if (!status.ok()) {
    return status;
  }
  return out;
}

template <typename T>
struct IsTuple : std::false_type {};
template <typename... Ts>
struct IsTuple<std::tuple<Ts...>> : std::true_type {};

// Reads call results as T: void ignores them, std::tuple reads one result per element, any other
// T reads the first result (no result reads as null).
template <typename T>
Result<T> UnpackResults(absl::StatusOr<std::vector<google::protobuf::Any>> results) {
  if (!results.ok()) {
    return results.status();
  }
  if constexpr (std::is_void_v<T>) {
    return absl::OkStatus();
  } else if constexpr (IsTuple<T>::value) {
    return UnpackTuple<T>(*results, std::make_index_sequence<std::tuple_size_v<T>>());
  } else {
    return FromAny<T>(results->empty() ? google::protobuf::Any() : (*results)[0]);
  }
}

template <typename T>
Task<Result<T>> TypedCall(Core* core, model::PerperInstance instance, std::string delegate,
                          std::vector<google::protobuf::Any> arguments) {
  auto results =
      co_await CallRaw(core, std::move(instance), std::move(delegate), std::move(arguments));
  co_return UnpackResults<T>(std::move(results));
}

}  // namespace internal

// A reference to one agent instance: (agent type, instance ID). Cheap to copy. Valid while the
// process's runtime runs (use it inside handlers). Thread-compatible.
//
//   perper::Instance calc = ctx.agent(model_instance);
//   perper::Result<int64_t> sum = co_await calc.call<int64_t>("Add", 1, 2);
class Instance {
 public:
  Instance() = default;
  Instance(internal::Core* core, model::PerperInstance model)
      : core_(core), model_(std::move(model)) {}

  const model::PerperInstance& model() const { return model_; }
  const std::string& agent() const { return model_.agent(); }
  const std::string& id() const { return model_.instance(); }

  // Calls `delegate` with `args` and reads its results as T (see internal::UnpackResults).
  // Suspends. Cancelling the awaiting coroutine (its execution was deleted) cancels the call,
  // which deletes the remote execution.
  template <typename T = void, typename... Args>
  Task<Result<T>> call(std::string delegate, Args... args) const {
    // Not a coroutine itself: everything is copied into TypedCall's frame before returning, so
    // `co_await ctx.agent(x).call(...)` on a temporary is safe.
    auto values = internal::PackAll(args...);
    if (!values.ok()) {
      return internal::Ready<Result<T>>(values.status());
    }
    return internal::TypedCall<T>(core_, model_, std::move(delegate), *std::move(values));
  }

  // Starts the stream delegate `delegate` of this instance with `args` (by calling it: the
  // instance's process creates the stream with the delegate's options) and returns the stream,
  // which replays from key 0. Suspends.
  template <typename... Args>
  Task<absl::StatusOr<Stream>> stream(std::string delegate, Args... args) const {
    auto values = internal::PackAll(args...);
    if (!values.ok()) {
      return internal::Ready<absl::StatusOr<Stream>>(values.status());
    }
    return internal::StreamOfCall(core_, model_, std::move(delegate), *std::move(values));
  }

  // Stops and deletes the instance and its children (FabricInstances.StopAndDelete). Suspends.
  Task<absl::Status> destroy() const;

 private:
  internal::Core* core_ = nullptr;
  model::PerperInstance model_;
};

// What start_agent<R> yields: the Instance, or the Instance and Start's result.
template <typename R>
using Started = std::conditional_t<std::is_void_v<R>, Instance, std::pair<Instance, R>>;

namespace internal {

using Values = std::vector<google::protobuf::Any>;

template <typename R>
Task<absl::StatusOr<Started<R>>> TypedStart(
    Task<absl::StatusOr<std::pair<Instance, Values>>> start) {
  auto started = co_await std::move(start);
  if (!started.ok()) {
    co_return started.status();
  }
  if constexpr (std::is_void_v<R>) {
    co_return std::move(started->first);
  } else {
    Result<R> result = UnpackResults<R>(std::move(started->second));
    if (!result.ok()) {
      co_return result.status();
    }
    co_return std::pair<Instance, R>(std::move(started->first), *std::move(result));
  }
}

}  // namespace internal

// The context of one execution (or of Deploy). Owned by the SDK; a handler receives it by
// reference and may use it until the handler's coroutine returns. Use it only from the
// handler's coroutine (it is not thread-safe).
class Context {
 public:
  Context(internal::Core* core, std::shared_ptr<internal::ExecutionState> execution);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The instance this execution runs on.
  const model::PerperInstance& instance() const;
  // This execution's ID and delegate.
  const std::string& execution() const;
  const std::string& delegate() const;

  // True once the execution was deleted (cancelled) or the process is stopping. Cancellation
  // also cancels the asynchronous operation the handler is awaiting: SDK calls then return
  // CANCELLED, asio operations awaited with as_tuple return operation_aborted.
  bool cancelled() const;

  // Calls `delegate` on this execution's instance.
  //
  //   perper::Result<int64_t> sum = co_await ctx.call<int64_t>("Add", 1, 2);
  template <typename T = void, typename... Args>
  Task<Result<T>> call(std::string delegate, Args... args) const {
    return Instance(core_, instance()).call<T>(std::move(delegate), std::move(args)...);
  }

  // A reference to another instance.
  Instance agent(model::PerperInstance instance) const { return Instance(core_, instance); }
  Instance agent(std::string agent, std::string instance_id) const;

  // Creates an instance of `agent_type` as a child of this instance and calls its Start with
  // `args` (FabricInstances.CreateAndStart). The ID is "Run-<uuid>" (derived inside an
  // execution: see docs/sdk-cpp.md, "Stable IDs"). Yields the Instance, or with
  // R given, the Instance and Start's result read as R (as for call<R>). Suspends.
  //
  //   absl::StatusOr<perper::Instance> printer = co_await ctx.start_agent("Printer");
  //   auto counter = co_await ctx.start_agent<int64_t>("Counter", 10);   // {Instance, int64_t}
  template <typename R = void, typename... Args>
  Task<absl::StatusOr<Started<R>>> start_agent(std::string agent_type, Args... args) const {
    auto values = internal::PackAll(args...);
    if (!values.ok()) {
      return internal::Ready<absl::StatusOr<Started<R>>>(values.status());
    }
    return internal::TypedStart<R>(StartAgentRaw(std::move(agent_type), *std::move(values)));
  }

  // The dictionary of this execution's instance, "<instance>-".
  Dictionary state() const { return Dictionary(core_, instance().instance() + "-"); }
  // Any dictionary, by name.
  Dictionary dictionary(std::string name) const { return Dictionary(core_, std::move(name)); }

  // Creates a stream without a producer execution, ID "-<uuid>"; the reference replays from
  // key 0. Ephemeral streams drop items every listener has passed. Suspends.
  Task<absl::StatusOr<Stream>> blank_stream(bool ephemeral = false) const;
  // A reference to an existing stream (received as an argument, for example).
  Stream stream(grpc2::model::PerperStream model) const { return Stream(core_, std::move(model)); }
  // Starts the stream delegate `delegate` of this instance with `args` and returns its stream,
  // which replays from key 0. The options are those the delegate was registered with in this
  // process (perper::Agent::stream). Suspends.
  template <typename... Args>
  Task<absl::StatusOr<Stream>> stream(std::string delegate, Args... args) const {
    auto values = internal::PackAll(args...);
    if (!values.ok()) {
      return internal::Ready<absl::StatusOr<Stream>>(values.status());
    }
    return internal::StartStream(core_, instance(), std::move(delegate), std::nullopt,
                                 *std::move(values));
  }
  // Creates the stream of this instance's stream delegate `delegate` without starting its
  // producer; `co_await declared.start(args...)` starts it. Without `options`, the registered
  // ones. Suspends.
  Task<absl::StatusOr<DeclaredStream>> declare_stream(
      std::string delegate, std::optional<StreamOptions> options = std::nullopt) const {
    return internal::DeclareStream(core_, instance(), std::move(delegate), std::move(options));
  }
  // A list by name (perper/agent/state.h).
  List list(std::string name) const { return List(core_, std::move(name)); }

  // Inside a stream producer: how far the stream it produces (whose ID is this execution's)
  // got, so a restarted producer can go on where it stopped. Suspends.
  //
  //   absl::StatusOr<perper::StreamProgress> done = co_await ctx.stream_progress();
  //   for (uint64_t i = done->written_count; i < n; ++i) co_await out.write(...);
  Task<absl::StatusOr<StreamProgress>> stream_progress() const {
    grpc2::model::PerperStream model;
    model.set_stream(execution());
    return internal::StreamGetProgress(core_, std::move(model));
  }

  // Asks the process to stop (as SIGTERM would); Run then returns `exit_code`. Does not block.
  void stop_process(int exit_code = 0) const;

 private:
  Task<absl::StatusOr<std::pair<Instance, internal::Values>>> StartAgentRaw(
      std::string agent_type, internal::Values args) const;

  friend struct internal::ContextAccess;

  internal::Core* core_;
  std::shared_ptr<internal::ExecutionState> execution_;
};

// The context of the execution whose handler is running on this thread. REQUIRES: called from a
// handler's coroutine or a coroutine it awaits or spawns on its own executor; anywhere else is a
// programming error and aborts the process with a message saying so.
Context& context();

// Shorthands for the same members of perper::context().
template <typename T = void, typename... Args>
Task<Result<T>> call(std::string delegate, Args... args) {
  return context().call<T>(std::move(delegate), std::move(args)...);
}
inline Instance agent(model::PerperInstance instance) {
  return context().agent(std::move(instance));
}
inline Instance agent(std::string agent_type, std::string instance_id) {
  return context().agent(std::move(agent_type), std::move(instance_id));
}
template <typename R = void, typename... Args>
Task<absl::StatusOr<Started<R>>> start_agent(std::string agent_type, Args... args) {
  return context().start_agent<R>(std::move(agent_type), std::move(args)...);
}
inline Dictionary state() { return context().state(); }
inline Dictionary dictionary(std::string name) { return context().dictionary(std::move(name)); }
inline Task<absl::StatusOr<Stream>> blank_stream(bool ephemeral = false) {
  return context().blank_stream(ephemeral);
}
template <typename... Args>
Task<absl::StatusOr<Stream>> stream(std::string delegate, Args... args) {
  return context().stream(std::move(delegate), std::move(args)...);
}
inline Task<absl::StatusOr<DeclaredStream>> declare_stream(
    std::string delegate, std::optional<StreamOptions> options = std::nullopt) {
  return context().declare_stream(std::move(delegate), std::move(options));
}
inline List list(std::string name) { return context().list(std::move(name)); }
inline Task<absl::StatusOr<StreamProgress>> stream_progress() {
  return context().stream_progress();
}
inline bool cancelled() { return context().cancelled(); }
inline void stop_process(int exit_code = 0) { context().stop_process(exit_code); }

}  // namespace perper
