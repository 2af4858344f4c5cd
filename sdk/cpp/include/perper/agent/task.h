// SPDX-License-Identifier: MIT
// Coroutine types of the Perper agent SDK.
//
// Provides:
//   perper::Task<T>        the return type of handlers and SDK operations (asio::awaitable<T>)
//   perper::Result<T>      absl::StatusOr<T>, or absl::Status when T is void
//   perper::WhenAll(tasks) runs tasks concurrently on the current executor, awaits them all
//
// Example:
//
//   std::vector<perper::Task<perper::Result<int64_t>>> calls;
//   for (int i = 0; i < 100; ++i) calls.push_back(ctx.call<int64_t>("Add", i, 1));
//   std::vector<perper::Result<int64_t>> sums = co_await perper::WhenAll(std::move(calls));
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace perper {

// A coroutine of the SDK. Lazy: it runs when awaited (or spawned with asio::co_spawn).
template <typename T = void>
using Task = asio::awaitable<T>;

// What an operation yields: absl::StatusOr<T>, or absl::Status for T = void.
template <typename T>
using Result = std::conditional_t<std::is_void_v<T>, absl::Status, absl::StatusOr<T>>;

namespace internal {

// A value delivered once, from any thread, to one coroutine awaiting it. The awaiting coroutine
// is resumed on its own executor (posted), never on the thread that calls Set.
// Thread-safe. Set and Wait are each called at most once.
template <typename T>
class Oneshot {
 public:
  void Set(T value) {
    std::function<void(T)> waiter;
    {
      std::lock_guard lock(mu_);
      if (waiter_) {
        waiter = std::move(waiter_);
      } else {
        value_.emplace(std::move(value));
        return;
      }
    }
    waiter(std::move(value));
  }

  // Suspends until Set; REQUIRES: *this outlives the wait.
  Task<T> Wait() {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
        [this](auto handler) {
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          auto executor = asio::prefer(asio::get_associated_executor(*shared),
                                       asio::execution::outstanding_work.tracked);
          std::function<void(T)> resume = [shared, executor](T value) {
            asio::post(executor, [shared, value = std::move(value)]() mutable {
              std::move (*shared)(std::move(value));
            });
          };
          std::optional<T> ready;
          {
            std::lock_guard lock(mu_);
            if (value_.has_value()) {
              ready.emplace(std::move(*value_));
            } else {
              waiter_ = std::move(resume);
              return;
            }
          }
          resume(std::move(*ready));
        },
        asio::use_awaitable);
  }

 private:
  std::mutex mu_;
  std::optional<T> value_;
  std::function<void(T)> waiter_;
};

template <typename T>
struct JoinState {
  explicit JoinState(std::size_t n) : remaining(n), results(n) {}
  void Finish(std::size_t index, std::exception_ptr error, std::optional<T> value) {
    bool last = false;
    {
      std::lock_guard lock(mu);
      if (error && !first_error) {
        first_error = error;
      }
      results[index] = std::move(value);
      last = --remaining == 0;
    }
    if (last) {
      done.Set(true);
    }
  }
  std::mutex mu;
  std::size_t remaining;
  std::vector<std::optional<T>> results;
  std::exception_ptr first_error;
  Oneshot<bool> done;
};

// A task that yields `value` at once: an operation refused before it starts.
template <typename R>
Task<R> Ready(R value) {
  co_return value;
}

}  // namespace internal

// Runs every task concurrently on the current coroutine's executor and returns their results in
// order, once all have finished. If a task throws, the first exception is rethrown after all
// have finished.
template <typename T>
Task<std::vector<T>> WhenAll(std::vector<Task<T>> tasks) {
  std::vector<T> out;
  if (tasks.empty()) {
    co_return out;
  }
  auto executor = co_await asio::this_coro::executor;
  auto state = std::make_shared<internal::JoinState<T>>(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    asio::co_spawn(executor, std::move(tasks[i]), [state, i](std::exception_ptr e, T value) {
      state->Finish(i, e, e ? std::nullopt : std::optional<T>(std::move(value)));
    });
  }
  co_await state->done.Wait();
  if (state->first_error) {
    std::rethrow_exception(state->first_error);
  }
  out.reserve(state->results.size());
  for (auto& result : state->results) {
    out.push_back(std::move(*result));
  }
  co_return out;
}

// WhenAll for tasks without a result.
inline Task<void> WhenAll(std::vector<Task<void>> tasks) {
  if (tasks.empty()) {
    co_return;
  }
  auto executor = co_await asio::this_coro::executor;
  auto state = std::make_shared<internal::JoinState<bool>>(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    asio::co_spawn(executor, std::move(tasks[i]),
                   [state, i](std::exception_ptr e) { state->Finish(i, e, true); });
  }
  co_await state->done.Wait();
  if (state->first_error) {
    std::rethrow_exception(state->first_error);
  }
}

}  // namespace perper
