// SPDX-License-Identifier: MIT
// Several Fabric addresses: PERPER_FABRIC_ENDPOINT's list (parsed by ParseFabricEndpoints,
// tests/unit/fabric_endpoints_test.cc), the start address, and moving to the next address when
// the current one fails. Two independent Fabrics (separate storage), and a
// "dead" address: a free port with nothing listening.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "sdk/cpp/tests/call_add.h"
#include "sdk/cpp/tests/child_process.h"
#include "sdk/cpp/tests/dead_address.h"
#include "tests/support/fabric_process.h"

namespace perper {
namespace {

using ::perper::testing::ChildProcess;
using ::perper::testing::DeadAddress;
using ::perper::testing::FabricProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

grpc::Status CallAdd(const FabricProcess& fabric, int64_t a, int64_t b, int64_t* sum) {
  return testing::CallAdd(fabric.NewChannel(), a, b, sum);
}

// A Calculator runtime on `endpoint`, started at address `index`.
std::unique_ptr<Runtime> StartCalculator(const Agent& calculator, const std::string& endpoint,
                                         size_t index) {
  RunOptions options;
  options.fabric_endpoint = endpoint;
  options.fabric_endpoint_index = index;
  auto runtime = std::make_unique<Runtime>(calculator, options);
  EXPECT_TRUE(runtime->Start().ok());
  return runtime;
}

Agent Calculator() {
  Agent app("Calculator");
  app.on("Add", [](int64_t a, int64_t b) -> Task<int64_t> { co_return a + b; });
  return app;
}

TEST(FabricEndpointsTest, TheEnvironmentVariablesAreChecked) {
  setenv("PERPER_FABRIC_ENDPOINT", "a:1, http://b:2", 1);
  setenv("PERPER_FABRIC_ENDPOINT_INDEX", "1", 1);
  auto options = RunOptions::FromEnvironment("Calculator");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->fabric_endpoint, "a:1, http://b:2");
  EXPECT_EQ(options->fabric_endpoint_index, 1u);

  setenv("PERPER_FABRIC_ENDPOINT", "a:1,,b:2", 1);
  options = RunOptions::FromEnvironment("Calculator");
  ASSERT_FALSE(options.ok());
  EXPECT_NE(options.status().message().find("PERPER_FABRIC_ENDPOINT 'a:1,,b:2'"), std::string::npos)
      << options.status();

  setenv("PERPER_FABRIC_ENDPOINT", "a:1", 1);
  setenv("PERPER_FABRIC_ENDPOINT_INDEX", "x", 1);
  EXPECT_FALSE(RunOptions::FromEnvironment("Calculator").ok());
  unsetenv("PERPER_FABRIC_ENDPOINT_INDEX");
  options = RunOptions::FromEnvironment("Calculator");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_FALSE(options->fabric_endpoint_index.has_value());
  unsetenv("PERPER_FABRIC_ENDPOINT");
}

TEST(FabricEndpointsTest, ARuntimeRejectsAnEmptyEntry) {
  Agent calculator = Calculator();
  RunOptions options;
  options.fabric_endpoint = "127.0.0.1:1,";
  Runtime runtime(calculator, options);
  absl::Status status = runtime.Start();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
}

// The start address is dead: the listen call and the Deploy's calls reach the second one.
TEST(FabricEndpointsTest, AnAgentWhoseStartAddressIsDeadReachesTheNext) {
  FabricProcess b({"--storage", "memory"});
  ASSERT_TRUE(b.Start()) << b.Log();
  Agent app = Calculator();
  auto deployed = std::make_shared<std::promise<Result<int64_t>>>();
  app.on_deploy([deployed]() -> Task<void> {
    deployed->set_value(co_await call<int64_t>("Add", int64_t{1}, int64_t{2}));
  });
  RunOptions options;
  options.fabric_endpoint = DeadAddress() + "," + b.address();
  options.fabric_endpoint_index = 0;
  Runtime runtime(app, options);
  ASSERT_TRUE(runtime.Start().ok());

  auto future = deployed->get_future();
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready) << b.Log();
  Result<int64_t> sum = future.get();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 3);
  int64_t served = 0;
  grpc::Status status = CallAdd(b, 20, 22, &served);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(served, 42);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// Serving on A; A is killed: the agent moves to B and serves an execution created there.
