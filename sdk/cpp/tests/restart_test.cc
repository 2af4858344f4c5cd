// SPDX-License-Identifier: MIT
// What makes a handler safe to run again: the IDs it makes are derived from its execution, so a
// re-run finds the calls, instances and streams of the first run; the calls it keeps for that
// are bounded and go when it completes; and a recorded Deploy runs once per Fabric.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "sdk/cpp/src/perper/agent/counters.h"
#include "sdk/cpp/src/perper/agent/ids.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"

namespace perper {
namespace {

using ::perper::internal::DerivedUuid;
using ::perper::testing::FabricProcess;
using ::perper::testing::WaitFor;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  RunOptions Options(bool record_deploy = false) const {
    RunOptions options;
    options.fabric_endpoint = fabric_->address();
    options.record_deploy = record_deploy;
    return options;
  }

  grpc::Status CreateExecution(const std::string& id, const std::string& agent,
                               const std::string& instance, const std::string& delegate,
                               std::vector<google::protobuf::Any> arguments = {}) {
    auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
    grpc2::ExecutionsCreateRequest request;
    request.mutable_execution()->set_execution(id);
    request.mutable_instance()->set_agent(agent);
    request.mutable_instance()->set_instance(instance);
    request.set_delegate(delegate);
    for (auto& argument : arguments) {
      *request.add_arguments() = std::move(argument);
    }
    grpc::ClientContext context;
    google::protobuf::Empty empty;
    return stub->Create(&context, request, &empty);
  }

  // GetResult of `id`, waiting up to `timeout` for it to finish.
  grpc::Status GetResult(const std::string& id, grpc2::ExecutionsGetResultResponse* response,
                         std::chrono::seconds timeout = 20s, bool wait_for_creation = false) {
    auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
    grpc2::ExecutionsGetResultRequest request;
    request.mutable_execution()->set_execution(id);
    request.set_wait_for_creation(wait_for_creation);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    return stub->GetResult(&context, request, response);
  }

  // Whether execution `id` is gone (GetResult answers NOT_FOUND, or deleted).
  bool Gone(const std::string& id) {
    grpc2::ExecutionsGetResultResponse response;
    grpc::Status status = GetResult(id, &response, 1s);
    return status.error_code() == grpc::StatusCode::NOT_FOUND ||
           (status.ok() && response.deleted());
  }

  // The executions of `instance` (finished ones included), as the Fabric lists them.
  std::vector<grpc2::ExecutionSummary> Executions(const std::string& instance) {
    auto stub = grpc2::FabricIntrospection::NewStub(fabric_->NewChannel());
    grpc2::IntrospectionListExecutionsRequest request;
    request.set_instance(instance);
    request.set_include_finished(true);
    grpc::ClientContext context;
    grpc2::IntrospectionListExecutionsResponse response;
    EXPECT_TRUE(stub->ListExecutions(&context, request, &response).ok());
    return {response.executions().begin(), response.executions().end()};
  }

  std::unique_ptr<FabricProcess> fabric_;
};

// What the handlers below saw, shared with the test thread.
struct Seen {
  std::mutex mu;
  std::vector<std::string> inner_executions;
  std::vector<std::string> instances;
  std::vector<std::string> streams;
  std::atomic<int> inner_runs{0};
  std::atomic<int> outer_runs{0};
  std::promise<void> first_run_called;
};

// "Outer" calls "Inner", starts an instance and a stream; its first run then waits until its
// process stops (a crash, as far as the execution is concerned), so the Fabric hands it out
// again.
Agent RerunAgent(std::shared_ptr<Seen> seen) {
  Agent app("Rerun");
  app.on("Inner", [seen](Context& ctx, int64_t x) -> Task<int64_t> {
    std::shared_ptr<Seen> s = seen;
    ++s->inner_runs;
    std::lock_guard lock(s->mu);
    s->inner_executions.push_back(ctx.execution());
    co_return x * 2;
  });
  app.on("Start", [](Context& ctx) -> Task<void> { co_return; });
  app.stream("Numbers", [](StreamWriter<int64_t>& out) -> Task<void> { co_return; });
  app.on("Outer", [seen](Context& ctx, int64_t x) -> Task<absl::StatusOr<int64_t>> {
    std::shared_ptr<Seen> s = seen;
    int run = ++s->outer_runs;
    Result<int64_t> inner = co_await ctx.call<int64_t>("Inner", x);
    if (!inner.ok()) {
      co_return inner.status();
    }
    absl::StatusOr<Instance> child = co_await ctx.start_agent("Rerun");
    if (!child.ok()) {
      co_return child.status();
    }
    absl::StatusOr<DeclaredStream> stream = co_await ctx.declare_stream("Numbers");
    if (!stream.ok()) {
      co_return stream.status();
    }
    {
      std::lock_guard lock(s->mu);
      s->instances.push_back(child->id());
      s->streams.push_back(stream->stream().id());
    }
    if (run == 1) {
      s->first_run_called.set_value();
      asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(1));
      co_await forever.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      co_return absl::CancelledError("stopped before finishing");
    }
    co_return *inner;
  });
  return app;
}

