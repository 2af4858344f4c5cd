// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <google/protobuf/any.pb.h>

#include "perper/grpc2/streams.pb.h"

namespace perper::fabric {

// ResponseQueue: the batch a listen call is sending: responses parsed straight from the store's
// bytes into slots that are kept from batch to batch, so a warm call allocates nothing per item
// (before, each item was copied out of the store, parsed into a temporary Any and copied again).
//
//   ResponseQueue queue;
//   queue.Push(7, serialized_any);            // slot {key 7, the Any}
//   StartWrite(queue.Pop());                  // valid until the next Recycle
//   ... once the queue is empty and no write is in flight: queue.Recycle();
//
// Thread safety: not thread-safe; the owner guards it (ListenCore, under its mutex).
class ResponseQueue {
 public:
  bool empty() const { return head_ == size_; }
  size_t size() const { return size_ - head_; }
  int64_t back_key() const { return slots_[size_ - 1]->key(); }

  // Appends {key, the Any stored as `value`}; empty bytes are the null (empty) Any.
  void Push(int64_t key, std::string_view value);
  // The oldest queued response; it stays valid until the next Recycle.
  const grpc2::StreamsListenItemsResponse* Pop() { return slots_[head_++].get(); }
  // The oldest queued items, at most `max_items` and (beyond the first) `max_bytes`, moved into
  // one response of `items`; it stays valid until the next PopPacked or Recycle. The values are
  // swapped, not copied, so their buffers keep circulating between slots and the response.
  const grpc2::StreamsListenItemsResponse* PopPacked(int max_items, size_t max_bytes);
  // Drops what is queued (a write in flight keeps its slot).
  void Clear() { head_ = size_ = 0; }
  // Starts a new batch. REQUIRES: empty, and no write in flight (so no slot is in use). Slots
  // that once held a large value are dropped, so an idle call holds no large buffers.
  void Recycle();

 private:
  static constexpr size_t kKeepSlotBytes = 64 << 10;
  static constexpr size_t kItemOverhead = 16;  // Key, tags and lengths of an item, roughly.
  static bool IsLarge(const google::protobuf::Any& value);
  std::vector<std::unique_ptr<grpc2::StreamsListenItemsResponse>> slots_;
  grpc2::StreamsListenItemsResponse packed_;  // The response of items; see PopPacked.
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace perper::fabric
