// SPDX-License-Identifier: MIT
// Protobuf descriptors on Redis (docs/cluster.md).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

// Thread safety: every method is thread-safe.
class RedisDescriptors final : public DescriptorStore {
 public:
  RedisDescriptors(ClientPool& pool);
  ~RedisDescriptors() override;
  RedisDescriptors(const RedisDescriptors&) = delete;
  RedisDescriptors& operator=(const RedisDescriptors&) = delete;

  // Starts whatever runs in the background; called once by RedisStore::Open.
  absl::Status Start();

  absl::Status RegisterDescriptor(std::string_view type_url, std::string bytes) override;
  absl::StatusOr<std::optional<std::string>> GetDescriptor(std::string_view type_url) override;

 private:
  [[maybe_unused]] ClientPool& pool_;
};

}  // namespace perper::storage::redis
