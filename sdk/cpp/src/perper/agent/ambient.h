// SPDX-License-Identifier: MIT
// The ambient context: which execution's coroutine is running on this thread.
//
// asio has no coroutine-local storage, so the context travels with the executor instead: every
// handler coroutine is spawned on an AmbientExecutor, which wraps its instance's strand and sets
// the thread's current Context around each piece of work it runs. Every resumption of the
// coroutine (after a Fabric call, a timer, a WhenAll) goes through the coroutine's executor, so
// perper::context() is right wherever the handler's code runs, and work the handler spawns on
// its own executor (co_await this_coro::executor) inherits the context.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <asio/prefer.hpp>
#include <asio/query.hpp>
#include <asio/require.hpp>

#include "perper/agent/context.h"

namespace perper::internal {

// Sets the thread's current context for its lifetime, restoring the previous one after.
// Not copyable; lives on one thread's stack.
class ScopedAmbientContext {
 public:
  explicit ScopedAmbientContext(Context* context);
  ~ScopedAmbientContext();
  ScopedAmbientContext(const ScopedAmbientContext&) = delete;
  ScopedAmbientContext& operator=(const ScopedAmbientContext&) = delete;

 private:
  Context* previous_;
};

// An executor that runs work on `Inner` with `context` as the thread's current context. Forwards
// every property query, requirement and preference to `Inner`, so it converts to
// asio::any_io_executor wherever `Inner` does. Thread-safe as `Inner` is.
template <typename Inner>
class AmbientExecutor {
 public:
  AmbientExecutor(Inner inner, std::shared_ptr<Context> context)
      : inner_(std::move(inner)), context_(std::move(context)) {}

  template <typename Property>
  auto query(const Property& property) const
      -> decltype(asio::query(std::declval<const Inner&>(), property)) {
    return asio::query(inner_, property);
  }

  template <typename Property>
  auto require(const Property& property) const -> AmbientExecutor<
      std::decay_t<decltype(asio::require(std::declval<const Inner&>(), property))>> {
    return {asio::require(inner_, property), context_};
  }

  template <typename Property>
  auto prefer(const Property& property) const -> AmbientExecutor<
      std::decay_t<decltype(asio::prefer(std::declval<const Inner&>(), property))>> {
    return {asio::prefer(inner_, property), context_};
  }

  template <typename Function>
  void execute(Function&& function) const {
    inner_.execute([context = context_, function = std::forward<Function>(function)]() mutable {
      ScopedAmbientContext scope(context.get());
      std::move(function)();
    });
  }

  friend bool operator==(const AmbientExecutor& a, const AmbientExecutor& b) noexcept {
    return a.inner_ == b.inner_ && a.context_ == b.context_;
  }
  friend bool operator!=(const AmbientExecutor& a, const AmbientExecutor& b) noexcept {
    return !(a == b);
  }

 private:
  template <typename>
  friend class AmbientExecutor;

  Inner inner_;
  std::shared_ptr<Context> context_;
};

}  // namespace perper::internal
