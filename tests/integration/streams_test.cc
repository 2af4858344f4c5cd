// SPDX-License-Identifier: MIT
// FabricStreams over real gRPC: Create, WriteItem(s), Complete, Delete, MoveListener and
// WaitForListener, with their status codes, plus durability across a Fabric restart.
#include <limits>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/common/values.h"
#include "perper/storage/store.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

class StreamsTest : public FabricTest {
 protected:
  storage::StreamStore& store_streams() { return fabric().server().store().streams(); }
  std::vector<int64_t> StoredKeys(const std::string& stream) {
    auto items = store_streams().ReadItems(stream, std::numeric_limits<int64_t>::min(), 1 << 20,
                                           size_t{1} << 30);
    EXPECT_TRUE(items.ok()) << items.status();
    std::vector<int64_t> keys;
    if (items.ok()) {
      for (const auto& item : *items) keys.push_back(item.key);
    }
    return keys;
  }
  std::vector<storage::ListenerRecord> Listeners(const std::string& stream) {
    auto listeners = store_streams().ListListeners(stream);
    EXPECT_TRUE(listeners.ok()) << listeners.status();
    return listeners.ok() ? *listeners : std::vector<storage::ListenerRecord>{};
  }
};

TEST_P(StreamsTest, CreateRequiresAStreamId) {
  auto stub = Streams();
  grpc::Status status = CreateStream(*stub, "", true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("stream.stream"));
}

TEST_P(StreamsTest, CreateIsIdempotentForIdenticalOptionsOnly) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s1", true, 0).ok());
  EXPECT_TRUE(CreateStream(*stub, "s1", true, 0).ok());
  grpc::Status ephemeral = CreateStream(*stub, "s1", false, 0);
  EXPECT_EQ(ephemeral.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(Message(ephemeral), HasSubstr("s1"));
  grpc::Status stride = CreateStream(*stub, "s1", true, 1);
  EXPECT_EQ(stride.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  auto record = store_streams().GetStream("s1");
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->ephemeral);
  EXPECT_EQ(record->stride, 0);
  ASSERT_TRUE(CreateStream(*stub, "packed", false, 3).ok());
  record = store_streams().GetStream("packed");
  ASSERT_TRUE(record.ok());
  EXPECT_FALSE(record->ephemeral);
  EXPECT_EQ(record->stride, 3);
}

TEST_P(StreamsTest, WriteItemChecksItsRequest) {
  auto stub = Streams();
  grpc::Status unknown = WriteItem(*stub, "nope", 1, Int64Value(1));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(unknown), HasSubstr("nope"));
  EXPECT_EQ(WriteItem(*stub, "", 1, Int64Value(1)).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsWriteItemRequest no_key;
  no_key.mutable_stream()->set_stream("s");
  *no_key.mutable_value() = Int64Value(1);
  google::protobuf::Empty empty;
  grpc::Status missing = stub->WriteItem(Context().get(), no_key, &empty);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(missing), HasSubstr("auto_key"));
  EXPECT_TRUE(StoredKeys("s").empty());

  ASSERT_TRUE(WriteItem(*stub, "s", 7, Int64Value(7)).ok());
  grpc::Status dup = WriteItem(*stub, "s", 7, Int64Value(8));
  EXPECT_EQ(dup.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(Message(dup), HasSubstr("key 7"));
  EXPECT_THAT(Message(dup), HasSubstr("stream s"));
  auto items = store_streams().ReadItems("s", 7, 1, 1000);
  ASSERT_TRUE(items.ok());
  EXPECT_EQ(IntOf(ParseAny((*items)[0].value)), 7);  // Not overwritten.
}

TEST_P(StreamsTest, OversizedValuesAreResourceExhausted) {
  fabric::FabricLimits limits;
  limits.max_value_bytes = 1024;
  InProcessFabric small(GetParam(), limits);
  auto stub = grpc2::FabricStreams::NewStub(small.NewChannel());
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc::Status one = WriteItem(*stub, "s", 1, BytesValue(std::string(2000, 'x')));
  EXPECT_EQ(one.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(Message(one), HasSubstr("1024"));
  grpc2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream("s");
  request.add_items()->set_key(2);
  auto* big = request.add_items();
  big->set_key(3);
  *big->mutable_value() = BytesValue(std::string(2000, 'x'));
  grpc2::StreamsWriteItemsResponse response;
  grpc::Status batch = stub->WriteItems(Context().get(), request, &response);
  EXPECT_EQ(batch.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(Message(batch), HasSubstr("items[1]"));
  EXPECT_TRUE(WriteItem(*stub, "s", 4, BytesValue(std::string(500, 'x'))).ok());
  auto items = small.server().store().streams().ReadItems("s", 0, 10, 1 << 20);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].key, 4);
}

