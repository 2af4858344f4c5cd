// SPDX-License-Identifier: MIT
// FabricExecutions over real gRPC: Create, Listen, Complete, GetResult, Delete, on every backend.
#include <atomic>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

#include "tests/integration/executions_helpers.h"

namespace perper::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ExecutionsTest : public FabricTest {
 protected:
  storage::ExecutionStore& StoreExecutions() { return fabric().server().store().executions(); }

  grpc2::ExecutionsGetResultResponse GetResult(const std::string& id, grpc::Status* status,
                                               bool wait_for_creation = false) {
    grpc2::ExecutionsGetResultRequest request;
    request.mutable_execution()->set_execution(id);
    request.set_wait_for_creation(wait_for_creation);
    grpc2::ExecutionsGetResultResponse response;
    *status = Executions()->GetResult(Context().get(), request, &response);
    return response;
  }

  // Starts GetResult on another thread.
  std::future<std::pair<grpc::Status, grpc2::ExecutionsGetResultResponse>> GetResultAsync(
      const std::string& id, bool wait_for_creation = false) {
    return std::async(std::launch::async, [this, id, wait_for_creation] {
      grpc::Status status;
      auto response = GetResult(id, &status, wait_for_creation);
      return std::make_pair(status, response);
    });
  }

  // Blocks until a GetResult waiter for `id` is subscribed (the hub counts subscriptions).
  void WaitForWaiters(size_t baseline, size_t count) {
    ASSERT_TRUE(WaitFor(
        [&] { return fabric().server().hub().SubscriptionCountForTest() >= baseline + count; }));
  }
};

// --- Create ---------------------------------------------------------------------------------

TEST_P(ExecutionsTest, CreatedExecutionIsStoredWithItsArguments) {
  auto stub = Executions();
  ASSERT_TRUE(
      CreateExecution(*stub, "e1", "ag", "in", "Do", {Int64Value(7), StringValue("x")}).ok());
  ListenCall listen(*stub, "ag");
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(listen.Read(&response));
  EXPECT_EQ(response.execution().execution(), "e1");
  EXPECT_EQ(response.instance().agent(), "ag");
  EXPECT_EQ(response.instance().instance(), "in");
  EXPECT_EQ(response.delegate(), "Do");
  EXPECT_FALSE(response.deleted());
  ASSERT_EQ(response.arguments_size(), 2);
  EXPECT_EQ(IntOf(response.arguments(0)), 7);
  EXPECT_EQ(StringOf(response.arguments(1)), "x");
}

