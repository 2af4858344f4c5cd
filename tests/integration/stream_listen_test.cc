// SPDX-License-Identifier: MIT
// ListenItems and ListenItemsAndMove over real gRPC: start positions, ordering of unpacked and
// packed streams, listener registration and resume, completion and deletion.
#include <limits>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/storage/store.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

class StreamListenTest : public FabricTest {
 protected:
  storage::StreamStore& store_streams() { return fabric().server().store().streams(); }
  std::vector<storage::ListenerRecord> Listeners(const std::string& stream) {
    auto listeners = store_streams().ListListeners(stream);
    EXPECT_TRUE(listeners.ok()) << listeners.status();
    return listeners.ok() ? *listeners : std::vector<storage::ListenerRecord>{};
  }
  size_t ItemCount(const std::string& stream) {
    auto list = store_streams().ListStreams(stream, 1).value();
    return list.empty() ? 0 : list[0].item_count;
  }
};

TEST_P(StreamListenTest, ListenChecksItsRequest) {
  auto stub = Streams();
  Listen unknown(*stub, ListenRequest("nope"));
  grpc::Status status = unknown.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(status), HasSubstr("nope"));
  Listen empty(*stub, ListenRequest(""));
  status = empty.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("stream.stream"));
}

TEST_P(StreamListenTest, ReplaysFromTheStartKeyInclusiveInKeyOrderThenFollowsLiveItems) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {5, 1, 3, 2}).ok());
  Listen listen(*stub, ListenRequest("s", 2));
  google::protobuf::Any value;
  EXPECT_EQ(listen.NextKey(&value), std::optional<int64_t>(2));
  EXPECT_EQ(IntOf(value), 2);
  EXPECT_EQ(listen.NextKeys(2), (std::vector<int64_t>{3, 5}));
  ASSERT_TRUE(WriteItem(*stub, "s", 9, Int64Value(9)).ok());
  EXPECT_EQ(listen.NextKey(&value), std::optional<int64_t>(9));
  EXPECT_EQ(IntOf(value), 9);
}

TEST_P(StreamListenTest, UnpackedSkipsALateSmallerKey) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {10}).ok());
  Listen listen(*stub, ListenRequest("s", 0));
  EXPECT_EQ(listen.NextKey(), std::optional<int64_t>(10));
  ASSERT_TRUE(WriteKeys(*stub, "s", {5}).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {11}).ok());
  EXPECT_EQ(listen.NextKey(), std::optional<int64_t>(11));
}

TEST_P(StreamListenTest, UnpackedStartFromLatestDeliversOnlyLaterItems) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2}).ok());
  Listen listen(*stub, ListenRequest("s", 0, "", /*start_from_latest=*/true));
  ASSERT_TRUE(WaitForListener(*stub, "s").ok());  // The call's listener is registered.
  ASSERT_TRUE(WriteItem(*stub, "s", std::nullopt, Int64Value(3)).ok());
  google::protobuf::Any value;
  ASSERT_TRUE(listen.NextKey(&value).has_value());
  EXPECT_EQ(IntOf(value), 3);
}

TEST_P(StreamListenTest, PackedDeliversStrideKeysInOrderEvenWhenWrittenOutOfOrder) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "p", false, 1).ok());
  ASSERT_TRUE(WriteKeys(*stub, "p", {2, 1}).ok());
  Listen listen(*stub, ListenRequest("p", 0, "", false, 1));
  ASSERT_TRUE(WaitForListener(*stub, "p").ok());
  ASSERT_TRUE(WriteKeys(*stub, "p", {4}).ok());
  ASSERT_TRUE(WriteKeys(*stub, "p", {0}).ok());  // Unblocks 0, 1, 2.
  EXPECT_EQ(listen.NextKeys(3), (std::vector<int64_t>{0, 1, 2}));
  ASSERT_TRUE(WriteKeys(*stub, "p", {3}).ok());
  EXPECT_EQ(listen.NextKeys(2), (std::vector<int64_t>{3, 4}));

  ASSERT_TRUE(CreateStream(*stub, "p2", false, 2).ok());
  ASSERT_TRUE(WriteKeys(*stub, "p2", {6, 3, 4, 1}).ok());
  Listen every_other(*stub, ListenRequest("p2", 2, "", false, 2));
  ASSERT_TRUE(WriteKeys(*stub, "p2", {2}).ok());
  EXPECT_EQ(every_other.NextKeys(3), (std::vector<int64_t>{2, 4, 6}));
}