TEST_P(StreamsTest, WriteItemsIsAtomicAndReturnsTheKeys) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream("s");
  request.add_items()->set_key(10);
  request.add_items()->set_auto_key(true);
  request.add_items()->set_auto_key(true);
  grpc2::StreamsWriteItemsResponse response;
  ASSERT_TRUE(stub->WriteItems(Context().get(), request, &response).ok());
  ASSERT_EQ(response.keys_size(), 3);
  EXPECT_EQ(response.keys(0), 10);
  EXPECT_GT(response.keys(1), 10);
  EXPECT_GT(response.keys(2), response.keys(1));
  EXPECT_EQ(StoredKeys("s"), (std::vector<int64_t>{10, response.keys(1), response.keys(2)}));

  // One conflicting key spoils the whole batch.
  grpc2::StreamsWriteItemsRequest bad;
  bad.mutable_stream()->set_stream("s");
  bad.add_items()->set_key(20);
  bad.add_items()->set_key(10);
  *bad.mutable_items(1)->mutable_value() = Int64Value(10);  // Key 10 holds no value.
  grpc2::StreamsWriteItemsResponse bad_response;
  grpc::Status status = stub->WriteItems(Context().get(), bad, &bad_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(Message(status), HasSubstr("key 10"));
  EXPECT_EQ(StoredKeys("s").size(), 3u);

  grpc2::StreamsWriteItemsRequest no_key;
  no_key.mutable_stream()->set_stream("s");
  no_key.add_items()->set_key(30);
  no_key.add_items();
  status = stub->WriteItems(Context().get(), no_key, &bad_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("items[1]"));
  EXPECT_EQ(StoredKeys("s").size(), 3u);

  bad.mutable_stream()->set_stream("nope");
  EXPECT_EQ(stub->WriteItems(Context().get(), bad, &bad_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_P(StreamsTest, NullItemsAreWrittenAndDelivered) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteItem(*stub, "s", 1, google::protobuf::Any()).ok());
  ASSERT_TRUE(WriteItem(*stub, "s", 2, StringValue("x")).ok());
  Listen listen(*stub, ListenRequest("s"));
  google::protobuf::Any value;
  EXPECT_EQ(listen.NextKey(&value), std::optional<int64_t>(1));
  EXPECT_TRUE(value.type_url().empty());
  EXPECT_EQ(listen.NextKey(&value), std::optional<int64_t>(2));
  EXPECT_EQ(StringOf(value), "x");
}

TEST_P(StreamsTest, CompleteChecksStateAndStopsWrites) {
  auto stub = Streams();
  grpc::Status unknown = Complete(*stub, "nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(unknown), HasSubstr("nope"));
  EXPECT_EQ(Complete(*stub, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(Complete(*stub, "s", std::string("it broke")).ok());
  auto record = store_streams().GetStream("s");
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->completed);
  EXPECT_EQ(record->error, std::optional<std::string>("it broke"));
  grpc::Status twice = Complete(*stub, "s");
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(Message(twice), HasSubstr("s"));
  grpc::Status write = WriteItem(*stub, "s", 1, Int64Value(1));
  EXPECT_EQ(write.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(Message(write), HasSubstr("completed"));
}

TEST_P(StreamsTest, DeleteRemovesItemsAndListenersAndUnknownIsNotFound) {
  auto stub = Streams();
  grpc::Status unknown = DeleteStream(*stub, "nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(unknown), HasSubstr("nope"));
  EXPECT_EQ(DeleteStream(*stub, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {1, 2, 3}).ok());
  ASSERT_TRUE(MoveListener(*stub, "s", "l", 1).ok());
  ASSERT_TRUE(DeleteStream(*stub, "s").ok());
  EXPECT_EQ(store_streams().GetStream("s").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DeleteStream(*stub, "s").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(WriteItem(*stub, "s", 4, Int64Value(4)).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  EXPECT_TRUE(StoredKeys("s").empty());
  EXPECT_TRUE(Listeners("s").empty());
}

TEST_P(StreamsTest, DeleteAlsoDeletesTheFinishedProducerOfTheStream) {
  auto stub = Streams();
  auto executions = Executions();
  auto& store_executions = fabric().server().store().executions();
  google::protobuf::Empty empty;
  for (const std::string id : {"finished-producer", "running-producer"}) {
    grpc2::ExecutionsCreateRequest create;
    create.mutable_execution()->set_execution(id);
    create.mutable_instance()->set_agent("Worker");
    create.mutable_instance()->set_instance("w-1");
    create.set_delegate("Generate");
    ASSERT_TRUE(executions->Create(Context().get(), create, &empty).ok());
    ASSERT_TRUE(CreateStream(*stub, id, true).ok());
  }
  grpc2::ExecutionsCompleteRequest complete;
  complete.mutable_execution()->set_execution("finished-producer");
  ASSERT_TRUE(executions->Complete(Context().get(), complete, &empty).ok());

  ASSERT_TRUE(DeleteStream(*stub, "finished-producer").ok());
  EXPECT_EQ(store_executions.GetExecution("finished-producer").status().code(),
            absl::StatusCode::kNotFound);
  // A producer still running is left alone (it may be working on a re-created stream).
  ASSERT_TRUE(DeleteStream(*stub, "running-producer").ok());
  EXPECT_TRUE(store_executions.GetExecution("running-producer").ok());
  // An execution without a stream of its ID is not touched by a refused Delete.
  ASSERT_TRUE(executions
                  ->Complete(
                      Context().get(),
                      [] {
                        grpc2::ExecutionsCompleteRequest request;
                        request.mutable_execution()->set_execution("running-producer");
                        return request;
                      }(),
                      &empty)
                  .ok());
  EXPECT_EQ(DeleteStream(*stub, "running-producer").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(store_executions.GetExecution("running-producer").ok());
}

TEST_P(StreamsTest, MoveListenerChecksItsRequest) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  google::protobuf::Empty empty;
  grpc2::StreamsMoveListenerRequest request;
  request.set_listener_name("l");
  request.set_reached_key(1);
  grpc::Status status = stub->MoveListener(Context().get(), request, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("stream.stream"));
  request.mutable_stream()->set_stream("s");
  request.clear_listener_name();
  status = stub->MoveListener(Context().get(), request, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("listener_name"));
  request.set_listener_name("l");
  request.clear_item_key();
  status = stub->MoveListener(Context().get(), request, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("reached_key"));
  EXPECT_TRUE(Listeners("s").empty());
  status = MoveListener(*stub, "nope", "l", 1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(status), HasSubstr("nope"));
}

TEST_P(StreamsTest, MoveListenerCreatesMovesAndDeletesADurableListener) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(MoveListener(*stub, "s", "l", 5).ok());
  auto listeners = Listeners("s");
  ASSERT_EQ(listeners.size(), 1u);
  EXPECT_EQ(listeners[0].name, "l");
  EXPECT_EQ(listeners[0].position, 5);
  EXPECT_FALSE(listeners[0].transient);
  ASSERT_TRUE(MoveListener(*stub, "s", "l", 9).ok());
  EXPECT_EQ(Listeners("s")[0].position, 9);
  grpc2::StreamsMoveListenerRequest remove;
  remove.mutable_stream()->set_stream("s");
  remove.set_listener_name("l");
  remove.set_delete_listener(true);
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub->MoveListener(Context().get(), remove, &empty).ok());
  EXPECT_TRUE(Listeners("s").empty());
  // Deleting again is OK (a retried delete).
  EXPECT_TRUE(stub->MoveListener(Context().get(), remove, &empty).ok());
}

TEST_P(StreamsTest, WaitForListenerChecksItsRequest) {
  auto stub = Streams();
  grpc::Status unknown = WaitForListener(*stub, "nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(unknown), HasSubstr("nope"));
  EXPECT_EQ(WaitForListener(*stub, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(StreamsTest, WaitForListenerBlocksUntilAListenerIsMoved) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  // No listener: the call does not return before its deadline.
  EXPECT_EQ(WaitForListener(*stub, "s", std::chrono::milliseconds(200)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  // The expired call's subscription goes once the server has seen the cancellation.
  ASSERT_TRUE(WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() == 0; }));
  size_t before = 0;
  grpc::Status waited;
  std::thread waiter([&] { waited = WaitForListener(*stub, "s"); });
  EXPECT_TRUE(WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() > before; }));
  EXPECT_TRUE(MoveListener(*stub, "s", "l", storage::kPositionNotStarted).ok());
  waiter.join();
  EXPECT_TRUE(waited.ok()) << Message(waited);
  // Already there: returns at once.
  EXPECT_TRUE(WaitForListener(*stub, "s").ok());
  // The subscription of the finished call is gone.
  EXPECT_TRUE(
      WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() == before; }));
}

TEST_P(StreamsTest, WaitForListenerIsReleasedByATriggerAndByAListenCall) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "action", true).ok());
  ASSERT_TRUE(MoveListener(*stub, "action", "-trigger", storage::kPositionTrigger).ok());
  EXPECT_TRUE(WaitForListener(*stub, "action").ok());

  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  Listen listen(*stub, ListenRequest("s"));  // Anonymous: a transient listener.
  EXPECT_TRUE(WaitForListener(*stub, "s").ok());
}

TEST_P(StreamsTest, WaitForListenerEndsWithNotFoundWhenTheStreamIsDeleted) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", true).ok());
  size_t before = fabric().server().hub().SubscriptionCountForTest();
  grpc::Status waited;
  std::thread waiter([&] { waited = WaitForListener(*stub, "s"); });
  EXPECT_TRUE(WaitFor([&] { return fabric().server().hub().SubscriptionCountForTest() > before; }));
  EXPECT_TRUE(DeleteStream(*stub, "s").ok());
  waiter.join();
  EXPECT_EQ(waited.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Message(waited), HasSubstr("stream s was deleted"));
}

