// SPDX-License-Identifier: MIT
// The connection part of the agent runtime alone: the registry of calls in flight, and unary
// calls through Connection::Unary against a real Fabric process (no runtime, no agent).
#include "sdk/cpp/src/perper/agent/connection.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "sdk/cpp/tests/dead_address.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"

namespace perper::internal {
namespace {

using ::perper::testing::DeadAddress;
using ::perper::testing::FabricProcess;
using ::perper::testing::WaitFor;
using namespace std::chrono_literals;

// The back-off every SDK shares (STYLE.md): 50 ms growing x1.5 up to 2 s, each delay within
// 20 % either side; Reset starts again from 50 ms.
TEST(BackoffTest, GrowsByHalfUpToTwoSecondsWithinTwentyPercent) {
  Backoff backoff;
  double expected_ms = 50;
  for (int i = 0; i < 30; ++i) {
    double delay_ms = absl::ToDoubleMilliseconds(backoff.Next());
    EXPECT_GE(delay_ms, expected_ms * 0.8 - 1e-6) << "attempt " << i;
    EXPECT_LE(delay_ms, expected_ms * 1.2 + 1e-6) << "attempt " << i;
    expected_ms = std::min(expected_ms * 1.5, 2000.0);
  }
  EXPECT_EQ(expected_ms, 2000.0);
  backoff.Reset();
  double first_ms = absl::ToDoubleMilliseconds(backoff.Next());
  EXPECT_GE(first_ms, 40 - 1e-6);
  EXPECT_LE(first_ms, 60 + 1e-6);
}

TEST(CallRegistryTest, CountsTheCallsAddedAndNotRemoved) {
  CallRegistry calls;
  uint64_t first = calls.Add(std::make_shared<grpc::ClientContext>());
  uint64_t second = calls.Add(std::make_shared<grpc::ClientContext>());
  EXPECT_NE(first, second);
  EXPECT_EQ(calls.size(), 2u);
  EXPECT_FALSE(calls.AwaitEmpty(absl::Now()));
  calls.Remove(first);
  calls.Remove(first);  // twice: harmless
  EXPECT_EQ(calls.size(), 1u);
  calls.Remove(second);
  EXPECT_EQ(calls.size(), 0u);
  EXPECT_TRUE(calls.AwaitEmpty(absl::Now()));
}

TEST(CallRegistryTest, AwaitEmptyWakesWhenTheLastCallIsRemoved) {
  CallRegistry calls;
  uint64_t id = calls.Add(std::make_shared<grpc::ClientContext>());
  absl::Notification waiting;
  std::thread remover([&] {
    waiting.WaitForNotification();
    calls.Remove(id);
  });
  waiting.Notify();
  EXPECT_TRUE(calls.AwaitEmpty(absl::Now() + absl::Seconds(10)));
  remover.join();
}

// A Connection to a real Fabric, with its io_context run by two threads.
class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fabric_.Start()) << fabric_.Log();
    connection_.Connect({fabric_.address()});
    for (auto& thread : threads_) {
      thread = std::thread([this] { io_.run(); });
    }
  }
  void TearDown() override {
    work_.reset();
    io_.stop();
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  // Creates execution `id` (of an agent nobody serves: it stays unfinished).
  absl::Status CreateExecution(const std::string& id) {
    grpc2::ExecutionsCreateRequest request;
    request.mutable_execution()->set_execution(id);
    request.mutable_instance()->set_agent("Nobody");
    request.mutable_instance()->set_instance("Nobody-1");
    request.set_delegate("Wait");
    std::promise<absl::Status> done;
    asio::co_spawn(
        io_,
        [](Connection* connection, grpc2::ExecutionsCreateRequest request) -> Task<absl::Status> {
          auto created =
              co_await connection->Unary<grpc2::ExecutionsCreateRequest, google::protobuf::Empty>(
                  std::move(request),
                  [connection](auto* context, auto* req, auto* resp, auto done) {
                    connection->executions()->async()->Create(context, req, resp, std::move(done));
                  });
          co_return created.status();
        }(&connection_, std::move(request)),
        [&done](std::exception_ptr, absl::Status status) { done.set_value(status); });
    return done.get_future().get();
  }

  FabricProcess fabric_{{"--storage", "memory"}};
  Agent agent_{"ConnectionTest"};
  RunOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  Connection connection_{agent_, options_, io_};
  std::thread threads_[2];
};