TEST_P(StreamListenTest, PackedStartFromLatestStartsAtTheLargestOrFirstKey) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "p", false, 1).ok());
  ASSERT_TRUE(WriteKeys(*stub, "p", {0, 1, 2}).ok());
  Listen latest(*stub, ListenRequest("p", 0, "", true, 1));
  EXPECT_EQ(latest.NextKey(), std::optional<int64_t>(2));
  ASSERT_TRUE(WriteKeys(*stub, "p", {3}).ok());
  EXPECT_EQ(latest.NextKey(), std::optional<int64_t>(3));

  ASSERT_TRUE(CreateStream(*stub, "empty", false, 1).ok());
  Listen first(*stub, ListenRequest("empty", 0, "", true, 1));
  ASSERT_TRUE(WaitForListener(*stub, "empty").ok());
  ASSERT_TRUE(WriteKeys(*stub, "empty", {7}).ok());
  EXPECT_EQ(first.NextKey(), std::optional<int64_t>(7));
  ASSERT_TRUE(WriteKeys(*stub, "empty", {8}).ok());
  EXPECT_EQ(first.NextKey(), std::optional<int64_t>(8));
}

TEST_P(StreamListenTest, CompletedStreamEndsWithOkAfterItsLastItem) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2}).ok());
  Listen live(*stub, ListenRequest("s"));
  EXPECT_EQ(live.NextKeys(2), (std::vector<int64_t>{1, 2}));
  ASSERT_TRUE(WriteKeys(*stub, "s", {3}).ok());
  ASSERT_TRUE(Complete(*stub, "s").ok());
  grpc::Status status = live.Finish();
  EXPECT_TRUE(status.ok()) << Message(status);
  EXPECT_EQ(live.extra_keys(), (std::vector<int64_t>{3}));
  // Already completed: every item, then OK at once.
  Listen replay(*stub, ListenRequest("s"));
  EXPECT_TRUE(replay.Finish().ok());
  EXPECT_EQ(replay.extra_keys(), (std::vector<int64_t>{1, 2, 3}));
  Listen latest(*stub, ListenRequest("s", 0, "", true));
  EXPECT_TRUE(latest.Finish().ok());
  EXPECT_TRUE(latest.extra_keys().empty());
}

TEST_P(StreamListenTest, CompletedWithAnErrorEndsWithUnknownAndTheMessage) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  Listen listen(*stub, ListenRequest("s"));
  ASSERT_TRUE(WaitForListener(*stub, "s").ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1}).ok());
  ASSERT_TRUE(Complete(*stub, "s", std::string("generator failed")).ok());
  grpc::Status status = listen.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_THAT(Message(status), HasSubstr("generator failed"));
  EXPECT_THAT(Message(status), HasSubstr("stream s"));
  EXPECT_EQ(listen.extra_keys(), (std::vector<int64_t>{1}));
}

TEST_P(StreamListenTest, CompletedPackedStreamSkipsGapsThatCanNoLongerFill) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "p", false, 1).ok());
  ASSERT_TRUE(WriteKeys(*stub, "p", {1, 2, 4, 5}).ok());
  Listen listen(*stub, ListenRequest("p", 1, "", false, 1));
  EXPECT_EQ(listen.NextKeys(2), (std::vector<int64_t>{1, 2}));
  ASSERT_TRUE(Complete(*stub, "p").ok());
  EXPECT_TRUE(listen.Finish().ok());
  EXPECT_EQ(listen.extra_keys(), (std::vector<int64_t>{4, 5}));
}

TEST_P(StreamListenTest, DeletingTheStreamEndsListenWithNotFound) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1}).ok());
  Listen listen(*stub, ListenRequest("s"));
  EXPECT_EQ(listen.NextKey(), std::optional<int64_t>(1));
  ASSERT_TRUE(DeleteStream(*stub, "s").ok());
  grpc::Status status = listen.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(status), HasSubstr("stream s was deleted"));
}

