// SPDX-License-Identifier: MIT
// An agent process outlives its Fabric: kill -9 of a durable perper-fabric and a restart on the
// same address and data directory; the SDK re-opens its ListenAndReserve call and retries the
// calls that were in flight, so the application carries on by itself.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "sdk/cpp/src/perper/agent/counters.h"
#include "sdk/cpp/tests/call_add.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper {
namespace {

using ::perper::testing::FabricProcess;
using ::perper::testing::TempDir;
using namespace std::chrono_literals;

class ReconnectTest : public ::testing::Test {
 protected:
  std::vector<std::string> FabricArgs(const std::string& listen) const {
    return {"--storage", "rocksdb", "--data-dir", data_.path(), "--listen", listen};
  }

  void StartFabric(const std::string& listen) {
    fabric_ = std::make_unique<FabricProcess>(FabricArgs(listen));
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  // kill -9, then a new Fabric on the same address and data directory.
  void CrashAndRestartFabric() {
    std::string address = fabric_->address();
    fabric_->Kill(SIGKILL);
    fabric_->Wait();
    StartFabric(address);
  }

  RunOptions Options() const {
    RunOptions options;
    options.fabric_endpoint = fabric_->address();
    return options;
  }

  grpc::Status CallAdd(int64_t a, int64_t b, int64_t* sum) {
    return testing::CallAdd(fabric_->NewChannel(), a, b, sum);
  }

  TempDir data_;
  std::unique_ptr<FabricProcess> fabric_;
};

Agent Calculator() {
  Agent app("Calculator");
  app.on("Add", [](int64_t a, int64_t b) -> Task<int64_t> { co_return a + b; });
  return app;
}

TEST_F(ReconnectTest, AgentServesAgainAfterTheFabricRestarts) {
  StartFabric("127.0.0.1:0");
  Agent calculator = Calculator();
  Runtime runtime(calculator, Options());
  ASSERT_TRUE(runtime.Start().ok());

  int64_t sum = 0;
  ASSERT_TRUE(CallAdd(1, 2, &sum).ok());
  EXPECT_EQ(sum, 3);

  CrashAndRestartFabric();

  // Served only if the agent re-opened its listen call on the new Fabric.
  grpc::Status status = CallAdd(20, 22, &sum);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << fabric_->Log();
  EXPECT_EQ(sum, 42);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// A Deploy making 300 calls in sequence while the Fabric is killed and restarted under it: the
// call in flight fails with UNAVAILABLE and is retried on the new Fabric; every call returns
// its right answer and none fails.
TEST_F(ReconnectTest, CallsInFlightAreRetriedAcrossAFabricRestart) {
  StartFabric("127.0.0.1:0");
  constexpr int kCalls = 300;
  Agent app("Calculator");
  app.on("Add", [](int64_t a, int64_t b) -> Task<int64_t> { co_return a + b; });
  std::atomic<int> completed{0};
  std::vector<Result<int64_t>> results(kCalls, absl::UnknownError("not called"));
  auto done = std::make_shared<std::promise<void>>();
  app.on_deploy([&, done]() -> Task<void> {
    for (int i = 0; i < kCalls; ++i) {
      results[i] = co_await call<int64_t>("Add", int64_t{i}, int64_t{1});
      completed = i + 1;
    }
    done->set_value();
  });
  RunOptions options = Options();
  options.concurrency = 4;
  Runtime runtime(app, options);
  ASSERT_TRUE(runtime.Start().ok());

  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (completed < 50 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);  // polling a condition, not synchronising on time
  }
  ASSERT_GE(completed.load(), 50);
  CrashAndRestartFabric();
  int at_restart = completed;

  ASSERT_EQ(done->get_future().wait_for(60s), std::future_status::ready)
      << completed << " calls completed\n"
      << fabric_->Log();
  EXPECT_LT(at_restart, kCalls) << "the restart happened after the last call; nothing was tested";
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(results[i].ok()) << "call " << i << ": " << results[i].status();
    EXPECT_EQ(*results[i], i + 1) << "call " << i;
  }
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// A handler that finishes while the Fabric is down: its result cannot go on the broken listen
// call; it reaches the restarted Fabric (by unary Complete, or on the next listen call), and if
// the execution is delivered again first, it is completed again, not run again.
TEST_F(ReconnectTest, AResultFinishedWhileTheFabricIsDownReachesTheFabric) {
  StartFabric("127.0.0.1:0");
  std::atomic<int> runs{0};
  std::atomic<bool> release{false};
  Agent app("Calculator");
  app.on("Slow", [&](int64_t x) -> Task<int64_t> {
    ++runs;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!release) {  // polling a condition, not synchronising on time
      timer.expires_after(std::chrono::milliseconds(1));
      co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    co_return x * 2;
  });
  Runtime runtime(app, Options());
  ASSERT_TRUE(runtime.Start().ok());
  const internal::Counters& counters = internal::ProcessCounters();
  const uint64_t unary_before = counters.unary_completes.load();
  const uint64_t again_before = counters.completed_again.load();

  auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
  {
    grpc2::ExecutionsCreateRequest request;
    request.mutable_execution()->set_execution("Slow-1");
    request.mutable_instance()->set_agent("Calculator");
    request.mutable_instance()->set_instance("calc");
    request.set_delegate("Slow");
    *request.add_arguments() = ToAny(int64_t{21});
    grpc::ClientContext context;
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Create(&context, request, &empty).ok());
  }
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (runs == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);  // polling a condition, not synchronising on time
  }
  ASSERT_EQ(runs.load(), 1);

  std::string address = fabric_->address();
  fabric_->Kill(SIGKILL);
  fabric_->Wait();
  release = true;  // the handler returns while the Fabric is down
  StartFabric(address);

  grpc2::ExecutionsGetResultResponse response;
  {
    auto new_stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
    grpc2::ExecutionsGetResultRequest request;
    request.mutable_execution()->set_execution("Slow-1");
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 20s);
    context.set_wait_for_ready(true);
    grpc::Status status = new_stub->GetResult(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << fabric_->Log();
  }
  ASSERT_FALSE(response.deleted());
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(FromAny<int64_t>(response.results(0)).value_or(-1), 42);
  EXPECT_EQ(runs.load(), 1);
  // Which way it went depends on timing: the result was handed to the broken call or to none
  // (then a unary Complete sent it), or to the next call, which may have had the execution
  // delivered again first (then it was recognised and completed again).
  std::printf("unary completes: %d, completed again: %d\n",
              static_cast<int>(counters.unary_completes.load() - unary_before),
              static_cast<int>(counters.completed_again.load() - again_before));
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

}  // namespace
}  // namespace perper