// Restart and reopen tests need a durable backend.
class StreamsDurabilityTest : public StreamsTest {};

TEST_P(StreamsDurabilityTest, ItemsListenersAndCompletionSurviveARestart) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false, 1).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", {0, 1, 2, 3}).ok());
  ASSERT_TRUE(MoveListener(*stub, "s", "n", 2).ok());
  ASSERT_TRUE(Complete(*stub, "s").ok());
  ASSERT_TRUE(CreateStream(*stub, "auto", true).ok());
  grpc2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream("auto");
  request.add_items()->set_auto_key(true);
  grpc2::StreamsWriteItemsResponse first;
  ASSERT_TRUE(stub->WriteItems(Context().get(), request, &first).ok());

  fabric().Restart();
  Reconnect();
  stub = Streams();
  EXPECT_TRUE(CreateStream(*stub, "auto", true).ok());  // Identical: still idempotent.
  grpc2::StreamsWriteItemsResponse second;
  ASSERT_TRUE(stub->WriteItems(Context().get(), request, &second).ok());
  EXPECT_GT(second.keys(0), first.keys(0));
  // The named listener resumes at its saved position, re-delivering that item, and the
  // completed stream ends the call after its last item.
  Listen listen(*stub, ListenRequest("s", 0, "n", false, 1));
  EXPECT_EQ(listen.NextKeys(2), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(listen.Finish().ok());
  EXPECT_EQ(Complete(*stub, "s").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// A producer that runs again rewrites the keys it wrote before with the same values: accepted,
// and a listener receives each key exactly once, whether the stream is persistent or ephemeral
// (there, the rewritten keys were collected already), and after the stream completed.
TEST_P(StreamsTest, AReRunProducerRewritesItsKeysAndEachIsDeliveredOnce) {
  auto stub = Streams();
  for (bool ephemeral : {false, true}) {
    const std::string stream = ephemeral ? "ephemeral" : "persistent";
    ASSERT_TRUE(CreateStream(*stub, stream, ephemeral).ok());
    Listen listen(*stub, ListenRequest(stream, 0, "consumer"));
    ASSERT_TRUE(WriteKeys(*stub, stream, {1, 2, 3}).ok());
    EXPECT_EQ(listen.NextKeys(3), (std::vector<int64_t>{1, 2, 3})) << stream;
    ASSERT_TRUE(MoveListener(*stub, stream, "consumer", 3).ok());  // Collects 1 and 2.
    // The re-run: every key again, then the rest.
    for (int64_t key : {1, 2, 3}) {
      grpc::Status status = WriteItem(*stub, stream, key, Int64Value(key));
      EXPECT_TRUE(status.ok()) << stream << " key " << key << ": " << Message(status);
    }
    ASSERT_TRUE(WriteKeys(*stub, stream, {1, 2, 3, 4, 5}).ok()) << stream;
    ASSERT_TRUE(Complete(*stub, stream).ok());
    EXPECT_TRUE(WriteKeys(*stub, stream, {4, 5}).ok()) << stream;  // Replays after completion.
    grpc::Status status = listen.Finish();
    EXPECT_TRUE(status.ok()) << Message(status);
    EXPECT_EQ(listen.extra_keys(), (std::vector<int64_t>{4, 5})) << stream;
    // A different value under a used key is still refused, naming stream and key.
    grpc::Status conflict = WriteItem(*stub, stream, 5, Int64Value(50));
    EXPECT_EQ(conflict.error_code(), grpc::StatusCode::ALREADY_EXISTS) << stream;
    EXPECT_THAT(Message(conflict), HasSubstr("key 5 of stream " + stream));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamsTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, StreamsDurabilityTest, ::testing::Values(std::string("rocksdb")),
                         BackendName);

}  // namespace
}  // namespace perper::testing