TEST_P(StreamListenTest, NamedListenerIsRegisteredAtomicallyAndOutlivesTheCall) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  {
    Listen listen(*stub, ListenRequest("s", 0, "consumer"));
    // Released only once the call's subscription is live: the next item cannot be missed.
    ASSERT_TRUE(WaitForListener(*stub, "s").ok());
    ASSERT_TRUE(WriteKeys(*stub, "s", {1}).ok());
    EXPECT_EQ(listen.NextKey(), std::optional<int64_t>(1));
    auto listeners = Listeners("s");
    ASSERT_EQ(listeners.size(), 1u);
    EXPECT_EQ(listeners[0].name, "consumer");
    EXPECT_EQ(listeners[0].position, -1);  // just below the start key: nothing processed
    EXPECT_FALSE(listeners[0].transient);
    listen.Cancel();
  }
  size_t subscriptions = 0;
  EXPECT_TRUE(WaitFor([&] {
    subscriptions = fabric().server().hub().SubscriptionCountForTest();
    return subscriptions == 0;
  })) << subscriptions;
  auto listeners = Listeners("s");
  ASSERT_EQ(listeners.size(), 1u);
  EXPECT_EQ(listeners[0].name, "consumer");
}

TEST_P(StreamListenTest, AnonymousListenerLivesOnlyAsLongAsTheCall) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  {
    Listen listen(*stub, ListenRequest("s"));
    ASSERT_TRUE(WaitForListener(*stub, "s").ok());
    auto listeners = Listeners("s");
    ASSERT_EQ(listeners.size(), 1u);
    EXPECT_TRUE(listeners[0].transient);
    listen.Cancel();
  }
  EXPECT_TRUE(WaitFor([&] { return Listeners("s").empty(); }));
  EXPECT_TRUE(WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() == 0; }));
}

TEST_P(StreamListenTest, NamedListenerResumesFromItsSavedPositionRedeliveringThatItem) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2, 3, 4}).ok());
  ASSERT_TRUE(MoveListener(*stub, "s", "n", 3).ok());
  Listen resumed(*stub, ListenRequest("s", 0, "n"));
  EXPECT_EQ(resumed.NextKeys(2), (std::vector<int64_t>{3, 4}));
  // A start key above the saved position wins.
  Listen later(*stub, ListenRequest("s", 4, "n"));
  EXPECT_EQ(later.NextKey(), std::optional<int64_t>(4));
  // A fresh name starts at the start key and is registered just below it (nothing processed).
  Listen fresh(*stub, ListenRequest("s", 2, "m"));
  EXPECT_EQ(fresh.NextKey(), std::optional<int64_t>(2));
  bool found = false;
  for (const auto& listener : Listeners("s")) {
    if (listener.name == "m") {
      found = true;
      EXPECT_EQ(listener.position, 1);
    }
  }
  EXPECT_TRUE(found);
}

TEST_P(StreamListenTest, ListenItemsAndMoveRequiresListenFirst) {
  auto stub = Streams();
  auto context = Context();
  auto call = stub->ListenItemsAndMove(context.get());
  grpc2::StreamsListenItemsAndMoveRequest ack;
  ack.set_reached_key(1);
  ASSERT_TRUE(call->Write(ack));
  call->WritesDone();
  grpc2::StreamsListenItemsResponse response;
  EXPECT_FALSE(call->Read(&response));
  grpc::Status status = call->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("listen"));
}

TEST_P(StreamListenTest, ListenItemsAndMoveAcksMoveTheNamedListener) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2, 3}).ok());
  auto context = Context();
  auto call = stub->ListenItemsAndMove(context.get());
  grpc2::StreamsListenItemsAndMoveRequest first;
  *first.mutable_listen() = ListenRequest("s", 0, "acker");
  ASSERT_TRUE(call->Write(first));
  grpc2::StreamsListenItemsResponse response;
  ASSERT_TRUE(call->Read(&response));
  EXPECT_EQ(response.key(), 1);
  ASSERT_TRUE(call->Read(&response));
  EXPECT_EQ(response.key(), 2);
  grpc2::StreamsListenItemsAndMoveRequest ack;
  ack.set_reached_key(2);
  ASSERT_TRUE(call->Write(ack));
  EXPECT_TRUE(WaitFor([&] {
    auto listeners = Listeners("s");
    return listeners.size() == 1 && listeners[0].position == 2;
  }));
  // The client may close its side and keep receiving.
  call->WritesDone();
  ASSERT_TRUE(call->Read(&response));
  EXPECT_EQ(response.key(), 3);
  ASSERT_TRUE(Complete(*stub, "s").ok());
  EXPECT_FALSE(call->Read(&response));
  EXPECT_TRUE(call->Finish().ok());
  // Resuming by name re-delivers the acknowledged item.
  Listen resumed(*stub, ListenRequest("s", 0, "acker"));
  EXPECT_TRUE(resumed.Finish().ok());
  EXPECT_EQ(resumed.extra_keys(), (std::vector<int64_t>{2, 3}));
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamListenTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