TEST_P(ExecutionsTest, IdenticalCreateIsOkDifferentContentIsAlreadyExists) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do", {Int64Value(1)}).ok());
  EXPECT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do", {Int64Value(1)}).ok());
  grpc::Status different = CreateExecution(*stub, "e1", "ag", "in", "Do", {Int64Value(2)});
  EXPECT_EQ(different.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(different.error_message(), HasSubstr("e1"));
  EXPECT_EQ(CreateExecution(*stub, "e1", "ag", "other", "Do", {Int64Value(1)}).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_P(ExecutionsTest, CreateRejectsMissingFieldsNamingThem) {
  auto stub = Executions();
  grpc::Status empty_id = CreateExecution(*stub, "", "ag", "in", "Do");
  EXPECT_EQ(empty_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty_id.error_message(), HasSubstr("execution"));
  grpc::Status empty_agent = CreateExecution(*stub, "e1", "", "in", "Do");
  EXPECT_EQ(empty_agent.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty_agent.error_message(), HasSubstr("instance.agent"));
  grpc::Status empty_delegate = CreateExecution(*stub, "e1", "ag", "in", "");
  EXPECT_EQ(empty_delegate.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty_delegate.error_message(), HasSubstr("delegate"));
  auto no_instance = CreateRequest("e1", "ag", "in", "Do");
  no_instance.clear_instance();
  google::protobuf::Empty empty;
  grpc::Status missing = stub->Create(Context().get(), no_instance, &empty);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(missing.error_message(), HasSubstr("instance"));
  EXPECT_EQ(StoreExecutions().GetExecution("e1").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ExecutionsTest, OversizedArgumentsAndResultsAreResourceExhausted) {
  fabric::FabricLimits limits;
  limits.max_value_bytes = 1024;
  InProcessFabric small(GetParam(), limits);
  auto stub = grpc2::FabricExecutions::NewStub(small.NewChannel());
  grpc::Status big = CreateExecution(*stub, "e1", "ag", "in", "Do",
                                     {Int64Value(1), BytesValue(std::string(2000, 'x'))});
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(big.error_message(), HasSubstr("1024"));
  EXPECT_THAT(big.error_message(), HasSubstr("arguments[1]"));
  ASSERT_TRUE(
      CreateExecution(*stub, "e1", "ag", "in", "Do", {BytesValue(std::string(900, 'x'))}).ok());
  grpc::Status big_result = CompleteExecution(*stub, "e1", {BytesValue(std::string(2000, 'x'))});
  EXPECT_EQ(big_result.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(big_result.error_message(), HasSubstr("results[0]"));
  EXPECT_FALSE(small.server().store().executions().GetExecution("e1")->finished);
}

// --- Listen ---------------------------------------------------------------------------------

TEST_P(ExecutionsTest, ListenWithoutAgentIsInvalidArgument) {
  auto stub = Executions();
  ListenCall listen(*stub, "");
  grpc2::ExecutionsListenResponse response;
  EXPECT_FALSE(listen.Read(&response));
  grpc::Status status = listen.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("instance_filter.agent"));
}

TEST_P(ExecutionsTest, ListenSendsUnfinishedInCreationOrderThenStartOfStreamThenLive) {
  auto stub = Executions();
  for (const std::string id : {"z", "a", "m", "done"}) {
    ASSERT_TRUE(CreateExecution(*stub, id, "ag", "in", "Do").ok());
  }
  ASSERT_TRUE(CompleteExecution(*stub, "done").ok());
  ListenCall listen(*stub, "ag");
  EXPECT_THAT(listen.ReadInitial(), ElementsAre("z", "a", "m"));
  ASSERT_TRUE(CreateExecution(*stub, "live", "ag", "in", "Do").ok());
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(listen.Read(&response));
  EXPECT_EQ(response.execution().execution(), "live");
  EXPECT_FALSE(response.start_of_stream());
}

TEST_P(ExecutionsTest, ListenFiltersByInstanceAndDelegate) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "1", "ag", "i1", "A").ok());
  ASSERT_TRUE(CreateExecution(*stub, "2", "ag", "i2", "A").ok());
  ASSERT_TRUE(CreateExecution(*stub, "3", "ag", "i1", "B").ok());
  ASSERT_TRUE(CreateExecution(*stub, "4", "other", "i1", "A").ok());
  ListenCall by_instance(*stub, "ag", "i1");
  EXPECT_THAT(by_instance.ReadInitial(), ElementsAre("1", "3"));
  ListenCall by_delegate(*stub, "ag", "", "A");
  EXPECT_THAT(by_delegate.ReadInitial(), ElementsAre("1", "2"));
  ListenCall exact(*stub, "ag", "i1", "A");
  EXPECT_THAT(exact.ReadInitial(), ElementsAre("1"));
  // Live: a non-matching creation is skipped, the matching one after it arrives.
  ASSERT_TRUE(CreateExecution(*stub, "5", "ag", "i2", "B").ok());
  ASSERT_TRUE(CreateExecution(*stub, "6", "ag", "i1", "A").ok());
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(exact.Read(&response));
  EXPECT_EQ(response.execution().execution(), "6");
}

