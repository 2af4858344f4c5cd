// SPDX-License-Identifier: MIT
// The retention bound of ephemeral streams over real gRPC: a write that would make a stream
// hold more than --max-stream-retained-bytes behind a listener is held until the listener
// moves, and answered RESOURCE_EXHAUSTED, naming the listener, when the wait runs out.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/storage/store.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

constexpr size_t kValueBytes = 1000;
constexpr size_t kLimit = 16 * 1024;

class StreamRetentionTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts a Fabric whose streams may retain kLimit bytes, and writes wait `wait`.
  void Start(std::chrono::milliseconds wait, size_t limit = kLimit) {
    fabric::FabricLimits limits;
    limits.max_stream_retained_bytes = limit;
    limits.stream_write_wait = wait;
    fabric_ = std::make_unique<InProcessFabric>(GetParam(), limits);
    stub_ = grpc2::FabricStreams::NewStub(fabric_->NewChannel());
  }

  storage::StreamSummary Summary(const std::string& stream) {
    auto list = fabric_->server().store().streams().ListStreams(stream, 1).value();
    EXPECT_EQ(list.size(), 1u);
    return list.empty() ? storage::StreamSummary() : list[0];
  }

  static google::protobuf::Any Value(int64_t key, size_t bytes = kValueBytes) {
    return BytesValue(std::to_string(key) + std::string(bytes, 'v'));
  }

  // Creates an ephemeral stream with a durable listener "slow" at key 0 that never moves on its
  // own, and fills it with keys 1, 2, ... until the next item would pass the limit. Returns the
  // last key written.
  int64_t FillBehindStalledListener(const std::string& stream) {
    EXPECT_TRUE(CreateStream(*stub_, stream, /*ephemeral=*/true).ok());
    EXPECT_TRUE(MoveListener(*stub_, stream, "slow", 0).ok());
    size_t per_item = storage::RetainedBytes(Value(1).SerializeAsString());
    int64_t key = 0;
    while (Summary(stream).retained_bytes + per_item <= kLimit) {
      ++key;
      grpc::Status status = WriteItem(*stub_, stream, key, Value(key));
      EXPECT_TRUE(status.ok()) << Message(status);
      if (!status.ok()) break;
    }
    EXPECT_GT(key, 5);
    return key;
  }

  // Writes `key` on another thread, with the client deadline `timeout`.
  std::future<grpc::Status> WriteAsync(const std::string& stream, int64_t key,
                                       std::chrono::milliseconds timeout) {
    return std::async(std::launch::async, [this, stream, key, timeout] {
      grpc2::StreamsWriteItemRequest request;
      request.mutable_stream()->set_stream(stream);
      request.set_key(key);
      *request.mutable_value() = Value(key);
      google::protobuf::Empty empty;
      return stub_->WriteItem(Context(timeout).get(), request, &empty);
    });
  }

  std::unique_ptr<InProcessFabric> fabric_;
  std::unique_ptr<grpc2::FabricStreams::Stub> stub_;
};

TEST_P(StreamRetentionTest, WriteIsHeldUntilTheListenerMoves) {
  Start(std::chrono::seconds(20));
  int64_t last = FillBehindStalledListener("s");
  size_t retained = Summary("s").retained_bytes;

  std::future<grpc::Status> held = WriteAsync("s", last + 1, std::chrono::seconds(20));
  // Held, not answered: nothing changes while the listener stays put.
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(500)), std::future_status::timeout);
  EXPECT_EQ(Summary("s").retained_bytes, retained);
  EXPECT_EQ(Summary("s").item_count, static_cast<uint64_t>(last));

  // The listener passes half the items: the held write goes through.
  ASSERT_TRUE(MoveListener(*stub_, "s", "slow", last / 2).ok());
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  grpc::Status status = held.get();
  EXPECT_TRUE(status.ok()) << Message(status);
  storage::StreamSummary summary = Summary("s");
  EXPECT_EQ(summary.last_key, last + 1);
  EXPECT_EQ(summary.first_key, last / 2);
  EXPECT_LE(summary.retained_bytes, kLimit);
}

TEST_P(StreamRetentionTest, WriteItemsIsHeldToo) {
  Start(std::chrono::seconds(20));
  int64_t last = FillBehindStalledListener("s");
  std::future<grpc::Status> held = std::async(std::launch::async, [&] {
    grpc2::StreamsWriteItemsRequest request;
    request.mutable_stream()->set_stream("s");
    for (int64_t key : {last + 1, last + 2}) {
      auto* item = request.add_items();
      item->set_key(key);
      *item->mutable_value() = Value(key);
    }
    grpc2::StreamsWriteItemsResponse response;
    grpc::Status status = stub_->WriteItems(Context().get(), request, &response);
    if (status.ok()) {
      EXPECT_THAT(response.keys(), ::testing::ElementsAre(last + 1, last + 2));
    }
    return status;
  });
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  ASSERT_TRUE(MoveListener(*stub_, "s", "slow", last).ok());
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(held.get().ok());
  EXPECT_EQ(Summary("s").item_count, 3u);  // last, last + 1, last + 2.
}

