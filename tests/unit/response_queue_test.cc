// SPDX-License-Identifier: MIT
// ResponseQueue: the batch of a listen call, parsed from the store's bytes into reused slots,
// sent one item per message or packed under a count and a byte cap.
#include "perper/fabric/response_queue.h"

#include <string>

#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

namespace perper::fabric {
namespace {

// A stored value: the serialized Any of a StringValue.
std::string Stored(const std::string& text) {
  google::protobuf::StringValue value;
  value.set_value(text);
  google::protobuf::Any any;
  any.PackFrom(value);
  return any.SerializeAsString();
}

std::string TextOf(const google::protobuf::Any& any) {
  google::protobuf::StringValue value;
  EXPECT_TRUE(any.UnpackTo(&value));
  return value.value();
}

TEST(ResponseQueueTest, PopsInOrderWithKeysAndValues) {
  ResponseQueue queue;
  EXPECT_TRUE(queue.empty());
  queue.Push(3, Stored("three"));
  queue.Push(5, Stored("five"));
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.back_key(), 5);
  const grpc2::StreamsListenItemsResponse* first = queue.Pop();
  EXPECT_EQ(first->key(), 3);
  EXPECT_EQ(TextOf(first->value()), "three");
  const grpc2::StreamsListenItemsResponse* second = queue.Pop();
  EXPECT_EQ(second->key(), 5);
  EXPECT_EQ(TextOf(second->value()), "five");
  EXPECT_TRUE(queue.empty());
}

TEST(ResponseQueueTest, EmptyBytesAreTheNullAny) {
  ResponseQueue queue;
  queue.Push(1, Stored("something"));
  queue.Pop();
  queue.Recycle();
  queue.Push(2, "");  // Reuses the slot that held a value: it must be cleared.
  const grpc2::StreamsListenItemsResponse* response = queue.Pop();
  EXPECT_EQ(response->key(), 2);
  EXPECT_TRUE(response->value().type_url().empty());
  EXPECT_TRUE(response->value().value().empty());
}

TEST(ResponseQueueTest, PackedTakesAtMostMaxItems) {
  ResponseQueue queue;
  for (int key = 1; key <= 5; ++key) queue.Push(key, Stored("v" + std::to_string(key)));
  const grpc2::StreamsListenItemsResponse* packed = queue.PopPacked(3, 1 << 20);
  ASSERT_EQ(packed->items_size(), 3);
  EXPECT_EQ(packed->items(0).key(), 1);
  EXPECT_EQ(TextOf(packed->items(2).value()), "v3");
  EXPECT_EQ(queue.size(), 2u);
  packed = queue.PopPacked(3, 1 << 20);
  ASSERT_EQ(packed->items_size(), 2);
  EXPECT_EQ(packed->items(0).key(), 4);
  EXPECT_EQ(packed->items(1).key(), 5);
  EXPECT_TRUE(queue.empty());
}

TEST(ResponseQueueTest, PackedStopsAtTheByteCapButAlwaysTakesOne) {
  ResponseQueue queue;
  queue.Push(1, Stored(std::string(1000, 'a')));
  queue.Push(2, Stored(std::string(1000, 'b')));
  // The first item is over the cap by itself: it goes alone.
  const grpc2::StreamsListenItemsResponse* packed = queue.PopPacked(10, 100);
  ASSERT_EQ(packed->items_size(), 1);
  EXPECT_EQ(packed->items(0).key(), 1);
  // Room for one item of about 1 KiB, not two.
  packed = queue.PopPacked(10, 1500);
  ASSERT_EQ(packed->items_size(), 1);
  EXPECT_EQ(packed->items(0).key(), 2);
  EXPECT_EQ(TextOf(packed->items(0).value()), std::string(1000, 'b'));
}

TEST(ResponseQueueTest, ClearDropsWhatIsQueued) {
  ResponseQueue queue;
  queue.Push(1, Stored("one"));
  queue.Push(2, Stored("two"));
  queue.Clear();
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.size(), 0u);
  queue.Push(9, Stored("nine"));
  EXPECT_EQ(queue.Pop()->key(), 9);
}

TEST(ResponseQueueTest, RecycleDropsTheBuffersOfLargeValues) {
  ResponseQueue queue;
  queue.Push(1, Stored(std::string(1 << 20, 'x')));
  EXPECT_GE(queue.Pop()->value().value().capacity(), size_t{1} << 20);
  queue.Recycle();
  queue.Push(2, Stored("small"));
  const grpc2::StreamsListenItemsResponse* response = queue.Pop();
  EXPECT_EQ(TextOf(response->value()), "small");
  // A fresh slot: an idle call holds no megabyte buffer.
  EXPECT_LT(response->value().value().capacity(), size_t{64} << 10);
}

}  // namespace
}  // namespace perper::fabric
