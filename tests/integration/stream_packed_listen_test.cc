// SPDX-License-Identifier: MIT
// Listen calls that ask for several items per response (max_items_per_message, field 102): the
// items come in `items`, in key order, capped in count and bytes; live items too; acks and
// resume work as with one item per message; a negative count is rejected.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

class StreamPackedListenTest : public FabricTest {};

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> keys;
  for (int64_t k = first; k <= last; ++k) keys.push_back(k);
  return keys;
}

// Reads responses until `want` items arrived; returns the item counts of the responses read.
std::vector<int> ReadItems(grpc::ClientReaderInterface<grpc2::StreamsListenItemsResponse>& reader,
                           size_t want, std::vector<int64_t>* keys,
                           std::vector<int64_t>* values = nullptr) {
  std::vector<int> per_message;
  grpc2::StreamsListenItemsResponse response;
  while (keys->size() < want && reader.Read(&response)) {
    per_message.push_back(response.items_size());
    EXPECT_EQ(response.key(), 0);  // Unset when the items are packed.
    EXPECT_FALSE(response.has_value());
    for (const auto& item : response.items()) {
      keys->push_back(item.key());
      if (values != nullptr) values->push_back(IntOf(item.value()));
    }
  }
  return per_message;
}

TEST_P(StreamPackedListenTest, StoredItemsComeSeveralPerMessageInKeyOrder) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  for (int64_t first = 1; first <= 1000; first += 100) {
    ASSERT_TRUE(WriteKeys(*stub, "s", Range(first, first + 99)).ok());
  }
  grpc2::StreamsListenItemsRequest request = ListenRequest("s");
  request.set_max_items_per_message(64);
  auto context = Context();
  auto reader = stub->ListenItems(context.get(), request);
  std::vector<int64_t> keys, values;
  std::vector<int> per_message = ReadItems(*reader, 1000, &keys, &values);
  EXPECT_EQ(keys, Range(1, 1000));
  EXPECT_EQ(values, Range(1, 1000));
  for (int count : per_message) {
    EXPECT_GE(count, 1);
    EXPECT_LE(count, 64);
  }
  EXPECT_LE(per_message.size(), 1000u / 64 + 8);  // Nearly every message full.
  context->TryCancel();
  reader->Finish().IgnoreError();
}

TEST_P(StreamPackedListenTest, LiveItemsAndCompletionToo) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsListenItemsRequest request = ListenRequest("s");
  request.set_max_items_per_message(1000);
  auto context = Context();
  auto reader = stub->ListenItems(context.get(), request);
  ASSERT_TRUE(WaitForListener(*stub, "s").ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", Range(1, 300)).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", Range(301, 600)).ok());
  ASSERT_TRUE(Complete(*stub, "s").ok());
  std::vector<int64_t> keys;
  std::vector<int> per_message = ReadItems(*reader, 600, &keys);
  EXPECT_EQ(keys, Range(1, 600));
  EXPECT_LT(per_message.size(), 600u);
  grpc2::StreamsListenItemsResponse response;
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_P(StreamPackedListenTest, AMessageIsCappedInBytesButALargeItemStillTravels) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  // Three 200 KiB items: two never fit the 256 KiB of one packed message together.
  for (int64_t key = 1; key <= 3; ++key) {
    ASSERT_TRUE(WriteItem(*stub, "s", key, BytesValue(std::string(200 << 10, 'a' + key))).ok());
  }
  ASSERT_TRUE(WriteKeys(*stub, "s", {4, 5}).ok());
  grpc2::StreamsListenItemsRequest request = ListenRequest("s");
  request.set_max_items_per_message(100);
  auto context = Context();
  auto reader = stub->ListenItems(context.get(), request);
  std::vector<int64_t> keys;
  std::vector<int> sizes;
  grpc2::StreamsListenItemsResponse response;
  while (keys.size() < 5 && reader->Read(&response)) {
    sizes.push_back(response.items_size());
    for (const auto& item : response.items()) {
      keys.push_back(item.key());
      if (item.key() <= 3) {
        google::protobuf::BytesValue bytes;
        ASSERT_TRUE(item.value().UnpackTo(&bytes));
        EXPECT_EQ(bytes.value(), std::string(200 << 10, 'a' + item.key()));
      }
    }
  }
  EXPECT_EQ(keys, Range(1, 5));
  ASSERT_GE(sizes.size(), 3u);
  EXPECT_EQ(sizes[0], 1);
  EXPECT_EQ(sizes[1], 1);
  context->TryCancel();
  reader->Finish().IgnoreError();
}

TEST_P(StreamPackedListenTest, ListenItemsAndMoveAcksAndResumesWithPackedItems) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  ASSERT_TRUE(WriteKeys(*stub, "s", Range(1, 10)).ok());
  {
    auto context = Context();
    auto call = stub->ListenItemsAndMove(context.get());
    grpc2::StreamsListenItemsAndMoveRequest first;
    *first.mutable_listen() = ListenRequest("s", 0, "acker");
    first.mutable_listen()->set_max_items_per_message(4);
    ASSERT_TRUE(call->Write(first));
    grpc2::StreamsListenItemsResponse response;
    ASSERT_TRUE(call->Read(&response));
    ASSERT_GE(response.items_size(), 1);
    ASSERT_LE(response.items_size(), 4);
    EXPECT_EQ(response.items(0).key(), 1);
    grpc2::StreamsListenItemsAndMoveRequest ack;
    ack.set_reached_key(6);
    ASSERT_TRUE(call->Write(ack));
    ASSERT_TRUE(WaitFor([&] {
      auto listeners = fabric().server().store().streams().ListListeners("s");
      return listeners.ok() && listeners->size() == 1 && (*listeners)[0].position == 6;
    }));
    context->TryCancel();
    call->Finish().IgnoreError();
  }
  // Resumed from the acked position (the item there again: at-least-once).
  grpc2::StreamsListenItemsRequest request = ListenRequest("s", 0, "acker");
  request.set_max_items_per_message(100);
  auto context = Context();
  auto reader = stub->ListenItems(context.get(), request);
  std::vector<int64_t> keys;
  ReadItems(*reader, 5, &keys);
  EXPECT_EQ(keys, Range(6, 10));
  context->TryCancel();
  reader->Finish().IgnoreError();
}

TEST_P(StreamPackedListenTest, PackedStreamsWithAStrideArePackedToo) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "p", false, /*stride=*/2).ok());
  ASSERT_TRUE(WriteKeys(*stub, "p", {0, 2, 4, 6}).ok());
  grpc2::StreamsListenItemsRequest request = ListenRequest("p", 0, "", false, 2);
  request.set_max_items_per_message(10);
  auto context = Context();
  auto reader = stub->ListenItems(context.get(), request);
  std::vector<int64_t> keys;
  ReadItems(*reader, 4, &keys);
  EXPECT_EQ(keys, (std::vector<int64_t>{0, 2, 4, 6}));
  context->TryCancel();
  reader->Finish().IgnoreError();
}

TEST_P(StreamPackedListenTest, ANegativeCountIsRejected) {
  auto stub = Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  grpc2::StreamsListenItemsRequest request = ListenRequest("s");
  request.set_max_items_per_message(-1);
  Listen listen(*stub, request);
  grpc::Status status = listen.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Message(status), HasSubstr("max_items_per_message"));
  EXPECT_THAT(Message(status), HasSubstr("stream s"));
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamPackedListenTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
