// SPDX-License-Identifier: MIT
// How perper::Agent::stream runs a stream producer: the handler of "<delegate>-stream" and of
// "<delegate>" (which starts the stream). Used by agent.h; not called directly.
#pragma once

#include <cstddef>
#include <exception>
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

#include "perper/agent/context.h"
#include "perper/agent/stream.h"
#include "perper/agent/stream_delegate.h"
#include "perper/agent/task.h"
#include "perper/agent/value.h"

namespace perper::internal {

template <typename R>
struct ProducerReturn;
template <typename R, typename E>
struct ProducerReturn<asio::awaitable<R, E>> {
  using type = R;
};

// The form of a producer: ([Context&,] StreamWriter<T>&, A...) -> Task<void or absl::Status>.
template <typename R, typename... A>
struct ProducerSignature {
  static_assert(sizeof(R) == 0,
                "a stream producer takes (perper::StreamWriter<T>&, args...) or "
                "(perper::Context&, perper::StreamWriter<T>&, args...)");
};
template <typename R, typename T, typename... A>
struct ProducerSignature<R, StreamWriter<T>&, A...> {
  static constexpr bool kTakesContext = false;
  using Item = T;
  using Return = typename ProducerReturn<R>::type;
  using Args = std::tuple<std::decay_t<A>...>;
};
template <typename R, typename T, typename... A>
struct ProducerSignature<R, Context&, StreamWriter<T>&, A...>
    : ProducerSignature<R, StreamWriter<T>&, A...> {
  static constexpr bool kTakesContext = true;
};

template <typename F>
struct ProducerTraits : ProducerTraits<decltype(&F::operator())> {};
template <typename C, typename R, typename... A>
struct ProducerTraits<R (C::*)(A...) const> : ProducerSignature<R, A...> {};
template <typename C, typename R, typename... A>
struct ProducerTraits<R (C::*)(A...)> : ProducerSignature<R, A...> {};
template <typename R, typename... A>
struct ProducerTraits<R (*)(A...)> : ProducerSignature<R, A...> {};

// Errors of completing a producer's stream that mean there is nothing left to do.
inline bool IgnorableCompleteError(const absl::Status& status) {
  // Completed already (by the Fabric, when an earlier delivery's execution ended) or deleted.
  return absl::IsFailedPrecondition(status) || absl::IsNotFound(status);
}

// Runs the producer of one stream: arguments (stream, args...). Waits for a listener when the
// stream is ephemeral and not an action, runs the handler with a writer, flushes, and completes
// the stream: with the handler's error (thrown or returned), else without. The execution fails
// with the same error. A cancelled producer (its execution deleted, or the process stopping)
// leaves completion to the Fabric.
template <typename F>
Task<absl::StatusOr<Values>> Produce(std::shared_ptr<const F> handler, Context& ctx,
                                     std::string delegate, StreamOptions options, Values args) {
  using Traits = ProducerTraits<F>;
  using Args = typename Traits::Args;
  using Item = typename Traits::Item;
  using R = typename Traits::Return;
  static_assert(std::is_void_v<R> || std::is_same_v<R, absl::Status>,
                "a stream producer returns perper::Task<void> or perper::Task<absl::Status>");
  if (args.empty()) {
    co_return absl::InvalidArgumentError(
        absl::StrCat("stream producer ", delegate, ": no stream argument"));
  }
  auto model = FromAny<grpc2::model::PerperStream>(args[0]);
  if (!model.ok()) {
    co_return absl::InvalidArgumentError(
        absl::StrCat("stream producer ", delegate,
                     ": argument 0 must be its stream: ", model.status().message()));
  }
  Values rest(args.begin() + 1, args.end());
  constexpr std::size_t kArity = std::tuple_size_v<Args>;
  if (rest.size() > kArity) {
    co_return absl::InvalidArgumentError(absl::StrCat("stream delegate ", delegate, " takes ",
                                                      kArity, " arguments, got ", rest.size()));
  }
  Args typed;
  absl::Status status = ReadValuesInto(
      rest, typed,
      [&](std::size_t index) {
        return absl::StrCat("argument ", index, " of stream delegate ", delegate);
      },
      std::make_index_sequence<kArity>());
  Stream stream = ctx.stream(*model);
  if (!status.ok()) {
    (void)co_await stream.complete(std::string(status.message()));
    co_return status;
  }
  if (options.ephemeral && !options.action) {
    absl::Status listened = co_await stream.wait_for_listener();
    if (!listened.ok()) {
      co_return listened;
    }
  }
  StreamWriter<Item> writer(stream, model->stride() != 0 ? model->stride() : options.stride,
                            options.max_pending);
  auto invoke = [&](auto&... a) {
    if constexpr (Traits::kTakesContext) {
      return (*handler)(ctx, writer, std::move(a)...);
    } else {
      return (*handler)(writer, std::move(a)...);
    }
  };
  std::string thrown;
  bool threw = false;
  try {
    if constexpr (std::is_void_v<R>) {
      co_await std::apply(invoke, typed);
    } else {
      status = co_await std::apply(invoke, typed);
    }
  } catch (const std::exception& e) {
    threw = true;
    thrown = e.what();
  } catch (...) {
    threw = true;
    thrown = "the stream producer threw an exception not derived from std::exception";
  }
  if (threw) {
    status = absl::UnknownError(thrown.empty() ? "exception" : thrown);
  }
  absl::Status flushed = co_await writer.flush();
  if (ctx.cancelled()) {
    co_return absl::CancelledError(absl::StrCat("stream producer ", delegate, " was cancelled"));
  }
  if (status.ok() && !flushed.ok()) {
    status = flushed;
  }
  std::string error;
  if (!status.ok()) {
    error = status.message().empty() ? absl::StatusCodeToString(status.code())
                                     : std::string(status.message());
  }
  absl::Status completed = co_await stream.complete(error);
  if (!status.ok()) {
    co_return status;
  }
  if (!completed.ok() && !IgnorableCompleteError(completed)) {
    co_return completed;
  }
  co_return Values{};
}

// The handler of "<delegate>" itself: starts the stream on the current instance and returns it.
inline Task<absl::StatusOr<Values>> StartFromCall(Context& ctx, std::string delegate,
                                                  StreamOptions options, Values args) {
  absl::StatusOr<DeclaredStream> declared = co_await ctx.declare_stream(delegate, options);
  if (!declared.ok()) {
    co_return declared.status();
  }
  absl::StatusOr<Stream> started = co_await declared->start_values(std::move(args));
  if (!started.ok()) {
    co_return started.status();
  }
  co_return Values{ToAny(started->model())};
}

}  // namespace perper::internal
