// SPDX-License-Identifier: MIT
// FabricStreams.Step over real gRPC, on every backend: a consumer's dictionary operations and
// its named listener's move in one atomic operation, each outcome of the truth table, the
// request checks, durability across a restart, and that a late acknowledgement on
// ListenItemsAndMove never moves a stepped listener back.
#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/storage/store.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

grpc2::StatesDictionaryOperateRequest SetOp(const std::string& key, int64_t value) {
  grpc2::StatesDictionaryOperateRequest op;
  *op.mutable_key() = StringValue(key);
  op.set_set_new_value(true);
  *op.mutable_new_value() = Int64Value(value);
  return op;
}

// Compare-and-set; nullopt `expected` means "absent".
grpc2::StatesDictionaryOperateRequest CompareAndSetOp(const std::string& key,
                                                      std::optional<int64_t> expected,
                                                      int64_t value) {
  grpc2::StatesDictionaryOperateRequest op = SetOp(key, value);
  op.set_get_existing_value(true);
  op.set_compare_existing_value(true);
  if (expected.has_value()) *op.mutable_expected_existing_value() = Int64Value(*expected);
  return op;
}

grpc2::StreamsStepRequest StepRequest(const std::string& stream, const std::string& listener,
                                      int64_t reached_key,
                                      std::vector<grpc2::StatesDictionaryOperateRequest> ops = {},
                                      const std::string& dictionary = "state") {
  grpc2::StreamsStepRequest request;
  request.mutable_stream()->set_stream(stream);
  request.set_listener_name(listener);
  request.set_reached_key(reached_key);
  if (!dictionary.empty()) request.mutable_dictionary()->set_dictionary(dictionary);
  for (auto& op : ops) *request.add_operations() = std::move(op);
  return request;
}

class StreamStepTest : public FabricTest {
 protected:
  grpc::Status Step(const grpc2::StreamsStepRequest& request,
                    grpc2::StreamsStepResponse* response) {
    return Streams()->Step(Context().get(), request, response);
  }

  // The value of `key` in `dictionary` read with Operate, nullopt when absent.
  std::optional<int64_t> Get(const std::string& dictionary, const std::string& key) {
    grpc2::StatesDictionaryOperateRequest get;
    get.mutable_dictionary()->set_dictionary(dictionary);
    *get.mutable_key() = StringValue(key);
    get.set_get_existing_value(true);
    grpc2::StatesDictionaryOperateResponse response;
    grpc::Status status = Dictionary()->Operate(Context().get(), get, &response);
    EXPECT_TRUE(status.ok()) << Message(status);
    if (!response.has_previous_value()) return std::nullopt;
    return IntOf(response.previous_value());
  }

  std::optional<int64_t> Position(const std::string& stream, const std::string& listener) {
    grpc2::IntrospectionListStreamsRequest request;
    request.set_stream_prefix(stream);
    grpc2::IntrospectionListStreamsResponse response;
    grpc::Status status = Introspection()->ListStreams(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << Message(status);
    for (const auto& summary : response.streams()) {
      if (summary.stream() != stream) continue;
      for (const auto& record : summary.listeners()) {
        if (record.name() == listener) return record.position();
      }
    }
    return std::nullopt;
  }
};

TEST_P(StreamStepTest, AppliesTheOperationsAndMovesTheListener) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "readings", /*ephemeral=*/false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "readings", {1, 2}).ok());
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(Step(StepRequest("readings", "average", 1, {SetOp("total", 10), SetOp("count", 1)}),
                   &response)
                  .ok());
  EXPECT_TRUE(response.applied());
  EXPECT_FALSE(response.already_taken());
  EXPECT_FALSE(response.position_mismatch());
  EXPECT_EQ(response.position(), 1);
  ASSERT_EQ(response.outcomes_size(), 2);
  EXPECT_TRUE(response.outcomes(0).operation_successful());
  EXPECT_EQ(Get("state", "total"), std::optional<int64_t>(10));
  EXPECT_EQ(Get("state", "count"), std::optional<int64_t>(1));
  EXPECT_EQ(Position("readings", "average"), std::optional<int64_t>(1));

  // The same step again (a consumer run again after a crash) is already taken.
  ASSERT_TRUE(Step(StepRequest("readings", "average", 1, {SetOp("total", 20), SetOp("count", 2)}),
                   &response)
                  .ok());
  EXPECT_FALSE(response.applied());
  EXPECT_TRUE(response.already_taken());
  EXPECT_EQ(response.position(), 1);
  EXPECT_EQ(Get("state", "total"), std::optional<int64_t>(10));
}

