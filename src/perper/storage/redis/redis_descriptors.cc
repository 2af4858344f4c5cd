// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_descriptors.h"

namespace perper::storage::redis {
namespace {

absl::Status NotYet() { return absl::UnimplementedError("redis backend: not implemented yet"); }

}  // namespace

RedisDescriptors::RedisDescriptors(ClientPool& pool) : pool_(pool) {}
RedisDescriptors::~RedisDescriptors() = default;
absl::Status RedisDescriptors::Start() { return absl::OkStatus(); }

absl::Status RedisDescriptors::RegisterDescriptor(std::string_view type_url, std::string bytes) {
  return NotYet();
}
absl::StatusOr<std::optional<std::string>> RedisDescriptors::GetDescriptor(std::string_view type_url) {
  return NotYet();
}

}  // namespace perper::storage::redis
