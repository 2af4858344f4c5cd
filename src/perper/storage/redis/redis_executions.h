// SPDX-License-Identifier: MIT
// Executions and reservations on Redis (docs/cluster.md).
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
class RedisExecutions final : public ExecutionStore {
 public:
  RedisExecutions(ClientPool& pool, RedisNotifier& notifier);
  ~RedisExecutions() override;
  RedisExecutions(const RedisExecutions&) = delete;
  RedisExecutions& operator=(const RedisExecutions&) = delete;

  // Starts whatever runs in the background; called once by RedisStore::Open.
  absl::Status Start();

  absl::StatusOr<bool> CreateExecution(ExecutionRecord record) override;
  absl::StatusOr<ExecutionRecord> GetExecution(std::string_view execution) override;
  absl::StatusOr<bool> ReadExecution( std::string_view execution, absl::FunctionRef<void(const ExecutionRecord&)> visit) override;
  absl::Status CompleteExecution(std::string_view execution, std::vector<std::string> results, std::optional<std::string> error) override;
  absl::StatusOr<bool> DeleteExecution(std::string_view execution) override;
  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions( const ExecutionFilter& filter, size_t limit) override;
  absl::StatusOr<bool> TryReserve(std::string_view execution, std::string_view workgroup, std::string_view holder) override;
  absl::Status ReleaseReservation(std::string_view execution, std::string_view workgroup, std::string_view holder) override;
  absl::StatusOr<std::vector<ReservationRecord>> ListReservations( std::string_view workgroup, size_t limit) override;

 private:
  [[maybe_unused]] ClientPool& pool_;
  [[maybe_unused]] RedisNotifier& notifier_;
};

}  // namespace perper::storage::redis
