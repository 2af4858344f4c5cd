// SPDX-License-Identifier: MIT
#include "perper/fabric/response_queue.h"

namespace perper::fabric {

void ResponseQueue::Push(int64_t key, std::string_view value) {
  if (size_ == slots_.size()) {
    slots_.push_back(std::make_unique<grpc2::StreamsListenItemsResponse>());
  }
  grpc2::StreamsListenItemsResponse& slot = *slots_[size_++];
  slot.set_key(key);
  google::protobuf::Any* any = slot.mutable_value();
  if (value.empty()) {
    any->Clear();
  } else {
    any->ParseFromArray(value.data(), static_cast<int>(value.size()));
  }
}

const grpc2::StreamsListenItemsResponse* ResponseQueue::PopPacked(int max_items, size_t max_bytes) {
  packed_.mutable_items()->Clear();  // Keeps the cleared items for reuse.
  size_t bytes = 0;
  while (head_ < size_ && packed_.items_size() < max_items) {
    grpc2::StreamsListenItemsResponse& slot = *slots_[head_];
    size_t size = slot.value().ByteSizeLong() + kItemOverhead;
    if (packed_.items_size() > 0 && bytes + size > max_bytes) break;
    grpc2::StreamsListenItemsResponse::Item* item = packed_.add_items();
    item->set_key(slot.key());
    item->mutable_value()->Swap(slot.mutable_value());
    bytes += size;
    ++head_;
  }
  return &packed_;
}

void ResponseQueue::Recycle() {
  for (auto& slot : slots_) {
    if (IsLarge(slot->value())) slot = std::make_unique<grpc2::StreamsListenItemsResponse>();
  }
  for (const grpc2::StreamsListenItemsResponse::Item& item : packed_.items()) {
    if (IsLarge(item.value())) {
      packed_ = grpc2::StreamsListenItemsResponse();
      break;
    }
  }
  head_ = size_ = 0;
}

bool ResponseQueue::IsLarge(const google::protobuf::Any& value) {
  return value.value().capacity() > kKeepSlotBytes || value.type_url().capacity() > kKeepSlotBytes;
}

}  // namespace perper::fabric