TEST_P(StreamRetentionTest, RefusedAfterTheWaitNamingTheListener) {
  Start(std::chrono::milliseconds(300));
  int64_t last = FillBehindStalledListener("stalled-stream");
  auto started = std::chrono::steady_clock::now();
  grpc::Status status = WriteItem(*stub_, "stalled-stream", last + 1, Value(last + 1));
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Message(status);
  EXPECT_THAT(Message(status), HasSubstr("stream stalled-stream retains"));
  EXPECT_THAT(Message(status), HasSubstr("limit of " + std::to_string(kLimit) + " bytes"));
  EXPECT_THAT(Message(status), HasSubstr("listener slow at position 0 holds them back"));
  EXPECT_THAT(Message(status), HasSubstr("held"));
  EXPECT_GE(elapsed, std::chrono::milliseconds(250));
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  EXPECT_EQ(Summary("stalled-stream").item_count, static_cast<uint64_t>(last));  // Not written.
}

TEST_P(StreamRetentionTest, AnsweredBeforeAShorterClientDeadline) {
  Start(std::chrono::seconds(60));
  int64_t last = FillBehindStalledListener("s");
  std::future<grpc::Status> held = WriteAsync("s", last + 1, std::chrono::milliseconds(800));
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  grpc::Status status = held.get();
  // The reason, not DEADLINE_EXCEEDED.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Message(status);
  EXPECT_THAT(Message(status), HasSubstr("listener slow"));
}

TEST_P(StreamRetentionTest, DeletingTheStreamEndsAHeldWrite) {
  Start(std::chrono::seconds(20));
  int64_t last = FillBehindStalledListener("s");
  std::future<grpc::Status> held = WriteAsync("s", last + 1, std::chrono::seconds(20));
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  ASSERT_TRUE(DeleteStream(*stub_, "s").ok());
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(held.get().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(StreamRetentionTest, AnItemLargerThanTheBoundFitsAnEmptyStream) {
  Start(std::chrono::milliseconds(200));
  ASSERT_TRUE(CreateStream(*stub_, "s", /*ephemeral=*/true).ok());
  ASSERT_TRUE(MoveListener(*stub_, "s", "slow", 0).ok());
  grpc::Status status = WriteItem(*stub_, "s", 1, Value(1, 4 * kLimit));
  EXPECT_TRUE(status.ok()) << Message(status);
  // The next one waits for it to be passed.
  status = WriteItem(*stub_, "s", 2, Value(2, 10));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(MoveListener(*stub_, "s", "slow", 2).ok());
  status = WriteItem(*stub_, "s", 2, Value(2, 10));
  EXPECT_TRUE(status.ok()) << Message(status);
}

TEST_P(StreamRetentionTest, PersistentStreamsAreNotBounded) {
  Start(std::chrono::milliseconds(200));
  ASSERT_TRUE(CreateStream(*stub_, "p", /*ephemeral=*/false).ok());
  ASSERT_TRUE(MoveListener(*stub_, "p", "slow", 0).ok());
  for (int64_t key = 1; key <= 4 * static_cast<int64_t>(kLimit / kValueBytes); ++key) {
    grpc::Status status = WriteItem(*stub_, "p", key, Value(key));
    ASSERT_TRUE(status.ok()) << key << ": " << Message(status);
  }
  EXPECT_GT(Summary("p").retained_bytes, 3 * kLimit);
}

// Writers on several threads, a reader that acknowledges in bursts: every item arrives, in
// order, and the stream never holds more than the bound.
TEST_P(StreamRetentionTest, RetainedBytesNeverPassTheBound) {
  Start(std::chrono::seconds(20));
  ASSERT_TRUE(CreateStream(*stub_, "s", /*ephemeral=*/true).ok());
  ASSERT_TRUE(MoveListener(*stub_, "s", "reader", storage::kPositionNotStarted).ok());
  constexpr int kWriters = 4;
  constexpr int kBatches = 25;
  constexpr int kBatch = 3;
  std::atomic<bool> writing{true};
  std::atomic<size_t> max_retained{0};
  std::thread monitor([&] {
    while (writing.load()) {
      size_t retained = Summary("s").retained_bytes;
      size_t seen = max_retained.load();
      while (retained > seen && !max_retained.compare_exchange_weak(seen, retained)) {
      }
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&] {
      for (int b = 0; b < kBatches; ++b) {
        grpc2::StreamsWriteItemsRequest request;
        request.mutable_stream()->set_stream("s");
        for (int i = 0; i < kBatch; ++i) {
          auto* item = request.add_items();
          item->set_auto_key(true);
          *item->mutable_value() = Value(0);
        }
        grpc2::StreamsWriteItemsResponse response;
        if (!stub_->WriteItems(Context(std::chrono::seconds(20)).get(), request, &response).ok())
          ++failures;
      }
    });
  }
  // The reader takes every item and acknowledges every 5th (fewer than the bound holds), so
  // the writers keep waiting for it.
  Listen listen(*stub_, ListenRequest("s", storage::kPositionNotStarted, "reader"),
                std::chrono::seconds(60));
  constexpr int kTotal = kWriters * kBatches * kBatch;
  int64_t previous = storage::kPositionNotStarted;
  for (int n = 1; n <= kTotal; ++n) {
    std::optional<int64_t> key = listen.NextKey();
    ASSERT_TRUE(key.has_value()) << "after " << n - 1 << " items";
    EXPECT_GT(*key, previous);
    previous = *key;
    if (n % 5 == 0 || n == kTotal) {
      ASSERT_TRUE(MoveListener(*stub_, "s", "reader", *key).ok());
    }
  }
  for (std::thread& writer : writers) writer.join();
  writing = false;
  monitor.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(max_retained.load(), kLimit / 2);  // The bound was reached, not just respected.
  EXPECT_LE(max_retained.load(), kLimit);
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamRetentionTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
