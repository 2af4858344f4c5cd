// SPDX-License-Identifier: MIT
// The agent SDK against a real perper-fabric process over gRPC on loopback: calls between
// agents (in this process and in a second process), results, errors, cancellation, many
// concurrent calls, the process lifecycle.
#include "perper/agent/agent.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "sdk/cpp/src/perper/agent/counters.h"
#include "sdk/cpp/tests/child_process.h"
#include "sdk/cpp/tests/drive.h"
#include "tests/support/fabric_process.h"

namespace perper {
namespace {

using ::perper::testing::ChildProcess;
using ::perper::testing::DriveAgent;
using ::perper::testing::FabricProcess;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  RunOptions Options(uint32_t concurrency = 64) const {
    RunOptions options;
    options.fabric_endpoint = fabric_->address();
    options.concurrency = concurrency;
    return options;
  }

  std::unique_ptr<FabricProcess> fabric_;
};

Agent CalculatorAgent() {
  Agent app("Calculator");
  app.on("Add", [](Context& ctx, int64_t a, int64_t b) -> Task<int64_t> { co_return a + b; });
  app.on(
      "DivMod",
      [](Context& ctx, int64_t a, int64_t b) -> Task<absl::StatusOr<std::tuple<int64_t, int64_t>>> {
        if (b == 0) {
          co_return absl::InvalidArgumentError("division by zero");
        }
        co_return std::make_tuple(a / b, a % b);
      });
  app.on("Throw", [](Context& ctx, std::string what) -> Task<void> {
    throw std::runtime_error("thrown: " + what);
    co_return;
  });
  app.on("WhoAmI", [](Context& ctx) -> Task<std::string> { co_return ctx.instance().instance(); });
  app.on("Maybe", [](Context& ctx, std::optional<int64_t> x) -> Task<std::optional<std::string>> {
    if (!x.has_value()) {
      co_return std::nullopt;
    }
    co_return std::to_string(*x);
  });
  return app;
}

TEST_F(AgentTest, CallsAnotherAgentAndReadsResults) {
  Agent calculator = CalculatorAgent();
  Runtime runtime(calculator, Options());
  ASSERT_TRUE(runtime.Start().ok());

  Result<int64_t> sum;
  Result<std::tuple<int64_t, int64_t>> divmod;
  Result<std::string> who;
  Result<std::optional<std::string>> some;
  Result<std::optional<std::string>> none;
  Result<void> void_call;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    Instance calc = ctx.agent("Calculator", "calc-1");
    sum = co_await calc.call<int64_t>("Add", 40, int64_t{2});
    divmod = co_await calc.call<std::tuple<int64_t, int64_t>>("DivMod", 17, 5);
    who = co_await calc.call<std::string>("WhoAmI");
    some = co_await calc.call<std::optional<std::string>>("Maybe", 7);
    none = co_await calc.call<std::optional<std::string>>("Maybe", std::nullopt);
    void_call = co_await calc.call("Add", 1, 1);
  }));
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 42);
  ASSERT_TRUE(divmod.ok()) << divmod.status();
  EXPECT_EQ(*divmod, std::make_tuple(3, 2));
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, "calc-1");
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_EQ(*some, "7");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, std::nullopt);
  EXPECT_TRUE(void_call.ok()) << void_call;
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(AgentTest, HandlerErrorsReachTheCallerWithTheirMessage) {
  Agent calculator = CalculatorAgent();
  Runtime runtime(calculator, Options());
  ASSERT_TRUE(runtime.Start().ok());

  Result<std::tuple<int64_t, int64_t>> by_zero;
  Result<void> thrown;
  Result<void> long_thrown;
  Result<int64_t> unknown;
  Result<int64_t> mismatch;
  Result<int64_t> too_many;
  Result<std::string> wrong_result_type;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    Instance calc = ctx.agent("Calculator", "calc-1");
    by_zero = co_await calc.call<std::tuple<int64_t, int64_t>>("DivMod", 1, 0);
    thrown = co_await calc.call("Throw", "bad input");
    // Longer than the Fabric's limit on error texts: cut by the SDK, so the call still fails.
    long_thrown = co_await calc.call("Throw", std::string(100000, 'x'));
    unknown = co_await calc.call<int64_t>("Multiply", 2, 3);
    mismatch = co_await calc.call<int64_t>("Add", "one", 2);
    too_many = co_await calc.call<int64_t>("Add", 1, 2, 3);
    wrong_result_type = co_await calc.call<std::string>("Add", 1, 2);
  }));
  ASSERT_FALSE(by_zero.ok());
  EXPECT_EQ(by_zero.status().code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(by_zero.status().message(), HasSubstr("Calculator.DivMod"));
  EXPECT_THAT(by_zero.status().message(), HasSubstr("failed: division by zero"));
  ASSERT_FALSE(thrown.ok());
  EXPECT_THAT(thrown.message(), HasSubstr("thrown: bad input"));
  ASSERT_FALSE(long_thrown.ok());
  EXPECT_THAT(long_thrown.message(), HasSubstr("thrown: xxxxxxxx"));
  EXPECT_THAT(long_thrown.message(), HasSubstr(" bytes in all]"));
  EXPECT_LT(long_thrown.message().size(), 70000u);
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("agent Calculator has no delegate Multiply"));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(mismatch.status().message(),
              HasSubstr("argument 0 of delegate Add: cannot read google.protobuf.StringValue as "
                        "int64_t"));
  ASSERT_FALSE(too_many.ok());
  EXPECT_THAT(too_many.status().message(), HasSubstr("delegate Add takes 2 arguments, got 3"));
  ASSERT_FALSE(wrong_result_type.ok());
  EXPECT_EQ(wrong_result_type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_result_type.status().message(),
              HasSubstr("cannot read google.protobuf.Int64Value as std::string"));
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// What a blocking handler saw when it ended.
struct BlockObservation {
  std::promise<void> started;
  std::promise<std::pair<asio::error_code, bool>> ended;  // the timer's error, ctx.cancelled()
};