TEST(FabricEndpointsTest, AnAgentMovesToTheNextAddressWhenItsFabricDies) {
  FabricProcess a({"--storage", "memory"});
  FabricProcess b({"--storage", "memory"});
  ASSERT_TRUE(a.Start()) << a.Log();
  ASSERT_TRUE(b.Start()) << b.Log();
  Agent calculator = Calculator();
  auto runtime = StartCalculator(calculator, a.address() + "," + b.address(), 0);

  int64_t sum = 0;
  grpc::Status status = CallAdd(a, 1, 2, &sum);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << a.Log();
  EXPECT_EQ(sum, 3);

  a.Kill(SIGKILL);
  a.Wait();
  status = CallAdd(b, 20, 22, &sum);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << b.Log();
  EXPECT_EQ(sum, 42);
  runtime->RequestStop();
  EXPECT_EQ(runtime->Wait(), 0);
}

// The SDK says "serving" once a Fabric has answered its listen call, naming that one: not the
// dead start address, which it only moves away from.
TEST(FabricEndpointsTest, ServingIsLoggedOnceAFabricAnswers) {
  FabricProcess b({"--storage", "memory"});
  ASSERT_TRUE(b.Start()) << b.Log();
  std::string dead = DeadAddress();
  ChildProcess calculator(
      PERPER_CALCULATOR_BINARY,
      {"PERPER_FABRIC_ENDPOINT=" + dead + "," + b.address(), "PERPER_FABRIC_ENDPOINT_INDEX=0"});
  ASSERT_TRUE(testing::WaitFor(
      [&] { return calculator.Output().find("serving from") != std::string::npos; }, 20s))
      << calculator.Output();
  std::string output = calculator.Output();
  EXPECT_THAT(output, HasSubstr(" I sdk: [agent=Calculator] serving from " + b.address() +
                                " (concurrency 64, workgroup '')\n"));
  EXPECT_THAT(output, Not(HasSubstr("serving from " + dead)));
  size_t moved =
      output.find("[agent=Calculator] Fabric " + dead + " unavailable; moving to " + b.address());
  ASSERT_NE(moved, std::string::npos) << output;
  EXPECT_LT(moved, output.find("serving from")) << output;
}

// When its Fabric dies, the SDK logs the ended listen call and, on the next address, that it
// reconnected.
TEST(FabricEndpointsTest, ReconnectingAndReconnectedAreLogged) {
  FabricProcess a({"--storage", "memory"});
  FabricProcess b({"--storage", "memory"});
  ASSERT_TRUE(a.Start()) << a.Log();
  ASSERT_TRUE(b.Start()) << b.Log();
  ChildProcess calculator(PERPER_CALCULATOR_BINARY,
                          {"PERPER_FABRIC_ENDPOINT=" + a.address() + "," + b.address(),
                           "PERPER_FABRIC_ENDPOINT_INDEX=0"});
  std::string serving = "[agent=Calculator] serving from " + a.address();
  ASSERT_TRUE(
      testing::WaitFor([&] { return calculator.Output().find(serving) != std::string::npos; }, 20s))
      << calculator.Output();
  a.Kill(SIGKILL);
  a.Wait();
  std::string reconnected = " I sdk: [agent=Calculator] listen call reconnected to " + b.address();
  ASSERT_TRUE(testing::WaitFor(
      [&] { return calculator.Output().find(reconnected) != std::string::npos; }, 20s))
      << calculator.Output();
  std::string output = calculator.Output();
  size_t ended = output.find(" W sdk: [agent=Calculator] listen call ended (14 ");
  ASSERT_NE(ended, std::string::npos) << output;
  EXPECT_LT(ended, output.find(reconnected)) << output;
  EXPECT_THAT(output.substr(ended), ::testing::ContainsRegex("reconnecting in [0-9]+ ms"));
}

// The start index is taken modulo the number of addresses: index 3 of two is B.
TEST(FabricEndpointsTest, TheStartIndexPicksTheFirstAddress) {
  FabricProcess b({"--storage", "memory"});
  ASSERT_TRUE(b.Start()) << b.Log();
  FabricProcess a({"--storage", "memory"});
  ASSERT_TRUE(a.Start()) << a.Log();
  Agent calculator = Calculator();
  auto runtime = StartCalculator(calculator, a.address() + "," + b.address(), 3);
  int64_t sum = 0;
  grpc::Status status = CallAdd(b, 2, 3, &sum);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(sum, 5);
  runtime->RequestStop();
  EXPECT_EQ(runtime->Wait(), 0);
}

}  // namespace
}  // namespace perper
