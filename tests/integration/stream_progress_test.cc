// SPDX-License-Identifier: MIT
// FabricStreams.GetProgress over real gRPC: where a stream stands for a producer that is run
// again (the largest key and the count of items ever written, completion), kept across garbage
// collection of an ephemeral stream, a Fabric restart, and kill -9 of a rocksdb Fabric process.
#include <csignal>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

grpc::Status GetProgress(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                         grpc2::StreamsGetProgressResponse* response) {
  grpc2::StreamsGetProgressRequest request;
  request.mutable_stream()->set_stream(stream);
  return stub.GetProgress(Context().get(), request, response);
}

class StreamProgressTest : public FabricTest {};

TEST_P(StreamProgressTest, UnknownAndEmptyStreamsAreRefused) {
  auto stub = Streams();
  grpc2::StreamsGetProgressResponse response;
  grpc::Status unknown = GetProgress(*stub, "missing-stream", &response);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(unknown), HasSubstr("missing-stream"));
  grpc::Status empty = GetProgress(*stub, "", &response);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(empty), HasSubstr("stream.stream"));
}

TEST_P(StreamProgressTest, ReportsTheLastKeyAndTheItemsEverWritten) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", /*ephemeral=*/true).ok());
  grpc2::StreamsGetProgressResponse response;
  ASSERT_TRUE(GetProgress(*stub, "s", &response).ok());
  EXPECT_FALSE(response.has_items());
  EXPECT_EQ(response.written_count(), 0u);
  EXPECT_FALSE(response.completed());

  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2, 3}).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {2, 3}).ok());            // A producer run again: replays.
  ASSERT_TRUE(MoveListener(*stub, "s", "consumer", 3).ok());  // Collects 1 and 2.
  ASSERT_TRUE(GetProgress(*stub, "s", &response).ok());
  EXPECT_TRUE(response.has_items());
  EXPECT_EQ(response.last_key(), 3);
  EXPECT_EQ(response.written_count(), 3u);

  // Introspection reports the same count next to what is stored now.
  grpc2::IntrospectionListStreamsRequest list;
  list.set_stream_prefix("s");
  grpc2::IntrospectionListStreamsResponse listed;
  ASSERT_TRUE(Introspection()->ListStreams(Context().get(), list, &listed).ok());
  ASSERT_EQ(listed.streams_size(), 1);
  EXPECT_EQ(listed.streams(0).item_count(), 1u);
  EXPECT_EQ(listed.streams(0).written_count(), 3u);

  ASSERT_TRUE(Complete(*stub, "s", std::string("ran out")).ok());
  ASSERT_TRUE(GetProgress(*stub, "s", &response).ok());
  EXPECT_TRUE(response.completed());
  EXPECT_EQ(response.error().message(), "ran out");
}

// Restart tests need a durable backend.
class StreamProgressDurabilityTest : public FabricTest {};

TEST_P(StreamProgressDurabilityTest, SurvivesARestartAfterCollection) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", /*ephemeral=*/true).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {10, 20, 30}).ok());
  ASSERT_TRUE(MoveListener(*stub, "s", "consumer", 40).ok());  // Collects every item.
  fabric().Restart();
  Reconnect();
  stub = Streams();
  grpc2::StreamsGetProgressResponse response;
  ASSERT_TRUE(GetProgress(*stub, "s", &response).ok());
  EXPECT_TRUE(response.has_items());
  EXPECT_EQ(response.last_key(), 30);
  EXPECT_EQ(response.written_count(), 3u);
}

TEST(StreamProgressKillTest, SurvivesKillDashNineOfARocksdbFabric) {
  TempDir data;
  std::vector<std::string> args = {"--storage",         "rocksdb",     "--data-dir",
                                   data.path() + "/db", "--log-level", "warn"};
  {
    FabricProcess first(args);
    ASSERT_TRUE(first.Start()) << first.Log();
    auto stub = grpc2::FabricStreams::NewStub(first.NewChannel());
    ASSERT_TRUE(CreateStream(*stub, "s", /*ephemeral=*/true).ok());
    ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2, 3, 4, 5}).ok());
    ASSERT_TRUE(MoveListener(*stub, "s", "consumer", 4).ok());  // Collects 1, 2 and 3.
    ASSERT_TRUE(WriteKeys(*stub, "s", {6}).ok());
    first.Kill(SIGKILL);
    EXPECT_EQ(first.Wait(), 128 + SIGKILL);
  }
  FabricProcess second(args);
  ASSERT_TRUE(second.Start()) << second.Log();
  auto stub = grpc2::FabricStreams::NewStub(second.NewChannel());
  grpc2::StreamsGetProgressResponse response;
  ASSERT_TRUE(GetProgress(*stub, "s", &response).ok());
  EXPECT_EQ(response.last_key(), 6);
  EXPECT_EQ(response.written_count(), 6u);
  // A replay of a collected key still does not count after the restart.
  ASSERT_TRUE(WriteKeys(*stub, "s", {2, 6}).ok());
  ASSERT_TRUE(GetProgress(*stub, "s", &response).ok());
  EXPECT_EQ(response.written_count(), 6u);
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamProgressTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, StreamProgressDurabilityTest,
                         ::testing::Values(std::string("rocksdb")), BackendName);

}  // namespace
}  // namespace perper::testing