Agent SleeperAgent(std::shared_ptr<BlockObservation> observation,
                   std::shared_ptr<std::promise<absl::Status>> relay_status) {
  Agent app("Sleeper");
  app.on("Block", [observation](Context& ctx) -> Task<void> {
    observation->started.set_value();
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::minutes(5));
    auto [error] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    observation->ended.set_value({error, ctx.cancelled()});
  });
  // Calls Block on another instance; cancelling Relay cancels that call.
  app.on("Relay", [relay_status](Context& ctx) -> Task<void> {
    Result<void> result = co_await ctx.agent("Sleeper", "sleeper-2").call("Block");
    relay_status->set_value(result);
  });
  return app;
}

grpc2::ExecutionsCreateRequest CreateRequest(const std::string& id, const std::string& delegate) {
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution(id);
  request.mutable_instance()->set_instance("sleeper-1");
  request.mutable_instance()->set_agent("Sleeper");
  request.set_delegate(delegate);
  return request;
}

TEST_F(AgentTest, DeletingAnExecutionCancelsItsHandler) {
  auto observation = std::make_shared<BlockObservation>();
  auto relay = std::make_shared<std::promise<absl::Status>>();
  Agent sleeper = SleeperAgent(observation, relay);
  Runtime runtime(sleeper, Options());
  ASSERT_TRUE(runtime.Start().ok());

  auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
  {
    grpc::ClientContext context;
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Create(&context, CreateRequest("Block-1", "Block"), &empty).ok());
  }
  ASSERT_EQ(observation->started.get_future().wait_for(10s), std::future_status::ready);
  {
    grpc::ClientContext context;
    grpc2::ExecutionsDeleteRequest request;
    request.mutable_execution()->set_execution("Block-1");
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Delete(&context, request, &empty).ok());
  }
  auto ended = observation->ended.get_future();
  ASSERT_EQ(ended.wait_for(10s), std::future_status::ready);
  auto [error, cancelled] = ended.get();
  EXPECT_EQ(error, asio::error::operation_aborted);
  EXPECT_TRUE(cancelled);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(AgentTest, CancellingACallerCancelsTheCallItIsWaitingFor) {
  auto observation = std::make_shared<BlockObservation>();
  auto relay = std::make_shared<std::promise<absl::Status>>();
  Agent sleeper = SleeperAgent(observation, relay);
  Runtime runtime(sleeper, Options());
  ASSERT_TRUE(runtime.Start().ok());

  auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
  {
    grpc::ClientContext context;
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Create(&context, CreateRequest("Relay-1", "Relay"), &empty).ok());
  }
  // Relay's call created a Block execution, whose handler now runs.
  ASSERT_EQ(observation->started.get_future().wait_for(10s), std::future_status::ready);
  {
    grpc::ClientContext context;
    grpc2::ExecutionsDeleteRequest request;
    request.mutable_execution()->set_execution("Relay-1");
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Delete(&context, request, &empty).ok());
  }
  auto relay_status = relay->get_future();
  ASSERT_EQ(relay_status.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(relay_status.get().code(), absl::StatusCode::kCancelled);
  auto ended = observation->ended.get_future();
  ASSERT_EQ(ended.wait_for(10s), std::future_status::ready);
  auto [error, cancelled] = ended.get();
  EXPECT_EQ(error, asio::error::operation_aborted);
  EXPECT_TRUE(cancelled);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// Results travel on the ListenAndReserve call, with the credit they free: no unary Complete,
// neither while serving nor at stop, and the callers get the right values and errors.
TEST_F(AgentTest, ResultsAreSentOnTheReservationCallNotByUnaryComplete) {
  constexpr int kCalls = 300;
  internal::Counters& counters = internal::ProcessCounters();
  const uint64_t unary_before = counters.unary_completes.load();
  const uint64_t stream_before = counters.stream_completions.load();
  Agent calculator = CalculatorAgent();
  Runtime runtime(calculator, Options(/*concurrency=*/8));
  ASSERT_TRUE(runtime.Start().ok());

  std::vector<Result<int64_t>> sums;
  Result<void> thrown;
  Result<void> long_thrown;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    std::vector<Task<Result<int64_t>>> calls;
    for (int i = 0; i < kCalls; ++i) {
      calls.push_back(ctx.agent("Calculator", "calc-1").call<int64_t>("Add", i, 7));
    }
    sums = co_await WhenAll(std::move(calls));
    thrown = co_await ctx.agent("Calculator", "calc-1").call("Throw", std::string("x"));
  }));
  ASSERT_EQ(sums.size(), static_cast<size_t>(kCalls));
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(sums[i].ok()) << i << ": " << sums[i].status();
    EXPECT_EQ(*sums[i], i + 7);
  }
  EXPECT_FALSE(thrown.ok());
  EXPECT_THAT(thrown.message(), HasSubstr("thrown: x"));
  EXPECT_EQ(counters.unary_completes.load() - unary_before, 0u);
  EXPECT_EQ(counters.stream_completions.load() - stream_before, kCalls + 1u);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
  EXPECT_EQ(counters.unary_completes.load() - unary_before, 0u);
}