TEST_F(RestartTest, AReRunExecutionFindsWhatItsFirstRunMade) {
  auto seen = std::make_shared<Seen>();
  Agent app = RerunAgent(seen);
  auto first = std::make_unique<Runtime>(app, Options());
  ASSERT_TRUE(first->Start().ok());
  ASSERT_TRUE(CreateExecution("Outer-1", "Rerun", "rerun-1", "Outer", {ToAny(int64_t{21})}).ok());
  ASSERT_EQ(seen->first_run_called.get_future().wait_for(20s), std::future_status::ready);
  // Stopping cancels the first run without completing it: the Fabric hands it out again.
  first->RequestStop();
  EXPECT_EQ(first->Wait(), 0);
  first.reset();

  Runtime second(app, Options());
  ASSERT_TRUE(second.Start().ok());
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = GetResult("Outer-1", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(response.error().message().empty()) << response.error().message();
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(*FromAny<int64_t>(response.results(0)), 42);

  EXPECT_EQ(seen->outer_runs.load(), 2);
  // The second run's call found the first run's finished call: Inner ran once.
  EXPECT_EQ(seen->inner_runs.load(), 1);
  std::lock_guard lock(seen->mu);
  EXPECT_THAT(seen->inner_executions, ::testing::ElementsAre("Inner-" + DerivedUuid("Outer-1", 1)));
  EXPECT_THAT(seen->instances, ::testing::ElementsAre("Run-" + DerivedUuid("Outer-1", 2),
                                                      "Run-" + DerivedUuid("Outer-1", 2)));
  EXPECT_THAT(seen->streams, ::testing::ElementsAre("Numbers-stream-" + DerivedUuid("Outer-1", 3),
                                                    "Numbers-stream-" + DerivedUuid("Outer-1", 3)));
  // Once Outer-1 has completed, nothing can run it again: the call it kept goes.
  EXPECT_TRUE(WaitFor([&] { return Gone("Inner-" + DerivedUuid("Outer-1", 1)); }, 20s));
  second.RequestStop();
  EXPECT_EQ(second.Wait(), 0);
}

// Where a "Gated" handler waits after its calls, until the test opens the gate.
struct Gate {
  std::mutex mu;
  std::shared_ptr<asio::steady_timer> timer;
  std::optional<asio::any_io_executor> executor;
  std::promise<void> waiting;

  // Hands the timer to its executor and lets go of both: the gate outlives the runtime, and
  // neither a timer nor an executor may outlive the io_context that made it.
  void Open() {
    std::lock_guard lock(mu);
    asio::post(*executor, [timer = std::move(timer)] { timer->cancel(); });
    executor.reset();
  }
};

// "Calls" makes n calls of "Inner" in turn and returns their sum; "Gated" makes n calls, then
// waits at the gate. With `deploy`, Deploy makes two calls.
Agent KeepingAgent(std::shared_ptr<std::atomic<int>> inner_runs, std::shared_ptr<Gate> gate,
                   bool deploy = false) {
  Agent app("Keeper");
  app.on("Inner", [inner_runs](int64_t x) -> Task<int64_t> {
    ++*inner_runs;
    co_return x + 1;
  });
  auto calls = [](int64_t n) -> Task<absl::StatusOr<int64_t>> {
    int64_t sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      Result<int64_t> inner = co_await call<int64_t>("Inner", i);
      if (!inner.ok()) {
        co_return inner.status();
      }
      sum += *inner;
    }
    co_return sum;
  };
  app.on("Calls", calls);
  app.on("Gated", [calls, gate](int64_t n) -> Task<absl::StatusOr<int64_t>> {
    std::shared_ptr<Gate> g = gate;
    absl::StatusOr<int64_t> sum = co_await calls(n);
    auto executor = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(executor, std::chrono::hours(1));
    {
      std::lock_guard lock(g->mu);
      g->timer = timer;
      g->executor = executor;
    }
    g->waiting.set_value();
    co_await timer->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    co_return sum;
  });
  if (deploy) {
    app.on_deploy([calls]() -> Task<absl::Status> { co_return (co_await calls(2)).status(); });
  }
  return app;
}

