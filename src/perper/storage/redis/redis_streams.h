// SPDX-License-Identifier: MIT
// Streams, items and listeners on Redis (docs/cluster.md).
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
class RedisStreams final : public StreamStore {
 public:
  RedisStreams(ClientPool& pool, RedisNotifier& notifier);
  ~RedisStreams() override;
  RedisStreams(const RedisStreams&) = delete;
  RedisStreams& operator=(const RedisStreams&) = delete;

  // Starts whatever runs in the background; called once by RedisStore::Open.
  absl::Status Start();

  absl::StatusOr<bool> CreateStream(StreamRecord record) override;
  absl::StatusOr<StreamRecord> GetStream(std::string_view stream) override;
  absl::StatusOr<std::vector<int64_t>> WriteItems(std::string_view stream, std::vector<ItemToWrite> items) override;
  absl::StatusOr<std::vector<StreamItem>> ReadItems(std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes) override;
  absl::StatusOr<std::optional<int64_t>> LastKey(std::string_view stream) override;
  absl::StatusOr<StreamProgress> GetProgress(std::string_view stream) override;
  absl::Status CompleteStream(std::string_view stream, std::optional<std::string> error) override;
  absl::StatusOr<bool> DeleteStream(std::string_view stream) override;
  absl::StatusOr<ListenerRecord> RegisterListener(std::string_view stream, std::string_view name, int64_t position, bool transient) override;
  absl::Status MoveListener(std::string_view stream, std::string_view name, int64_t position) override;
  absl::StatusOr<bool> DeleteListener(std::string_view stream, std::string_view name) override;
  absl::StatusOr<std::vector<ListenerRecord>> ListListeners(std::string_view stream) override;
  absl::StatusOr<std::vector<StreamSummary>> ListStreams(std::string_view prefix, size_t limit) override;

  absl::StatusOr<int64_t> ListenerPosition(std::string_view stream, std::string_view name);

  absl::StatusOr<int64_t> AdvanceListener(std::string_view stream, std::string_view name, int64_t reached);

 private:
  [[maybe_unused]] ClientPool& pool_;
  [[maybe_unused]] RedisNotifier& notifier_;
};

}  // namespace perper::storage::redis