// A result over 1 MiB goes by unary Complete, as in the Python and .NET SDKs (STYLE.md): only its
// credit rides on the reservation call, so the next execution still runs and gets its answer.
TEST_F(AgentTest, AResultOverOneMebibyteIsSentByUnaryComplete) {
  internal::Counters& counters = internal::ProcessCounters();
  const uint64_t unary_before = counters.unary_completes.load();
  const uint64_t stream_before = counters.stream_completions.load();
  Agent big("Big");
  big.on("Make", [](Context& ctx, int64_t bytes) -> Task<std::string> {
    co_return std::string(static_cast<size_t>(bytes), 'x');
  });
  // One credit: the second call runs only once the first one's credit has come back.
  Runtime runtime(big, Options(/*concurrency=*/1));
  ASSERT_TRUE(runtime.Start().ok());
  Result<std::string> large;
  Result<std::string> small;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    large = co_await ctx.agent("Big", "big-1").call<std::string>("Make", int64_t{2 << 20});
    small = co_await ctx.agent("Big", "big-1").call<std::string>("Make", int64_t{1000});
  }));
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_EQ(large->size(), size_t{2 << 20});
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->size(), 1000u);
  EXPECT_EQ(counters.unary_completes.load() - unary_before, 1u);
  EXPECT_EQ(counters.stream_completions.load() - stream_before, 1u);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// 10,000 calls in flight from one process into another, each a coroutine (no thread each); the
