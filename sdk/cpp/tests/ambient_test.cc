// SPDX-License-Identifier: MIT
// The ambient context against a real perper-fabric process: handlers without a Context
// parameter, perper::context() after suspensions and in spawned coroutines, many executions of
// one instance interleaving on one strand, and typed start_agent.
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "tests/support/fabric_process.h"

namespace perper {
namespace {

using ::perper::testing::FabricProcess;
using namespace std::chrono_literals;

// Suspends on a timer: the coroutine resumes later, from the io_context's run loop.
Task<void> Pause(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
}

// Which execution the ambient context names, read after a suspension.
Task<std::string> AmbientExecutionAfterPause() {
  co_await Pause(1ms);
  co_return context().execution();
}

class AmbientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  RunOptions Options() const {
    RunOptions options;
    options.fabric_endpoint = fabric_->address();
    options.threads = 4;
    return options;
  }

  // Runs `app` whose Deploy sets `done`, and waits for it.
  void RunUntilDeployed(Agent& app, std::future<void> done) {
    Runtime runtime(app, Options());
    ASSERT_TRUE(runtime.Start().ok());
    ASSERT_EQ(done.wait_for(60s), std::future_status::ready);
    runtime.RequestStop();
    EXPECT_EQ(runtime.Wait(), 0);
  }

  std::unique_ptr<FabricProcess> fabric_;
};

TEST_F(AmbientTest, HandlersWithoutContextCallThroughTheAmbientContext) {
  Agent app("Ambient");
  app.on("Add", [](int64_t a, int64_t b) -> Task<int64_t> { co_return a + b; });
  app.on("Twice", [](int64_t x) -> Task<absl::StatusOr<int64_t>> {
    co_return co_await call<int64_t>("Add", x, x);
  });
  app.on("WhoAmI", []() -> Task<std::string> { co_return context().instance().instance(); });

  auto done = std::make_shared<std::promise<void>>();
  Result<int64_t> twice;
  Result<std::string> who;
  app.on_deploy([&, done]() -> Task<void> {
    twice = co_await call<int64_t>("Twice", int64_t{21});
    who = co_await agent("Ambient", "ambient-7").call<std::string>("WhoAmI");
    done->set_value();
  });
  RunUntilDeployed(app, done->get_future());

  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(*twice, 42);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, "ambient-7");
}

// 200 executions on one instance share its strand and interleave at every suspension; each must
// keep seeing its own execution, in its own frame and in the coroutines it awaits.
TEST_F(AmbientTest, InterleavedExecutionsOfOneInstanceEachSeeTheirOwnContext) {
  Agent app("Ambient");
  app.on("Same", []() -> Task<bool> {
    std::string own = context().execution();
    co_await Pause(1ms);
    co_return context().execution() == own;
  });

  auto done = std::make_shared<std::promise<void>>();
  int calls = 0;
  int consistent = 0;
  std::vector<std::string> failures;
  app.on_deploy([&, done]() -> Task<void> {
    std::vector<Task<Result<bool>>> tasks;
    for (int i = 0; i < 200; ++i) {
      tasks.push_back(agent("Ambient", "one").call<bool>("Same"));
    }
    for (Result<bool>& same : co_await WhenAll(std::move(tasks))) {
      ++calls;
      if (same.ok() && *same) {
        ++consistent;
      } else {
        failures.push_back(same.ok() ? "saw another execution" : same.status().ToString());
      }
    }
    done->set_value();
  });
  RunUntilDeployed(app, done->get_future());
  EXPECT_EQ(calls, 200);
  EXPECT_EQ(consistent, 200) << (failures.empty() ? "" : failures.front());
}

TEST_F(AmbientTest, ContextFollowsAwaitsAndSpawnedCoroutines) {
  Agent app("Ambient");
  std::vector<std::string> seen;
  std::string execution;
  app.on("Trace", [&]() -> Task<void> {
    execution = context().execution();
    seen.push_back(context().execution());
    co_await Pause(2ms);
    seen.push_back(context().execution());
    seen.push_back(co_await AmbientExecutionAfterPause());
    std::vector<Task<std::string>> spawned;
    spawned.push_back(AmbientExecutionAfterPause());
    spawned.push_back(AmbientExecutionAfterPause());
    for (std::string& id : co_await WhenAll(std::move(spawned))) {
      seen.push_back(std::move(id));
    }
  });
  auto done = std::make_shared<std::promise<void>>();
  absl::Status traced;
  app.on_deploy([&, done]() -> Task<void> {
    traced = co_await agent("Ambient", "tracer").call("Trace");
    done->set_value();
  });
  RunUntilDeployed(app, done->get_future());
  ASSERT_TRUE(traced.ok()) << traced;
  ASSERT_FALSE(execution.empty());
  EXPECT_THAT(seen, ::testing::ElementsAre(execution, execution, execution, execution, execution));
}