// The IDs of the finished "Inner" executions of `instance`.
std::vector<std::string> FinishedInner(const std::vector<grpc2::ExecutionSummary>& executions) {
  std::vector<std::string> ids;
  for (const auto& summary : executions) {
    if (summary.delegate() == "Inner" && summary.finished()) {
      ids.push_back(summary.execution().execution());
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST_F(RestartTest, ACompletedExecutionDeletesTheCallsItKept) {
  auto inner_runs = std::make_shared<std::atomic<int>>(0);
  Agent app = KeepingAgent(inner_runs, std::make_shared<Gate>());
  Runtime runtime(app, Options());
  ASSERT_TRUE(runtime.Start().ok());
  ASSERT_TRUE(CreateExecution("Calls-1", "Keeper", "keeper-1", "Calls", {ToAny(int64_t{3})}).ok());
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(GetResult("Calls-1", &response).ok());
  ASSERT_EQ(response.results_size(), 1) << response.error().message();
  EXPECT_EQ(*FromAny<int64_t>(response.results(0)), 1 + 2 + 3);
  EXPECT_EQ(inner_runs->load(), 3);
  for (uint64_t n = 1; n <= 3; ++n) {
    std::string id = "Inner-" + DerivedUuid("Calls-1", n);
    EXPECT_TRUE(WaitFor([&] { return Gone(id); }, 20s)) << id;
  }
  EXPECT_THAT(FinishedInner(Executions("keeper-1")), ::testing::IsEmpty());
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(RestartTest, ARunningExecutionKeepsOnlyItsMostRecentCalls) {
  constexpr uint64_t kBound = 3;
  auto inner_runs = std::make_shared<std::atomic<int>>(0);
  auto gate = std::make_shared<Gate>();
  Agent app = KeepingAgent(inner_runs, gate);
  RunOptions options = Options();
  options.max_kept_calls = kBound;
  Runtime runtime(app, options);
  ASSERT_TRUE(runtime.Start().ok());
  ASSERT_TRUE(
      CreateExecution("Gated-1", "Keeper", "keeper-1", "Gated", {ToAny(int64_t{kBound + 5})}).ok());
  ASSERT_EQ(gate->waiting.get_future().wait_for(20s), std::future_status::ready);

  // While it runs: the most recent kBound calls are kept, the older ones are gone.
  std::vector<std::string> recent;
  for (uint64_t n = 6; n <= kBound + 5; ++n) {
    recent.push_back("Inner-" + DerivedUuid("Gated-1", n));
  }
  std::sort(recent.begin(), recent.end());
  EXPECT_TRUE(WaitFor([&] { return FinishedInner(Executions("keeper-1")) == recent; }, 20s))
      << ::testing::PrintToString(FinishedInner(Executions("keeper-1")));
  EXPECT_TRUE(Gone("Inner-" + DerivedUuid("Gated-1", 1)));
  EXPECT_EQ(inner_runs->load(), kBound + 5);

  // Completed: the rest go too.
  gate->Open();
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(GetResult("Gated-1", &response).ok());
  ASSERT_EQ(response.results_size(), 1) << response.error().message();
  EXPECT_TRUE(WaitFor([&] { return FinishedInner(Executions("keeper-1")).empty(); }, 20s));
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(RestartTest, ARecordedDeployDeletesTheCallsItKeptWhenItCompletes) {
  auto inner_runs = std::make_shared<std::atomic<int>>(0);
  Agent app = KeepingAgent(inner_runs, std::make_shared<Gate>(), /*deploy=*/true);
  Runtime runtime(app, Options(/*record_deploy=*/true));
  ASSERT_TRUE(runtime.Start().ok());
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(GetResult("Keeper-deploy-deploy", &response, 20s, /*wait_for_creation=*/true).ok());
  EXPECT_TRUE(response.error().message().empty()) << response.error().message();
  EXPECT_EQ(inner_runs->load(), 2);
  for (uint64_t n = 1; n <= 2; ++n) {
    std::string id = "Inner-" + DerivedUuid("Keeper-deploy-deploy", n);
    EXPECT_TRUE(WaitFor([&] { return Gone(id); }, 20s)) << id;
  }
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// A Deploy that starts an instance and counts its runs.
Agent DeployingAgent(std::shared_ptr<std::atomic<int>> runs, bool fail) {
  Agent app("Deployer");
  app.on("Start", [](Context& ctx) -> Task<void> { co_return; });
  app.on_deploy([runs, fail](Context& ctx) -> Task<absl::Status> {
    std::shared_ptr<std::atomic<int>> r = runs;
    ++*r;
    absl::StatusOr<Instance> child = co_await ctx.start_agent("Deployer");
    if (!child.ok()) {
      co_return child.status();
    }
    if (fail) {
      co_return absl::InternalError("deploy went wrong");
    }
    co_return absl::OkStatus();
  });
  return app;
}

// The recorded Deploy's execution, once it is finished.
std::optional<grpc2::ExecutionSummary> FinishedDeploy(
    const std::vector<grpc2::ExecutionSummary>& executions) {
  for (const auto& summary : executions) {
    if (summary.execution().execution() == "Deployer-deploy-deploy" && summary.finished()) {
      return summary;
    }
  }
  return std::nullopt;
}

TEST_F(RestartTest, ARecordedDeployRunsOncePerFabric) {
  auto runs = std::make_shared<std::atomic<int>>(0);
  Agent app = DeployingAgent(runs, /*fail=*/false);
  {
    Runtime runtime(app, Options(/*record_deploy=*/true));
    ASSERT_TRUE(runtime.Start().ok());
    ASSERT_TRUE(
        WaitFor([&] { return FinishedDeploy(Executions("Deployer-deploy")).has_value(); }, 20s));
    runtime.RequestStop();
    EXPECT_EQ(runtime.Wait(), 0);
  }
  EXPECT_EQ(runs->load(), 1);
  std::optional<grpc2::ExecutionSummary> recorded = FinishedDeploy(Executions("Deployer-deploy"));
  ASSERT_TRUE(recorded.has_value());
  EXPECT_EQ(recorded->instance().agent(), "perper.Deploy");
  EXPECT_EQ(recorded->delegate(), "Deploy");
  EXPECT_FALSE(recorded->failed());

  // The instance it started has a derived ID and is recorded as the deploy instance's child.
  std::string child = "Run-" + DerivedUuid("Deployer-deploy-deploy", 1);
  {
    auto stub = grpc2::FabricStatesList::NewStub(fabric_->NewChannel());
    grpc2::StatesListCountItemsRequest request;
    request.mutable_list()->set_list("Deployer-deploy-children");
    grpc::ClientContext context;
    grpc2::StatesListCountItemsResponse response;
    ASSERT_TRUE(stub->CountItems(&context, request, &response).ok());
    EXPECT_EQ(response.count(), 1);
  }
  // (The Registry record of an instance is the execution of its ID on the agent type.)
  bool registered = false;
  for (const auto& summary : Executions("Deployer")) {
    registered = registered || summary.execution().execution() == child;
  }
  EXPECT_TRUE(registered) << child;

  // Again on the same Fabric: Deploy does not run.
  uint64_t skipped = internal::ProcessCounters().deploys_skipped.load();
  {
    Runtime runtime(app, Options(/*record_deploy=*/true));
    ASSERT_TRUE(runtime.Start().ok());
    ASSERT_TRUE(WaitFor(
        [&] { return internal::ProcessCounters().deploys_skipped.load() == skipped + 1; }, 20s));
    runtime.RequestStop();
    EXPECT_EQ(runtime.Wait(), 0);
  }
  EXPECT_EQ(runs->load(), 1);

  // Without recording, Deploy runs as before, every time.
  {
    Runtime runtime(app, Options(/*record_deploy=*/false));
    ASSERT_TRUE(runtime.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return runs->load() == 2; }, 20s));
    runtime.RequestStop();
    EXPECT_EQ(runtime.Wait(), 0);
  }
}

TEST_F(RestartTest, ARecordedDeployThatFailsIsCompletedWithItsError) {
  auto runs = std::make_shared<std::atomic<int>>(0);
  Agent app = DeployingAgent(runs, /*fail=*/true);
  Runtime runtime(app, Options(/*record_deploy=*/true));
  ASSERT_TRUE(runtime.Start().ok());
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(
      WaitFor([&] { return FinishedDeploy(Executions("Deployer-deploy")).has_value(); }, 20s));
  ASSERT_TRUE(GetResult("Deployer-deploy-deploy", &response).ok());
  EXPECT_THAT(response.error().message(), HasSubstr("deploy went wrong"));
  EXPECT_TRUE(FinishedDeploy(Executions("Deployer-deploy"))->failed());
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
  EXPECT_EQ(runs->load(), 1);
}

TEST(RunOptionsTest, RecordDeployComesFromTheEnvironment) {
  ASSERT_EQ(setenv("X_PERPER_RECORD_DEPLOY", "1", 1), 0);
  EXPECT_TRUE(RunOptions::FromEnvironment("A")->record_deploy);
  ASSERT_EQ(setenv("X_PERPER_RECORD_DEPLOY", "0", 1), 0);
  EXPECT_FALSE(RunOptions::FromEnvironment("A")->record_deploy);
  ASSERT_EQ(unsetenv("X_PERPER_RECORD_DEPLOY"), 0);
  EXPECT_FALSE(RunOptions::FromEnvironment("A")->record_deploy);
}

}  // namespace
}  // namespace perper
