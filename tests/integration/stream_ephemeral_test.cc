// SPDX-License-Identifier: MIT
// Ephemeral garbage collection driven by listeners over real gRPC, and many writers and
// listeners on one stream at once.
#include <algorithm>
#include <atomic>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/storage/store.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/redis_backends.h"

namespace perper::testing {
namespace {

class StreamEphemeralTest : public FabricTest {
 protected:
  size_t ItemCount(const std::string& stream) {
    auto list = fabric().server().store().streams().ListStreams(stream, 1).value();
    return list.empty() ? 0 : list[0].item_count;
  }

  // Writes `total` items in batches of `batch` through a ListenItemsAndMove listener that
  // acknowledges each item; returns the largest stored count seen after a batch was written.
  size_t WriteThroughAckingListener(const std::string& stream, bool ephemeral,
                                    const std::string& listener_name, int total, int batch,
                                    int ack_every) {
    auto stub = Streams();
    EXPECT_TRUE(CreateStream(*stub, stream, ephemeral).ok());
    auto context = Context(std::chrono::seconds(60));
    auto call = stub->ListenItemsAndMove(context.get());
    grpc2::StreamsListenItemsAndMoveRequest first;
    *first.mutable_listen() = ListenRequest(stream, 0, listener_name);
    EXPECT_TRUE(call->Write(first));
    EXPECT_TRUE(WaitForListener(*stub, stream).ok());
    size_t max_count = 0;
    int64_t expected = 0;
    for (int written = 0; written < total; written += batch) {
      grpc2::StreamsWriteItemsRequest request;
      request.mutable_stream()->set_stream(stream);
      for (int i = 0; i < batch; ++i) {
        auto* item = request.add_items();
        item->set_auto_key(true);
        *item->mutable_value() = Int64Value(written + i);
      }
      grpc2::StreamsWriteItemsResponse response;
      EXPECT_TRUE(stub->WriteItems(Context().get(), request, &response).ok());
      max_count = std::max(max_count, ItemCount(stream));
      grpc2::StreamsListenItemsResponse item;
      for (int i = 0; i < batch; ++i) {
        if (!call->Read(&item)) {
          ADD_FAILURE() << "listen ended early";
          return max_count;
        }
        EXPECT_EQ(IntOf(item.value()), expected);
        ++expected;
        if (expected % ack_every == 0 || i == batch - 1) {
          grpc2::StreamsListenItemsAndMoveRequest ack;
          ack.set_reached_key(item.key());
          EXPECT_TRUE(call->Write(ack));
        }
      }
      // Acks travel on their own call: wait until the batch's last one has collected.
      if (ephemeral) {
        EXPECT_TRUE(WaitFor([&] { return ItemCount(stream) <= 1; })) << ItemCount(stream);
      }
    }
    call->WritesDone();
    context->TryCancel();
    call->Finish().IgnoreError();
    return max_count;
  }
};

TEST_P(StreamEphemeralTest, AckingListenerKeepsAnEphemeralStreamBounded) {
  constexpr int kTotal = 10000;
  constexpr int kBatch = 100;
  // Each acknowledgement that collects is a durable write; ack every tenth item with rocksdb.
  int ack_every = GetParam() == "memory" ? 1 : 10;
  size_t max_count =
      WriteThroughAckingListener("e", /*ephemeral=*/true, "", kTotal, kBatch, ack_every);
  // After a batch is written, at most the previous batch's last item and the new batch are
  // stored.
  EXPECT_LE(max_count, static_cast<size_t>(kBatch + 1));
  // Once the last acknowledgement landed only the item at the listener's position is left.
  EXPECT_TRUE(WaitFor([&] { return ItemCount("e") <= 1; })) << ItemCount("e");
}

TEST_P(StreamEphemeralTest, NamedAckingListenerAlsoCollects) {
  size_t max_count = WriteThroughAckingListener("e", true, "worker", 1000, 100, 10);
  EXPECT_LE(max_count, 101u);
  EXPECT_TRUE(WaitFor([&] { return ItemCount("e") <= 1; }));
  // The named listener stays, at the last acknowledged key.
  auto listeners = fabric().server().store().streams().ListListeners("e");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 1u);
  EXPECT_EQ((*listeners)[0].name, "worker");
}

TEST_P(StreamEphemeralTest, PersistentStreamsKeepEveryItem) {
  WriteThroughAckingListener("p", /*ephemeral=*/false, "", 2000, 100, 10);
  EXPECT_EQ(ItemCount("p"), 2000u);
}

TEST_P(StreamEphemeralTest, AnonymousListenItemsFollowsDeliveryInAnEphemeralStream) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "e", true).ok());
  Listen listen(*stub, ListenRequest("e"));
  ASSERT_TRUE(WaitForListener(*stub, "e").ok());
  for (int round = 0; round < 20; ++round) {
    std::vector<int64_t> keys;
    for (int i = 0; i < 50; ++i) keys.push_back(round * 50 + i);
    ASSERT_TRUE(WriteKeys(*stub, "e", keys).ok());
    EXPECT_EQ(listen.NextKeys(50), keys);
  }
  // Delivered items go, except the last one delivered.
  EXPECT_TRUE(WaitFor([&] { return ItemCount("e") <= 1; })) << ItemCount("e");
}