TEST_F(AmbientTest, StartAgentReturnsTheInstanceAndStartsResult) {
  Agent app("Counter");
  app.on("Start", [](int64_t from) -> Task<int64_t> {
    absl::Status saved = co_await state().set("count", from);
    co_return saved.ok() ? from * 2 : -1;
  });
  app.on("Next", []() -> Task<int64_t> {
    auto count = co_await state().get<int64_t>("count");
    int64_t next = count.ok() ? count->value_or(0) + 1 : -1;
    co_await state().set("count", next);
    co_return next;
  });
  auto done = std::make_shared<std::promise<void>>();
  absl::StatusOr<Started<int64_t>> started = absl::UnknownError("not started");
  Result<int64_t> next;
  Result<int64_t> wrong_type;
  app.on_deploy([&, done]() -> Task<void> {
    started = co_await start_agent<int64_t>("Counter", int64_t{10});
    if (started.ok()) {
      next = co_await started->first.call<int64_t>("Next");
    }
    // Start's result read as the wrong type is a clear error.
    auto mistyped = co_await start_agent<std::string>("Counter", int64_t{1});
    wrong_type = mistyped.ok() ? Result<int64_t>(0) : Result<int64_t>(mistyped.status());
    done->set_value();
  });
  RunUntilDeployed(app, done->get_future());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->second, 20);
  EXPECT_EQ(started->first.agent(), "Counter");
  EXPECT_THAT(started->first.id(), ::testing::StartsWith("Run-"));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, 11);
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_type.status().message()), ::testing::HasSubstr("Int64Value"));
}

// Init runs once per instance in this process, before any of its executions (20 concurrent
// calls arrive while it is suspended); a failed Init fails the waiting execution, and the next
// execution of that instance runs it again.
TEST_F(AmbientTest, InitRunsOncePerInstanceBeforeItsExecutions) {
  Agent app("Inits");
  std::mutex mu;
  std::map<std::string, int> inits;
  std::map<std::string, bool> ready;
  bool fail_next_init_of_c = true;
  app.on_init([&]() -> Task<absl::Status> {
    std::string instance = context().instance().instance();
    {
      std::lock_guard lock(mu);
      ++inits[instance];
      if (instance == "c" && fail_next_init_of_c) {
        fail_next_init_of_c = false;
        co_return absl::InternalError("boom");
      }
    }
    co_await Pause(5ms);
    std::lock_guard lock(mu);
    ready[instance] = true;
    co_return absl::OkStatus();
  });
  app.on("Ready", [&]() -> Task<bool> {
    std::lock_guard lock(mu);
    co_return ready[context().instance().instance()];
  });
  auto done = std::make_shared<std::promise<void>>();
  std::vector<Result<bool>> answers;
  Result<bool> first_c;
  Result<bool> second_c;
  app.on_deploy([&, done]() -> Task<void> {
    std::vector<Task<Result<bool>>> calls;
    for (int i = 0; i < 40; ++i) {
      calls.push_back(agent("Inits", i % 2 == 0 ? "a" : "b").call<bool>("Ready"));
    }
    answers = co_await WhenAll(std::move(calls));
    first_c = co_await agent("Inits", "c").call<bool>("Ready");
    second_c = co_await agent("Inits", "c").call<bool>("Ready");
    done->set_value();
  });
  RunUntilDeployed(app, done->get_future());

  ASSERT_EQ(answers.size(), 40u);
  for (const Result<bool>& ready_seen : answers) {
    ASSERT_TRUE(ready_seen.ok()) << ready_seen.status();
    EXPECT_TRUE(*ready_seen) << "an execution ran before its instance's Init finished";
  }
  EXPECT_EQ(inits["a"], 1);
  EXPECT_EQ(inits["b"], 1);
  EXPECT_EQ(inits.count("Inits-deploy"), 0u) << "Deploy is not an instance's execution";
  ASSERT_FALSE(first_c.ok());
  EXPECT_THAT(std::string(first_c.status().message()),
              ::testing::HasSubstr("Init of instance c failed: boom"));
  ASSERT_TRUE(second_c.ok()) << second_c.status();
  EXPECT_TRUE(*second_c);
  EXPECT_EQ(inits["c"], 2);
}

TEST(AmbientDeathTest, ContextOutsideAHandlerAborts) {
  EXPECT_DEATH(context(), "outside a handler");
}

}  // namespace
}  // namespace perper