TEST_P(ExecutionsTest, ListenSignalsDeletionOfDeliveredExecutionsOnly) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "seen", "ag", "in", "Do").ok());
  ASSERT_TRUE(CreateExecution(*stub, "unseen", "ag", "other", "Do").ok());
  ListenCall listen(*stub, "ag", "in");
  EXPECT_THAT(listen.ReadInitial(), ElementsAre("seen"));
  ASSERT_TRUE(DeleteExecution(*stub, "unseen").ok());
  ASSERT_TRUE(DeleteExecution(*stub, "seen").ok());
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(listen.Read(&response));
  EXPECT_EQ(response.execution().execution(), "seen");
  EXPECT_TRUE(response.deleted());
  EXPECT_EQ(response.instance().instance(), "in");
  EXPECT_EQ(response.delegate(), "Do");
  EXPECT_EQ(response.arguments_size(), 0);
}

TEST_P(ExecutionsTest, ListenNeverSendsAnIdTwiceButDoesAfterRecreation) {
  auto stub = Executions();
  ListenCall listen(*stub, "ag");
  EXPECT_TRUE(listen.ReadInitial().empty());
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  grpc2::ExecutionsListenResponse first;
  ASSERT_TRUE(listen.Read(&first));
  ASSERT_EQ(first.execution().execution(), "e1");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());  // Identical retry.
  ASSERT_TRUE(CompleteExecution(*stub, "e1").ok());                  // Not signalled.
  ASSERT_TRUE(DeleteExecution(*stub, "e1").ok());
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(CreateExecution(*stub, "sentinel", "ag", "in", "Do").ok());
  std::vector<std::string> got;
  grpc2::ExecutionsListenResponse response;
  while (listen.Read(&response)) {
    got.push_back(response.execution().execution() + (response.deleted() ? "-deleted" : ""));
    if (response.execution().execution() == "sentinel") break;
  }
  EXPECT_THAT(got, ElementsAre("e1-deleted", "e1", "sentinel"));
}

TEST_P(ExecutionsTest, ListenLosesNothingCreatedDuringTheInitialScan) {
  constexpr int kCount = 300;
  auto stub = Executions();
  std::atomic<bool> go{false};
  std::thread writer([&] {
    auto writer_stub = Executions();
    go = true;
    for (int i = 0; i < kCount; ++i) {
      ASSERT_TRUE(CreateExecution(*writer_stub, "e" + std::to_string(i), "ag", "in", "Do").ok());
    }
  });
  while (!go) std::this_thread::yield();
  ListenCall listen(*stub, "ag");
  std::set<std::string> got;
  int starts = 0;
  grpc2::ExecutionsListenResponse response;
  while (got.size() < kCount && listen.Read(&response)) {
    if (response.start_of_stream()) {
      ++starts;
      continue;
    }
    EXPECT_TRUE(got.insert(response.execution().execution()).second)
        << "delivered twice: " << response.execution().execution();
  }
  writer.join();
  EXPECT_EQ(got.size(), static_cast<size_t>(kCount));
  EXPECT_LE(starts, 1);
}

TEST_P(ExecutionsTest, ListenEndsWhenTheServerShutsDown) {
  auto stub = Executions();
  ListenCall listen(*stub, "ag");
  listen.ReadInitial();
  fabric().Stop();
  grpc2::ExecutionsListenResponse response;
  EXPECT_FALSE(listen.Read(&response));
  EXPECT_FALSE(listen.Finish().ok());
}

// --- Complete -------------------------------------------------------------------------------

TEST_P(ExecutionsTest, CompleteUnknownIsNotFoundAndTwiceIsFailedPrecondition) {
  auto stub = Executions();
  grpc::Status unknown = CompleteExecution(*stub, "nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("nope"));
  EXPECT_EQ(CompleteExecution(*stub, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "e1", {Int64Value(1)}).ok());
  grpc::Status twice = CompleteExecution(*stub, "e1", {Int64Value(2)}, "late");
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(twice.error_message(), HasSubstr("e1"));
  grpc::Status status;
  auto result = GetResult("e1", &status);
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(result.results_size(), 1);
  EXPECT_EQ(IntOf(result.results(0)), 1);  // The first completion won.
  EXPECT_FALSE(result.has_error());
}

TEST_P(ExecutionsTest, ErrorWithMessageFailsEmptyMessageSucceeds) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "bad", "ag", "in", "Do").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "bad", {}, "it broke").ok());
  ASSERT_TRUE(CreateExecution(*stub, "good", "ag", "in", "Do").ok());
  grpc2::ExecutionsCompleteRequest request;
  request.mutable_execution()->set_execution("good");
  request.mutable_error();  // Present, with an empty message.
  *request.add_results() = StringValue("ok");
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub->Complete(Context().get(), request, &empty).ok());
  grpc::Status status;
  auto bad = GetResult("bad", &status);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(bad.error().message(), "it broke");
  EXPECT_FALSE(bad.deleted());
  auto good = GetResult("good", &status);
  ASSERT_TRUE(status.ok());
  EXPECT_FALSE(good.has_error());
  ASSERT_EQ(good.results_size(), 1);
  EXPECT_EQ(StringOf(good.results(0)), "ok");
}

