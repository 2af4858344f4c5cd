// SPDX-License-Identifier: MIT
// The descriptors part of the redis backend: serialized FabricProtobufDescriptorsRegisterRequest
// messages by type URL in one hash, `{perper}:desc` (type URL → bytes). Registering again
// replaces the stored bytes. Descriptors are registered once per type per process start and read
// rarely, so one slot for all of them is no hot spot. Registrations are not reported to the
// notifier, as in the engines.
//
// Thread safety: every method is safe to call concurrently from any thread; the object holds no
// mutable state.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

class RedisDescriptors final : public DescriptorStore {
 public:
  // `pool` must outlive the object.
  explicit RedisDescriptors(ClientPool& pool) : pool_(pool) {}
  ~RedisDescriptors() override = default;
  RedisDescriptors(const RedisDescriptors&) = delete;
  RedisDescriptors& operator=(const RedisDescriptors&) = delete;

  // Nothing runs in the background.
  absl::Status Start() { return absl::OkStatus(); }

  // INVALID_ARGUMENT when type_url is empty.
  absl::Status RegisterDescriptor(std::string_view type_url, std::string bytes) override;
  absl::StatusOr<std::optional<std::string>> GetDescriptor(std::string_view type_url) override;

 private:
  ClientPool& pool_;
};

}  // namespace perper::storage::redis