TEST_P(StreamStepTest, AFailedCompareOrAWrongPositionAppliesNothing) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(Step(StepRequest("s", "l", 1, {SetOp("k", 1)}), &response).ok());
  ASSERT_TRUE(response.applied());

  ASSERT_TRUE(
      Step(StepRequest("s", "l", 2, {SetOp("other", 5), CompareAndSetOp("k", 7, 8)}), &response)
          .ok());
  EXPECT_FALSE(response.applied());
  EXPECT_FALSE(response.already_taken());
  EXPECT_FALSE(response.position_mismatch());
  EXPECT_EQ(response.position(), 1);
  ASSERT_EQ(response.outcomes_size(), 2);
  EXPECT_TRUE(response.outcomes(0).operation_successful());
  EXPECT_FALSE(response.outcomes(1).operation_successful());
  EXPECT_EQ(IntOf(response.outcomes(1).previous_value()), 1);
  EXPECT_EQ(Get("state", "other"), std::nullopt);
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(1));

  grpc2::StreamsStepRequest fenced = StepRequest("s", "l", 2, {SetOp("k", 2)});
  fenced.set_expected_position(0);
  ASSERT_TRUE(Step(fenced, &response).ok());
  EXPECT_FALSE(response.applied());
  EXPECT_TRUE(response.position_mismatch());
  EXPECT_EQ(response.position(), 1);
  EXPECT_EQ(Get("state", "k"), std::optional<int64_t>(1));

  fenced.set_expected_position(1);
  ASSERT_TRUE(Step(fenced, &response).ok());
  EXPECT_TRUE(response.applied());
  EXPECT_EQ(response.position(), 2);
  EXPECT_EQ(Get("state", "k"), std::optional<int64_t>(2));
}

TEST_P(StreamStepTest, ChecksItsRequest) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsStepResponse response;
  grpc::Status no_stream = Step(StepRequest("", "l", 1), &response);
  EXPECT_EQ(no_stream.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(no_stream), HasSubstr("stream.stream"));
  grpc::Status no_listener = Step(StepRequest("s", "", 1), &response);
  EXPECT_EQ(no_listener.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(no_listener), HasSubstr("listener_name"));
  EXPECT_THAT(Message(no_listener), HasSubstr("stream s"));
  grpc::Status no_dictionary = Step(StepRequest("s", "l", 1, {SetOp("k", 1)}, ""), &response);
  EXPECT_EQ(no_dictionary.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(no_dictionary), HasSubstr("dictionary"));
  EXPECT_THAT(Message(no_dictionary), HasSubstr("l"));
  grpc2::StreamsStepRequest null_key = StepRequest("s", "l", 1, {SetOp("k", 1)});
  null_key.mutable_operations(0)->clear_key();
  grpc::Status null = Step(null_key, &response);
  EXPECT_EQ(null.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(null), HasSubstr("operations[0]"));
  EXPECT_THAT(Message(null), HasSubstr("state"));
  grpc::Status unknown = Step(StepRequest("missing", "l", 1, {SetOp("k", 1)}), &response);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(unknown), HasSubstr("missing"));
  grpc2::StreamsStepRequest long_name = StepRequest("s", std::string(2000, 'n'), 1);
  EXPECT_EQ(Step(long_name, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Get("state", "k"), std::nullopt);
  EXPECT_EQ(Position("s", "l"), std::nullopt);
}

TEST_P(StreamStepTest, ALateAckOnListenItemsAndMoveDoesNotMoveTheListenerBack) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2, 3}).ok());
  ListenAndMove call(*stub, ListenRequest("s", 0, "consumer"));
  ASSERT_EQ(call.NextKeys(3), (std::vector<int64_t>{1, 2, 3}));
  // The consumer steps past item 3, then its late ack of item 1 arrives.
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(Step(StepRequest("s", "consumer", 3, {SetOp("seen", 3)}), &response).ok());
  ASSERT_TRUE(response.applied());
  ASSERT_TRUE(call.Ack(1));
  // Nothing answers an ack, so its being ignored shows only as the position staying put: a
  // moved-back listener would show within milliseconds.
  EXPECT_FALSE(WaitFor([&] { return Position("s", "consumer") != std::optional<int64_t>(3); },
                       std::chrono::milliseconds(500)));
  // An ack above the position still moves it.
  ASSERT_TRUE(WriteKeys(*stub, "s", {4}).ok());
  EXPECT_EQ(call.NextKey(), std::optional<int64_t>(4));
  ASSERT_TRUE(call.Ack(4));
  EXPECT_TRUE(WaitFor([&] { return Position("s", "consumer") == std::optional<int64_t>(4); }));
}