// agent takes up to 10,000 executions at once.
TEST_F(AgentTest, TenThousandConcurrentCallsIntoOneAgentComplete) {
  // PERPER_SDK_TEST_CALLS changes the count for a measurement.
  const char* override_calls = std::getenv("PERPER_SDK_TEST_CALLS");
  const int kCalls = override_calls != nullptr ? std::atoi(override_calls) : 10000;
  Agent calculator = CalculatorAgent();
  Runtime runtime(calculator, Options(/*concurrency=*/10000));
  ASSERT_TRUE(runtime.Start().ok());

  std::vector<Result<int64_t>> sums;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(DriveAgent(
      fabric_->address(),
      [&](Context& ctx) -> Task<void> {
        std::vector<Task<Result<int64_t>>> calls;
        for (int i = 0; i < kCalls; ++i) {
          calls.push_back(ctx.agent("Calculator", "calc-1").call<int64_t>("Add", i, 1000000));
        }
        sums = co_await WhenAll(std::move(calls));
      },
      /*timeout=*/120s));
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("calls_per_second", static_cast<int>(kCalls / elapsed));
  std::printf("%d concurrent calls in %.3f s\n", kCalls, elapsed);
  ASSERT_EQ(sums.size(), static_cast<size_t>(kCalls));
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(sums[i].ok()) << i << ": " << sums[i].status();
    EXPECT_EQ(*sums[i], i + 1000000);
  }
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(AgentTest, SecondProcessServesCallsAndInstancesAndStopsOnSigterm) {
  ChildProcess calculator(PERPER_CALCULATOR_BINARY,
                          {"PERPER_FABRIC_ENDPOINT=" + fabric_->address()});
  Result<int64_t> sum;
  Result<int64_t> triple;
  Result<std::tuple<int64_t, int64_t>> by_zero;
  Result<double> sqrt_negative;
  absl::StatusOr<Instance> started;
  Result<std::string> who;
  absl::Status destroyed;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    Instance calc = ctx.agent("Calculator", "calc-1");
    sum = co_await calc.call<int64_t>("Add", 1, 2);
    triple = co_await calc.call<int64_t>("Triple", 14);
    by_zero = co_await calc.call<std::tuple<int64_t, int64_t>>("DivMod", 1, 0);
    sqrt_negative = co_await calc.call<double>("Sqrt", -1.0);
    started = co_await ctx.start_agent("Calculator");
    if (started.ok()) {
      who = co_await started->call<std::string>("WhoAmI");
      destroyed = co_await started->destroy();
    }
  })) << calculator.Output();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 3);
  ASSERT_TRUE(triple.ok()) << triple.status();
  EXPECT_EQ(*triple, 42);
  EXPECT_THAT(by_zero.status().message(), HasSubstr("division by zero"));
  EXPECT_THAT(sqrt_negative.status().message(), HasSubstr("square root of a negative number"));
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_THAT(started->id(), ::testing::StartsWith("Run-"));
  EXPECT_EQ(started->agent(), "Calculator");
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, started->id());
  EXPECT_TRUE(destroyed.ok()) << destroyed;

  calculator.Kill(SIGTERM);
  EXPECT_EQ(calculator.Wait(10s), 0) << calculator.Output();
}

TEST_F(AgentTest, HelloAgentPrintsItsGreetingAndExits) {
  ChildProcess hello(PERPER_HELLO_BINARY, {"PERPER_FABRIC_ENDPOINT=" + fabric_->address()});
  EXPECT_EQ(hello.Wait(20s), 0) << hello.Output();
  EXPECT_THAT(hello.Output(), HasSubstr("Hello, world!\n"));
}

TEST_F(AgentTest, BadConfigurationExitsWithTwo) {
  ChildProcess hello(PERPER_HELLO_BINARY,
                     {"PERPER_FABRIC_ENDPOINT=" + fabric_->address(), "PERPER_CONCURRENCY=lots"});
  EXPECT_EQ(hello.Wait(10s), 2);
  EXPECT_THAT(hello.Output(), HasSubstr("PERPER_CONCURRENCY must be a positive integer"));
}