TEST_P(ExecutionsTest, CompleteAlsoCompletesTheLinkedStream) {
  auto stub = Executions();
  auto& streams = fabric().server().store().streams();
  storage::StreamRecord stream;
  stream.stream = "producer";
  ASSERT_TRUE(streams.CreateStream(stream).ok());
  stream.stream = "failing";
  ASSERT_TRUE(streams.CreateStream(stream).ok());
  ASSERT_TRUE(CreateExecution(*stub, "producer", "ag", "in", "X-stream").ok());
  ASSERT_TRUE(CreateExecution(*stub, "failing", "ag", "in", "X-stream").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "producer").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "failing", {}, "producer failed").ok());
  auto done = streams.GetStream("producer");
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->completed);
  EXPECT_FALSE(done->error.has_value());
  auto failed = streams.GetStream("failing");
  ASSERT_TRUE(failed.ok());
  EXPECT_TRUE(failed->completed);
  EXPECT_EQ(failed->error.value_or(""), "producer failed");
}

// --- GetResult ------------------------------------------------------------------------------

TEST_P(ExecutionsTest, GetResultOfAbsentExecutionIsDeletedAtOnce) {
  grpc::Status status;
  auto result = GetResult("nope", &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(result.deleted());
  GetResult("", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ExecutionsTest, GetResultWaitsForCompletion) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  size_t baseline = fabric().server().hub().SubscriptionCountForTest();
  auto pending = GetResultAsync("e1");
  WaitForWaiters(baseline, 1);
  ASSERT_TRUE(CompleteExecution(*stub, "e1", {Int64Value(42), StringValue("s")}).ok());
  auto [status, result] = pending.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(result.deleted());
  EXPECT_FALSE(result.has_error());
  ASSERT_EQ(result.results_size(), 2);
  EXPECT_EQ(IntOf(result.results(0)), 42);
  EXPECT_EQ(StringOf(result.results(1)), "s");
}

TEST_P(ExecutionsTest, GetResultReportsDeletionWhileWaiting) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  size_t baseline = fabric().server().hub().SubscriptionCountForTest();
  auto pending = GetResultAsync("e1");
  WaitForWaiters(baseline, 1);
  ASSERT_TRUE(DeleteExecution(*stub, "e1").ok());
  auto [status, result] = pending.get();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(result.deleted());
}

TEST_P(ExecutionsTest, GetResultWaitsForCreationWhenAsked) {
  auto stub = Executions();
  size_t baseline = fabric().server().hub().SubscriptionCountForTest();
  auto pending = GetResultAsync("later", /*wait_for_creation=*/true);
  WaitForWaiters(baseline, 1);
  ASSERT_TRUE(CreateExecution(*stub, "later", "ag", "in", "Do").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "later", {Int64Value(5)}).ok());
  auto [status, result] = pending.get();
  ASSERT_TRUE(status.ok());
  EXPECT_FALSE(result.deleted());
  ASSERT_EQ(result.results_size(), 1);
  EXPECT_EQ(IntOf(result.results(0)), 5);
}