TEST_P(StreamStepTest, ANewNamedListenerHasProcessedNothingSoTheFirstItemsStepApplies) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {0, 1}).ok());
  ListenAndMove call(*stub, ListenRequest("s", 0, "consumer"));
  ASSERT_EQ(call.NextKeys(2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(Position("s", "consumer"), std::optional<int64_t>(-1));
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(Step(StepRequest("s", "consumer", 0, {SetOp("count", 1)}), &response).ok());
  EXPECT_TRUE(response.applied());
  EXPECT_FALSE(response.already_taken());
  EXPECT_EQ(Get("state", "count"), std::optional<int64_t>(1));
  EXPECT_EQ(Position("s", "consumer"), std::optional<int64_t>(0));
}

TEST_P(StreamStepTest, AnAnonymousListenerStillFollowsItsAcks) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "e", /*ephemeral=*/true).ok());
  ASSERT_TRUE(WriteKeys(*stub, "e", {1, 2, 3}).ok());
  ListenAndMove call(*stub, ListenRequest("e", 0));
  ASSERT_EQ(call.NextKeys(3), (std::vector<int64_t>{1, 2, 3}));
  ASSERT_TRUE(call.Ack(3));
  grpc2::IntrospectionListStreamsRequest request;
  request.set_stream_prefix("e");
  auto items = [&] {
    grpc2::IntrospectionListStreamsResponse listed;
    EXPECT_TRUE(Introspection()->ListStreams(Context().get(), request, &listed).ok());
    return listed.streams_size() == 1 ? listed.streams(0).item_count() : 0;
  };
  EXPECT_TRUE(WaitFor([&] { return items() == 1; }));  // Collected up to the ack.
}

TEST_P(StreamStepTest, AStepOnAnEphemeralStreamCollectsWhatEveryListenerPassed) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "e", /*ephemeral=*/true).ok());
  ASSERT_TRUE(WriteKeys(*stub, "e", {1, 2, 3}).ok());
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(Step(StepRequest("e", "only", 3, {SetOp("k", 1)}), &response).ok());
  ASSERT_TRUE(response.applied());
  grpc2::IntrospectionListStreamsRequest request;
  request.set_stream_prefix("e");
  grpc2::IntrospectionListStreamsResponse listed;
  ASSERT_TRUE(Introspection()->ListStreams(Context().get(), request, &listed).ok());
  ASSERT_EQ(listed.streams_size(), 1);
  EXPECT_EQ(listed.streams(0).item_count(), 1u);  // The item at the position stays.
  EXPECT_EQ(listed.streams(0).written_count(), 3u);
}

// Restart tests need a durable backend.
class StreamStepDurabilityTest : public StreamStepTest {};

TEST_P(StreamStepDurabilityTest, AStepSurvivesARestart) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(Step(StepRequest("s", "l", 5, {SetOp("k", 5)}), &response).ok());
  ASSERT_TRUE(response.applied());
  fabric().Restart();
  Reconnect();
  EXPECT_EQ(Get("state", "k"), std::optional<int64_t>(5));
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(5));
  ASSERT_TRUE(Step(StepRequest("s", "l", 5, {SetOp("k", 6)}), &response).ok());
  EXPECT_TRUE(response.already_taken());
}

TEST(StreamStepKillTest, AnAnsweredStepSurvivesKillDashNineOfARocksdbFabric) {
  TempDir data;
  std::vector<std::string> args = {"--storage",         "rocksdb",     "--data-dir",
                                   data.path() + "/db", "--log-level", "warn"};
  {
    FabricProcess first(args);
    ASSERT_TRUE(first.Start()) << first.Log();
    auto stub = grpc2::FabricStreams::NewStub(first.NewChannel());
    ASSERT_TRUE(CreateStream(*stub, "e", /*ephemeral=*/true).ok());
    ASSERT_TRUE(WriteKeys(*stub, "e", {1, 2, 3}).ok());
    grpc2::StreamsStepResponse response;
    ASSERT_TRUE(
        stub->Step(Context().get(), StepRequest("e", "l", 2, {SetOp("k", 2)}), &response).ok());
    ASSERT_TRUE(response.applied());
    first.Kill(SIGKILL);
    EXPECT_EQ(first.Wait(), 128 + SIGKILL);
  }
  FabricProcess second(args);
  ASSERT_TRUE(second.Start()) << second.Log();
  auto channel = second.NewChannel();
  auto stub = grpc2::FabricStreams::NewStub(channel);
  grpc2::StreamsStepResponse response;
  ASSERT_TRUE(
      stub->Step(Context().get(), StepRequest("e", "l", 2, {SetOp("k", 9)}), &response).ok());
  EXPECT_TRUE(response.already_taken());
  EXPECT_EQ(response.position(), 2);
  grpc2::StatesDictionaryOperateRequest get;
  get.mutable_dictionary()->set_dictionary("state");
  *get.mutable_key() = StringValue("k");
  get.set_get_existing_value(true);
  grpc2::StatesDictionaryOperateResponse value;
  ASSERT_TRUE(
      grpc2::FabricStatesDictionary::NewStub(channel)->Operate(Context().get(), get, &value).ok());
  EXPECT_EQ(IntOf(value.previous_value()), 2);
  grpc2::StreamsGetProgressRequest progress_request;
  progress_request.mutable_stream()->set_stream("e");
  grpc2::StreamsGetProgressResponse progress;
  ASSERT_TRUE(stub->GetProgress(Context().get(), progress_request, &progress).ok());
  EXPECT_EQ(progress.written_count(), 3u);  // Item 1, collected by the step, still counts.
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamStepTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, StreamStepDurabilityTest,
                         ::testing::Values(std::string("rocksdb")), BackendName);

}  // namespace
}  // namespace perper::testing