// PERPER_LOG_LEVEL sets the SDK's level, as it does the Fabric's; an unknown one is refused.
TEST_F(AgentTest, TheLogLevelComesFromTheEnvironment) {
  std::string endpoint = "PERPER_FABRIC_ENDPOINT=" + fabric_->address();
  ChildProcess plain(PERPER_HELLO_BINARY, {endpoint});
  ChildProcess quiet(PERPER_HELLO_BINARY, {endpoint, "PERPER_LOG_LEVEL=warn"});
  ASSERT_EQ(plain.Wait(20s), 0) << plain.Output();
  ASSERT_EQ(quiet.Wait(20s), 0) << quiet.Output();
  EXPECT_THAT(plain.Output(),
              ::testing::ContainsRegex("(^|\n)[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                       "\\.[0-9]{3} I sdk: \\[agent=Hello\\] serving from "));
  EXPECT_THAT(quiet.Output(), HasSubstr("Hello, world!\n"));
  EXPECT_THAT(quiet.Output(), ::testing::Not(HasSubstr(" I sdk: ")));

  ChildProcess bad(PERPER_HELLO_BINARY, {endpoint, "PERPER_LOG_LEVEL=loud"});
  EXPECT_EQ(bad.Wait(10s), 2);
  EXPECT_THAT(bad.Output(), HasSubstr("PERPER_LOG_LEVEL must be trace, debug, info, warn, error "
                                      "or off, got 'loud'"));
}

// This process's stderr (where the SDK logs) into a file that can be read while it grows.
class StderrCapture {
 public:
  StderrCapture() : path_(::testing::TempDir() + "/stderr-" + std::to_string(::getpid())) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    std::FILE* file = std::fopen(path_.c_str(), "w");
    ::dup2(::fileno(file), 2);
    std::fclose(file);
  }
  ~StderrCapture() {
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    std::remove(path_.c_str());
  }
  std::string Read() const {
    std::fflush(stderr);
    std::ifstream in(path_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  std::string path_;
  int saved_ = -1;
};

// A call to an agent no process serves warns, naming the agent, once it has waited a while, and
// is answered when a process starts serving it; a slow call to a served agent warns of nothing.
TEST_F(AgentTest, ACallToAnAgentNoProcessServesSaysSoAndGoesOnWaiting) {
  auto asked = std::make_shared<std::promise<std::pair<Result<int64_t>, Result<int64_t>>>>();
  auto answer = asked->get_future();
  Agent caller("Caller");
  caller.on("Slow", [](Context& ctx, int64_t x) -> Task<int64_t> {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(600));
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    co_return x;
  });
  caller.on_deploy([asked](Context& ctx) -> Task<void> {
    Result<int64_t> slow = co_await ctx.agent("Caller", "caller-1").call<int64_t>("Slow", 7);
    Result<int64_t> plus = co_await ctx.agent("Lonely", "lonely-1").call<int64_t>("Plus", 1);
    asked->set_value({std::move(slow), std::move(plus)});
  });
  RunOptions options = Options();
  options.unserved_check_after = std::chrono::milliseconds(200);
  StderrCapture captured;
  Runtime runtime(caller, options);
  ASSERT_TRUE(runtime.Start().ok());
  const std::string warning = "no process serves agent Lonely";
  ASSERT_TRUE(
      testing::WaitFor([&] { return captured.Read().find(warning) != std::string::npos; }, 20s))
      << captured.Read();
  EXPECT_EQ(answer.wait_for(0s), std::future_status::timeout);

  Agent lonely("Lonely");
  lonely.on("Plus", [](Context& ctx, int64_t x) -> Task<int64_t> { co_return x + 1; });
  Runtime serving(lonely, Options());
  ASSERT_TRUE(serving.Start().ok());
  ASSERT_EQ(answer.wait_for(20s), std::future_status::ready);
  auto [slow, plus] = answer.get();
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(*slow, 7);
  ASSERT_TRUE(plus.ok()) << plus.status();
  EXPECT_EQ(*plus, 2);
  serving.RequestStop();
  EXPECT_EQ(serving.Wait(), 0);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);

  std::string log = captured.Read();
  EXPECT_THAT(log, HasSubstr(" W sdk: [agent=Caller exec="));
  EXPECT_EQ(log.find(warning), log.rfind(warning)) << log;  // Said once.
  EXPECT_THAT(log, ::testing::Not(HasSubstr("no process serves agent Caller"))) << log;
}

size_t Occurrences(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
    ++count;
  }
  return count;
}