TEST_F(ConnectionTest, UnaryCallsTheFabric) {
  EXPECT_TRUE(connection_.wait_for_ready());
  EXPECT_EQ(connection_.address(connection_.endpoint_index()), fabric_.address());
  ASSERT_TRUE(CreateExecution("exec-created").ok());
  // Created executions are listed by the Fabric's introspection.
  std::promise<absl::StatusOr<grpc2::IntrospectionListExecutionsResponse>> listed;
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_agent("Nobody");
  asio::co_spawn(io_,
                 connection_.Unary<grpc2::IntrospectionListExecutionsRequest,
                                   grpc2::IntrospectionListExecutionsResponse>(
                     std::move(request),
                     [this](auto* context, auto* req, auto* resp, auto done) {
                       connection_.introspection()->async()->ListExecutions(context, req, resp,
                                                                            std::move(done));
                     }),
                 [&listed](std::exception_ptr,
                           absl::StatusOr<grpc2::IntrospectionListExecutionsResponse> response) {
                   listed.set_value(std::move(response));
                 });
  auto response = listed.get_future().get();
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->executions_size(), 1);
  EXPECT_EQ(response->executions(0).execution().execution(), "exec-created");
  // The call's callback removes it from the registry just after it wakes the coroutine.
  EXPECT_TRUE(connection_.calls().AwaitEmpty(absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(connection_.calls().size(), 0u);
}

TEST_F(ConnectionTest, CancellingTheRegisteredCallsEndsAUnaryCallInFlight) {
  ASSERT_TRUE(CreateExecution("exec-pending").ok());
  // GetResult of an unfinished execution waits until it finishes: a call that stays in flight.
  grpc2::ExecutionsGetResultRequest request;
  request.mutable_execution()->set_execution("exec-pending");
  std::promise<absl::Status> result;
  asio::co_spawn(
      io_,
      connection_.Unary<grpc2::ExecutionsGetResultRequest, grpc2::ExecutionsGetResultResponse>(
          std::move(request),
          [this](auto* context, auto* req, auto* resp, auto done) {
            connection_.executions()->async()->GetResult(context, req, resp, std::move(done));
          }),
      [&result](std::exception_ptr, absl::StatusOr<grpc2::ExecutionsGetResultResponse> response) {
        result.set_value(response.status());
      });
  ASSERT_TRUE(WaitFor([&] { return connection_.calls().size() == 1; }, 10s));
  auto future = result.get_future();
  EXPECT_EQ(future.wait_for(0s), std::future_status::timeout);  // still in flight

  connection_.SetStopping();
  connection_.calls().CancelAll();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(future.get().code(), absl::StatusCode::kCancelled);
  // The call's callback removed it from the registry.
  EXPECT_TRUE(connection_.calls().AwaitEmpty(absl::Now() + absl::Seconds(10)));
}

// A unary call that finds no Fabric at any address retries UNAVAILABLE with back-off (moving
// between the addresses) until RunOptions::unary_retry_timeout has passed, then fails with it,
// as the Python and .NET SDKs do; it does not retry for ever.
TEST(ConnectionRetryTest, AUnaryCallGivesUpOnUnavailableAfterTheRetryTimeout) {
  Agent agent("ConnectionRetryTest");
  RunOptions options;
  options.unary_retry_timeout = std::chrono::milliseconds(500);
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  Connection connection(agent, options, io);
  // Two addresses: no wait_for_ready, so each attempt fails at once.
  connection.Connect({DeadAddress(), DeadAddress()});
  std::thread thread([&io] { io.run(); });
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_agent("Nobody");
  std::promise<absl::Status> result;
  absl::Time started = absl::Now();
  asio::co_spawn(io,
                 connection.Unary<grpc2::IntrospectionListExecutionsRequest,
                                  grpc2::IntrospectionListExecutionsResponse>(
                     std::move(request),
                     [&connection](auto* context, auto* req, auto* resp, auto done) {
                       connection.introspection()->async()->ListExecutions(context, req, resp,
                                                                           std::move(done));
                     }),
                 [&result](std::exception_ptr,
                           absl::StatusOr<grpc2::IntrospectionListExecutionsResponse> response) {
                   result.set_value(response.status());
                 });
  auto future = result.get_future();
  bool answered = future.wait_for(20s) == std::future_status::ready;
  absl::Duration took = absl::Now() - started;
  if (!answered) {  // ends the retries, so that the thread can be joined
    connection.SetStopping();
  }
  EXPECT_TRUE(answered);
  EXPECT_EQ(future.get().code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(took, absl::Milliseconds(500));
  work.reset();
  io.stop();
  thread.join();
}

}  // namespace
}  // namespace perper::internal
