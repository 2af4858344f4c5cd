// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_streams.h"

namespace perper::storage::redis {
namespace {

absl::Status NotYet() { return absl::UnimplementedError("redis backend: not implemented yet"); }

}  // namespace

RedisStreams::RedisStreams(ClientPool& pool, RedisNotifier& notifier) : pool_(pool), notifier_(notifier) {}
RedisStreams::~RedisStreams() = default;
absl::Status RedisStreams::Start() { return absl::OkStatus(); }

absl::StatusOr<bool> RedisStreams::CreateStream(StreamRecord record) {
  return NotYet();
}
absl::StatusOr<StreamRecord> RedisStreams::GetStream(std::string_view stream) {
  return NotYet();
}
absl::StatusOr<std::vector<int64_t>> RedisStreams::WriteItems(std::string_view stream, std::vector<ItemToWrite> items) {
  return NotYet();
}
absl::StatusOr<std::vector<StreamItem>> RedisStreams::ReadItems(std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes) {
  return NotYet();
}
absl::StatusOr<std::optional<int64_t>> RedisStreams::LastKey(std::string_view stream) {
  return NotYet();
}
absl::StatusOr<StreamProgress> RedisStreams::GetProgress(std::string_view stream) {
  return NotYet();
}
absl::Status RedisStreams::CompleteStream(std::string_view stream, std::optional<std::string> error) {
  return NotYet();
}
absl::StatusOr<bool> RedisStreams::DeleteStream(std::string_view stream) {
  return NotYet();
}
absl::StatusOr<ListenerRecord> RedisStreams::RegisterListener(std::string_view stream, std::string_view name, int64_t position, bool transient) {
  return NotYet();
}
absl::Status RedisStreams::MoveListener(std::string_view stream, std::string_view name, int64_t position) {
  return NotYet();
}
absl::StatusOr<bool> RedisStreams::DeleteListener(std::string_view stream, std::string_view name) {
  return NotYet();
}
absl::StatusOr<std::vector<ListenerRecord>> RedisStreams::ListListeners(std::string_view stream) {
  return NotYet();
}
absl::StatusOr<std::vector<StreamSummary>> RedisStreams::ListStreams(std::string_view prefix, size_t limit) {
  return NotYet();
}
absl::StatusOr<int64_t> RedisStreams::ListenerPosition(std::string_view stream, std::string_view name) {
  return NotYet();
}
absl::StatusOr<int64_t> RedisStreams::AdvanceListener(std::string_view stream, std::string_view name, int64_t reached) {
  return NotYet();
}

}  // namespace perper::storage::redis