// start_agent and destroy wait for the instance's Start or Stop to run in a process of its
// agent: with none (a process serving "sensor" while the Deploy says "Sensor"), the wait is
// named, once, and ends when a process serves it.
TEST_F(AgentTest, StartingOrDestroyingAnAgentNoProcessServesSaysSoAndGoesOnWaiting) {
  auto start = std::make_shared<std::promise<absl::StatusOr<std::pair<Instance, int64_t>>>>();
  auto started_future = start->get_future();
  Agent caller("Caller");
  caller.on_deploy([start](Context& ctx) -> Task<void> {
    start->set_value(co_await ctx.start_agent<int64_t>("Sensor", 5));
  });
  Agent sensor("Sensor");
  sensor.on("Start", [](Context& ctx, int64_t x) -> Task<int64_t> { co_return x * 2; });
  RunOptions options = Options();
  options.unserved_check_after = std::chrono::milliseconds(200);
  StderrCapture captured;
  const std::string warning = "no process serves agent Sensor";
  auto warned = [&](size_t times) {
    return testing::WaitFor([&] { return Occurrences(captured.Read(), warning) == times; }, 20s);
  };
  // Serves Sensor until `future` (a wait on Sensor) is ready; false if it never is.
  auto served = [&](auto& future) {
    Runtime serving(sensor, Options());
    EXPECT_TRUE(serving.Start().ok());
    bool ready = future.wait_for(20s) == std::future_status::ready;
    serving.RequestStop();
    EXPECT_EQ(serving.Wait(), 0);
    return ready;
  };
  Runtime runtime(caller, options);
  ASSERT_TRUE(runtime.Start().ok());
  ASSERT_TRUE(warned(1)) << captured.Read();
  EXPECT_EQ(started_future.wait_for(0s), std::future_status::timeout);
  ASSERT_TRUE(served(started_future));
  auto started = started_future.get();
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->second, 10);
  const std::string id = started->first.id();
  EXPECT_THAT(captured.Read(), HasSubstr("[agent=Caller exec=" + id + "] waiting for Sensor"));

  auto destroy = std::make_shared<std::promise<absl::Status>>();
  auto destroyed = destroy->get_future();
  Agent destroyer("Destroyer");
  destroyer.on_deploy([destroy, id](Context& ctx) -> Task<void> {
    destroy->set_value(co_await ctx.agent("Sensor", id).destroy());
  });
  Runtime destroying(destroyer, options);
  ASSERT_TRUE(destroying.Start().ok());
  ASSERT_TRUE(warned(2)) << captured.Read();
  EXPECT_EQ(destroyed.wait_for(0s), std::future_status::timeout);
  ASSERT_TRUE(served(destroyed));
  EXPECT_TRUE(destroyed.get().ok());
  destroying.RequestStop();
  EXPECT_EQ(destroying.Wait(), 0);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
  EXPECT_EQ(Occurrences(captured.Read(), warning), 2) << captured.Read();
}

