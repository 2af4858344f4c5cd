// SPDX-License-Identifier: MIT
// Completions sent on a ListenAndReserve call (`completions`, field 11): applied like Complete,
// before the same message's credits; a malformed one ends the call; an unknown or finished one
// is skipped; an execution completed this way gets no deleted=true afterwards.
#include <string>

#include <gmock/gmock.h>

#include "tests/integration/executions_helpers.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

class StreamCompletionsTest : public FabricTest {};

grpc2::ExecutionsListenAndReserveRequest CompleteAndGrant(const std::string& id,
                                                          const std::string& result,
                                                          uint64_t credits) {
  grpc2::ExecutionsListenAndReserveRequest request;
  grpc2::ExecutionsCompleteRequest* completion = request.add_completions();
  completion->mutable_execution()->set_execution(id);
  *completion->add_results() = StringValue(result);
  request.set_reserve_next(credits);
  return request;
}

grpc2::ExecutionsGetResultResponse Result(grpc2::FabricExecutions::Stub& stub,
                                          const std::string& id) {
  grpc2::ExecutionsGetResultRequest request;
  request.mutable_execution()->set_execution(id);
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = stub.GetResult(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

// The call ends (after at most a start_of_stream), with `code` and a message containing `text`.
void ExpectEnded(ReserveCall& call, grpc::StatusCode code, const std::string& text) {
  grpc2::ExecutionsListenResponse response;
  while (call.Read(&response)) {
    EXPECT_TRUE(response.start_of_stream()) << response.execution().execution();
  }
  grpc::Status status = call.Finish();
  EXPECT_EQ(status.error_code(), code);
  EXPECT_THAT(status.error_message(), HasSubstr(text));
}

TEST_P(StreamCompletionsTest, ACompletionIsAppliedAndItsCreditGranted) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(CreateExecution(*stub, "e2", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "e1");
  ASSERT_TRUE(call.Write(CompleteAndGrant("e1", "one", 1)));
  // The credit came with the completion: e2 follows without a separate grant.
  EXPECT_EQ(call.NextExecution(), "e2");
  grpc2::ExecutionsGetResultResponse result = Result(*stub, "e1");
  ASSERT_EQ(result.results_size(), 1);
  EXPECT_EQ(StringOf(result.results(0)), "one");
  EXPECT_FALSE(result.has_error());
}

TEST_P(StreamCompletionsTest, AnErrorCompletesTheExecutionWithThatError) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "e1");
  grpc2::ExecutionsListenAndReserveRequest request;
  grpc2::ExecutionsCompleteRequest* completion = request.add_completions();
  completion->mutable_execution()->set_execution("e1");
  completion->mutable_error()->set_message("it broke");
  ASSERT_TRUE(call.Write(request));
  ASSERT_TRUE(WaitFor([&] { return Result(*stub, "e1").has_error(); }));
  EXPECT_EQ(Result(*stub, "e1").error().message(), "it broke");
}

TEST_P(StreamCompletionsTest, NoDeletedMessageForAnExecutionCompletedOnTheCall) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  call.ExpectStart();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "e1");
  ASSERT_TRUE(call.Write(CompleteAndGrant("e1", "one", 0)));
  ASSERT_TRUE(WaitFor([&] { return Result(*stub, "e1").results_size() == 1; }));
  ASSERT_TRUE(DeleteExecution(*stub, "e1").ok());
  ASSERT_TRUE(CreateExecution(*stub, "e2", "ag", "in", "Do").ok());
  ASSERT_TRUE(call.Grant(1));
  // With a unary Complete, "e1" with deleted=true would come first.
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(call.Read(&response));
  EXPECT_EQ(response.execution().execution(), "e2");
  EXPECT_FALSE(response.deleted());
}

TEST_P(StreamCompletionsTest, UnknownAndFinishedExecutionsAreSkipped) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "e1");
  ASSERT_TRUE(CompleteExecution(*stub, "e1").ok());
  ASSERT_TRUE(CreateExecution(*stub, "e2", "ag", "in", "Do").ok());
  grpc2::ExecutionsListenAndReserveRequest request = CompleteAndGrant("e1", "late", 1);
  request.add_completions()->mutable_execution()->set_execution("no-such-execution");
  ASSERT_TRUE(call.Write(request));
  // The call goes on, and the credit was granted.
  EXPECT_EQ(call.NextExecution(), "e2");
  EXPECT_EQ(Result(*stub, "e1").results_size(), 0);  // The first completion won.
}

TEST_P(StreamCompletionsTest, AMalformedCompletionEndsTheCallNamingIt) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  call.ExpectStart();
  grpc2::ExecutionsListenAndReserveRequest request = CompleteAndGrant("e1", "x", 1);
  request.add_completions();  // No execution ID.
  ASSERT_TRUE(call.Write(request));
  ExpectEnded(call, grpc::StatusCode::INVALID_ARGUMENT, "completions[1].execution.execution");
}

TEST_P(StreamCompletionsTest, AResultOverTheLimitEndsTheCallWithResourceExhausted) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "e1");
  // Over the default 17 MiB value limit, inside gRPC's (unlimited on this channel) message size.
  ASSERT_TRUE(call.Write(CompleteAndGrant("e1", std::string(18 << 20, 'x'), 1)));
  ExpectEnded(call, grpc::StatusCode::RESOURCE_EXHAUSTED,
              "completions[0].results[0] of execution e1");
}

TEST_P(StreamCompletionsTest, CompletionsInTheFirstMessageAreNotDeliveredAgain) {
  auto stub = Executions();
  {
    ReserveCall before(*stub, "ag", 1, "w");
    ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
    ASSERT_EQ(before.NextExecution(), "e1");
  }  // The call ends with e1 unfinished: it is released.
  // A worker reconnecting with e1's result in its first message.
  auto context = Context();
  auto stream = stub->ListenAndReserve(context.get());
  grpc2::ExecutionsListenAndReserveRequest first = CompleteAndGrant("e1", "again", 1);
  first.mutable_filter()->mutable_instance_filter()->set_agent("ag");
  first.set_workgroup("w");
  ASSERT_TRUE(stream->Write(first));
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.start_of_stream()) << response.execution().execution();
  EXPECT_EQ(StringOf(Result(*stub, "e1").results(0)), "again");
  context->TryCancel();
  stream->Finish().IgnoreError();
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamCompletionsTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