TEST_P(StreamEphemeralTest, ItemsAreKeptUntilEveryListenerPassedThem) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "e", true).ok());
  ASSERT_TRUE(MoveListener(*stub, "e", "slow", storage::kPositionNotStarted).ok());
  ASSERT_TRUE(WriteKeys(*stub, "e", {1, 2, 3, 4}).ok());
  ASSERT_TRUE(MoveListener(*stub, "e", "fast", 4).ok());
  EXPECT_EQ(ItemCount("e"), 4u);
  ASSERT_TRUE(MoveListener(*stub, "e", "slow", 2).ok());
  EXPECT_EQ(ItemCount("e"), 3u);  // 2, 3, 4.
  // A late listener replays what is left.
  Listen replay(*stub, ListenRequest("e", std::numeric_limits<int64_t>::min(), "late"));
  EXPECT_EQ(replay.NextKeys(3), (std::vector<int64_t>{2, 3, 4}));
}

TEST_P(StreamEphemeralTest, ManyWritersAndListenersSeeEveryItemOnceInKeyOrder) {
  constexpr int kWriters = 3;
  constexpr int kListeners = 3;
  int per_writer = GetParam() == "memory" ? 300 : 100;
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "c", false).ok());
  std::vector<std::unique_ptr<Listen>> listens;
  for (int i = 0; i < kListeners; ++i) {
    listens.push_back(
        std::make_unique<Listen>(*stub, ListenRequest("c"), std::chrono::seconds(60)));
  }
  ASSERT_TRUE(WaitFor([&] {
    auto listeners = fabric().server().store().streams().ListListeners("c");
    return listeners.ok() && listeners->size() == kListeners;
  }));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  absl::Mutex failure_mu;
  std::string first_failure;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      auto writer = grpc2::FabricStreams::NewStub(fabric().NewChannel());
      for (int i = 0; i < per_writer; ++i) {
        grpc::Status status = WriteItem(*writer, "c", std::nullopt, Int64Value(w * 100000 + i));
        if (status.ok()) continue;
        ++failures;
        absl::MutexLock lock(&failure_mu);
        if (first_failure.empty()) {
          first_failure = "writer " + std::to_string(w) + " item " + std::to_string(i) + ": " +
                          std::to_string(status.error_code()) + " " + status.error_message();
        }
      }
    });
  }
  int total = kWriters * per_writer;
  std::vector<std::vector<int64_t>> values(kListeners);
  std::vector<std::vector<int64_t>> keys(kListeners);
  std::vector<std::thread> readers;
  for (int l = 0; l < kListeners; ++l) {
    readers.emplace_back([&, l] {
      for (int i = 0; i < total; ++i) {
        google::protobuf::Any value;
        std::optional<int64_t> key = listens[l]->NextKey(&value);
        if (!key.has_value()) return;
        keys[l].push_back(*key);
        values[l].push_back(IntOf(value));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  for (int l = 0; l < kListeners; ++l) {
    ASSERT_EQ(keys[l].size(), static_cast<size_t>(total)) << "listener " << l;
    EXPECT_TRUE(std::is_sorted(keys[l].begin(), keys[l].end()));
    EXPECT_EQ(std::adjacent_find(keys[l].begin(), keys[l].end()), keys[l].end());
    std::vector<int64_t> sorted = values[l];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
    // Each writer's items arrive in the order it wrote them.
    for (int w = 0; w < kWriters; ++w) {
      std::vector<int64_t> mine;
      for (int64_t v : values[l]) {
        if (v / 100000 == w) mine.push_back(v % 100000);
      }
      ASSERT_EQ(mine.size(), static_cast<size_t>(per_writer));
      EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    }
  }
}

TEST_P(StreamEphemeralTest, ASlowListenerSlowsOnlyItsOwnCall) {
  constexpr int kItems = 2000;
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  // Separate connections, so that flow control on the stalled call is its own.
  auto slow_stub = grpc2::FabricStreams::NewStub(fabric().NewChannel());
  Listen slow(*slow_stub, ListenRequest("s"), std::chrono::seconds(60));
  Listen fast(*stub, ListenRequest("s"), std::chrono::seconds(60));
  ASSERT_TRUE(WaitFor([&] {
    auto listeners = fabric().server().store().streams().ListListeners("s");
    return listeners.ok() && listeners->size() == 2;
  }));
  // 8 MB in all: far more than the stalled call's flow-control window.
  std::string payload(4000, 'x');
  for (int batch = 0; batch < kItems / 100; ++batch) {
    grpc2::StreamsWriteItemsRequest request;
    request.mutable_stream()->set_stream("s");
    for (int i = 0; i < 100; ++i) {
      auto* item = request.add_items();
      item->set_key(batch * 100 + i);
      *item->mutable_value() = BytesValue(payload);
    }
    grpc2::StreamsWriteItemsResponse response;
    ASSERT_TRUE(stub->WriteItems(Context().get(), request, &response).ok());
  }
  std::vector<int64_t> expected(kItems);
  for (int i = 0; i < kItems; ++i) expected[i] = i;
  EXPECT_EQ(fast.NextKeys(kItems), expected);  // While `slow` has read nothing.
  EXPECT_EQ(slow.NextKeys(kItems), expected);  // And the stalled call catches up.
}

TEST_P(StreamEphemeralTest, ManyOpenListenCallsAreServedWithoutAThreadEach) {
  // Async client calls, so the test itself needs no thread per call either. In cluster mode each
  // call registers its listener in Redis and re-reads Redis on every change (docs/cluster.md,
  // limits), so fewer calls keep the test short; the point, no thread per call, is the same.
  const int kCalls = IsRedisBackend(GetParam()) ? 2000 : 10000;
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "wide", true).ok());
  grpc::CompletionQueue cq;
  struct Call {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReader<grpc2::StreamsListenItemsResponse>> reader;
    grpc2::StreamsListenItemsResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    call->reader = stub->AsyncListenItems(&call->context, ListenRequest("wide"), &cq,
                                          reinterpret_cast<void*>(static_cast<intptr_t>(i * 4)));
    calls.push_back(std::move(call));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        auto listeners = fabric().server().store().streams().ListListeners("wide");
        return listeners.ok() && listeners->size() == static_cast<size_t>(kCalls);
      },
      std::chrono::seconds(40)));
  grpc::Status written = WriteKeys(*stub, "wide", {42});
  ASSERT_TRUE(written.ok()) << written.error_code() << " " << written.error_message();
  ASSERT_TRUE(Complete(*stub, "wide").ok());
  // Per call: started (tag 4i), read the item (4i+1), read the end (4i+2), finished (4i+3).
  int received = 0;
  int finished_ok = 0;
  void* tag;
  bool ok;
  while (finished_ok < kCalls && cq.Next(&tag, &ok)) {
    intptr_t value = reinterpret_cast<intptr_t>(tag);
    Call& call = *calls[value / 4];
    void* base = reinterpret_cast<void*>(value - value % 4);
    switch (value % 4) {
      case 0:
        ASSERT_TRUE(ok);
        call.reader->Read(&call.response, static_cast<char*>(base) + 1);
        break;
      case 1:
        ASSERT_TRUE(ok);
        EXPECT_EQ(call.response.key(), 42);
        ++received;
        call.reader->Read(&call.response, static_cast<char*>(base) + 2);
        break;
      case 2:
        EXPECT_FALSE(ok);  // End of the stream.
        call.reader->Finish(&call.status, static_cast<char*>(base) + 3);
        break;
      case 3:
        EXPECT_TRUE(call.status.ok()) << call.status.error_message();
        ++finished_ok;
        break;
    }
  }
  EXPECT_EQ(received, kCalls);
  EXPECT_EQ(finished_ok, kCalls);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamEphemeralTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