TEST_P(ExecutionsTest, ManyWaitersParkNoThreadAndAllGetTheirResult) {
  constexpr int kWaiters = 500;
  auto stub = Executions();
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(CreateExecution(*stub, "e" + std::to_string(i), "ag", "in", "Do").ok());
  }
  size_t baseline = fabric().server().hub().SubscriptionCountForTest();
  struct Waiter {
    grpc::ClientContext context;
    grpc2::ExecutionsGetResultRequest request;
    grpc2::ExecutionsGetResultResponse response;
    std::promise<grpc::Status> done;
  };
  std::vector<std::unique_ptr<Waiter>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    auto w = std::make_unique<Waiter>();
    w->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    w->request.mutable_execution()->set_execution("e" + std::to_string(i));
    Waiter* raw = w.get();
    stub->async()->GetResult(&raw->context, &raw->request, &raw->response,
                             [raw](grpc::Status s) { raw->done.set_value(s); });
    waiters.push_back(std::move(w));
  }
  WaitForWaiters(baseline, kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(CompleteExecution(*stub, "e" + std::to_string(i), {Int64Value(i)}).ok());
  }
  for (int i = 0; i < kWaiters; ++i) {
    grpc::Status status = waiters[i]->done.get_future().get();
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(waiters[i]->response.results_size(), 1);
    EXPECT_EQ(IntOf(waiters[i]->response.results(0)), i);
  }
  EXPECT_TRUE(
      WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() == baseline; }));
}

TEST_P(ExecutionsTest, CancelledGetResultLeavesNoSubscription) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  size_t baseline = fabric().server().hub().SubscriptionCountForTest();
  grpc2::ExecutionsGetResultRequest request;
  request.mutable_execution()->set_execution("e1");
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status =
      stub->GetResult(Context(std::chrono::milliseconds(200)).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(
      WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() == baseline; }));
}

// --- Delete ---------------------------------------------------------------------------------

TEST_P(ExecutionsTest, DeleteIsIdempotentAndChecksTheId) {
  auto stub = Executions();
  EXPECT_TRUE(DeleteExecution(*stub, "never-existed").ok());
  grpc::Status empty = DeleteExecution(*stub, "");
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty.error_message(), HasSubstr("execution"));
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(DeleteExecution(*stub, "e1").ok());
  EXPECT_TRUE(DeleteExecution(*stub, "e1").ok());
  EXPECT_EQ(StoreExecutions().GetExecution("e1").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ExecutionsTest, DeletingAnUnfinishedProducerFailsItsStream) {
  auto stub = Executions();
  auto& streams = fabric().server().store().streams();
  storage::StreamRecord stream;
  stream.stream = "producer";
  ASSERT_TRUE(streams.CreateStream(stream).ok());
  ASSERT_TRUE(CreateExecution(*stub, "producer", "ag", "in", "X-stream").ok());
  ASSERT_TRUE(DeleteExecution(*stub, "producer").ok());
  auto record = streams.GetStream("producer");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_TRUE(record->completed);
  EXPECT_EQ(record->error.value_or(""), "execution producer was deleted before it completed");
}

// --- Durability -----------------------------------------------------------------------------

// Restart and reopen tests need a durable backend.
class ExecutionsDurabilityTest : public ExecutionsTest {};

TEST_P(ExecutionsDurabilityTest, ExecutionsAndResultsSurviveARestart) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "open", "ag", "in", "Do", {Int64Value(1)}).ok());
  ASSERT_TRUE(CreateExecution(*stub, "done", "ag", "in", "Do").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "done", {Int64Value(9)}).ok());
  fabric().Restart();
  Reconnect();
  stub = Executions();
  grpc::Status status;
  auto result = GetResult("done", &status);
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(result.results_size(), 1);
  EXPECT_EQ(IntOf(result.results(0)), 9);
  ListenCall listen(*stub, "ag");
  EXPECT_THAT(listen.ReadInitial(), ElementsAre("open"));
}

INSTANTIATE_TEST_SUITE_P(Backends, ExecutionsTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, ExecutionsDurabilityTest,
                         ::testing::Values(std::string("rocksdb")), BackendName);

}  // namespace
}  // namespace perper::testing