TEST_F(AgentTest, InstanceStateIsKeptInTheFabricPerInstance) {
  Agent counter("Counter");
  counter.on("Increment", [](Context& ctx) -> Task<absl::StatusOr<int64_t>> {
    Dictionary state = ctx.state();
    absl::StatusOr<std::optional<int64_t>> count = co_await state.get<int64_t>("count");
    if (!count.ok()) {
      co_return count.status();
    }
    int64_t next = count->value_or(0) + 1;
    if (absl::Status written = co_await state.set("count", next); !written.ok()) {
      co_return written;
    }
    co_return next;
  });
  counter.on("Reset", [](Context& ctx) -> Task<absl::StatusOr<bool>> {
    co_return co_await ctx.state().remove("count");
  });
  counter.on("ReadAsText", [](Context& ctx) -> Task<absl::StatusOr<std::optional<std::string>>> {
    co_return co_await ctx.state().get<std::string>("count");
  });
  Runtime runtime(counter, Options());
  ASSERT_TRUE(runtime.Start().ok());

  std::vector<Result<int64_t>> a;
  Result<int64_t> b;
  Result<std::optional<std::string>> as_text;
  Result<bool> removed;
  Result<bool> removed_again;
  Result<int64_t> after_reset;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    Instance first = ctx.agent("Counter", "counter-a");
    for (int i = 0; i < 3; ++i) {
      a.push_back(co_await first.call<int64_t>("Increment"));
    }
    b = co_await ctx.agent("Counter", "counter-b").call<int64_t>("Increment");
    as_text = co_await first.call<std::optional<std::string>>("ReadAsText");
    removed = co_await first.call<bool>("Reset");
    removed_again = co_await first.call<bool>("Reset");
    after_reset = co_await first.call<int64_t>("Increment");
  }));
  ASSERT_EQ(a.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(a[i].ok()) << a[i].status();
    EXPECT_EQ(*a[i], i + 1);
  }
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, 1);
  ASSERT_FALSE(as_text.ok());
  EXPECT_THAT(as_text.status().message(),
              HasSubstr("cannot read google.protobuf.Int64Value as std::string"));
  ASSERT_TRUE(removed.ok() && removed_again.ok());
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(*removed_again);
  ASSERT_TRUE(after_reset.ok()) << after_reset.status();
  EXPECT_EQ(*after_reset, 1);

  // The dictionary is "<instance>-", readable by any client.
  auto stub = grpc2::FabricStatesDictionary::NewStub(fabric_->NewChannel());
  grpc::ClientContext context;
  grpc2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary("counter-b-");
  *request.mutable_key() = ToAny("count");
  request.set_get_existing_value(true);
  grpc2::StatesDictionaryOperateResponse response;
  ASSERT_TRUE(stub->Operate(&context, request, &response).ok());
  EXPECT_EQ(*FromAny<int64_t>(response.previous_value()), 1);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(AgentTest, StreamItemsReachAConsumerInOrderThenTheStreamCompletes) {
  // A producer in a second agent writes the characters of a message to a stream it is given,
  // then completes it.
  Agent producer("Producer");
  producer.on(
      "Spell",
      [](Context& ctx, grpc2::model::PerperStream model, std::string text) -> Task<absl::Status> {
        Stream stream = ctx.stream(model);
        for (char c : text) {
          if (absl::Status written = co_await stream.write(std::string(1, c)); !written.ok()) {
            co_return written;
          }
        }
        co_return co_await stream.complete();
      });
  Runtime runtime(producer, Options());
  ASSERT_TRUE(runtime.Start().ok());

  const std::string message = "Hello world through stream!";
  std::string received;
  absl::Status spelled;
  absl::Status end;
  bool ended = false;
  std::size_t max_queued = 0;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.blank_stream();
    if (!stream.ok()) {
      end = stream.status();
      co_return;
    }
    // Listening first, with room for 4 items: the reader pauses and resumes reading.
    StreamReader<std::string> reader = stream->listen<std::string>("", /*capacity=*/4);
    spelled = co_await ctx.agent("Producer", "p-1").call("Spell", stream->model(), message);
    while (true) {
      absl::StatusOr<std::optional<std::string>> item = co_await reader.next();
      if (!item.ok()) {
        end = item.status();
        break;
      }
      if (!item->has_value()) {
        ended = true;
        break;
      }
      received += **item;
    }
    max_queued = reader.MaxQueuedForTest();
  }));
  EXPECT_TRUE(spelled.ok()) << spelled;
  EXPECT_TRUE(end.ok()) << end;
  EXPECT_TRUE(ended);
  EXPECT_EQ(received, message);
  EXPECT_GE(max_queued, 1u);
  EXPECT_LE(max_queued, 4u);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

TEST_F(AgentTest, AFailedStreamEndsItsConsumerWithTheError) {
  absl::Status end;
  std::vector<int64_t> items;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.blank_stream(/*ephemeral=*/true);
    if (!stream.ok()) {
      end = stream.status();
      co_return;
    }
    (void)co_await stream->write(int64_t{1});
    (void)co_await stream->write(int64_t{2});
    (void)co_await stream->complete("producer crashed");
    StreamReader<int64_t> reader = stream->listen<int64_t>();
    while (true) {
      absl::StatusOr<std::optional<int64_t>> item = co_await reader.next();
      if (!item.ok() || !item->has_value()) {
        end = item.status();
        break;
      }
      items.push_back(**item);
    }
  }));
  EXPECT_EQ(items, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(end.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(end.message(), HasSubstr("producer crashed"));
}

TEST(RunOptionsTest, ReadsTheEnvironment) {
  setenv("PERPER_FABRIC_ENDPOINT", "http://10.0.0.1:1234", 1);
  setenv("X_PERPER_AGENT", "Calculator", 1);
  setenv("X_PERPER_INSTANCE", "Run-7", 1);
  setenv("PERPER_WORKGROUP", "w", 1);
  setenv("PERPER_CONCURRENCY", "9", 1);
  auto options = RunOptions::FromEnvironment("Calculator");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->fabric_endpoint, "http://10.0.0.1:1234");
  EXPECT_EQ(options->instance, "Run-7");
  EXPECT_EQ(options->workgroup, "w");
  EXPECT_EQ(options->concurrency, 9u);

  auto other = RunOptions::FromEnvironment("Printer");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("X_PERPER_AGENT is Calculator"));
  for (const char* name : {"PERPER_FABRIC_ENDPOINT", "X_PERPER_AGENT", "X_PERPER_INSTANCE",
                           "PERPER_WORKGROUP", "PERPER_CONCURRENCY"}) {
    unsetenv(name);
  }
}

}  // namespace
}  // namespace perper
