// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_executions.h"

namespace perper::storage::redis {
namespace {

absl::Status NotYet() { return absl::UnimplementedError("redis backend: not implemented yet"); }

}  // namespace

RedisExecutions::RedisExecutions(ClientPool& pool, RedisNotifier& notifier) : pool_(pool), notifier_(notifier) {}
RedisExecutions::~RedisExecutions() = default;
absl::Status RedisExecutions::Start() { return absl::OkStatus(); }

absl::StatusOr<bool> RedisExecutions::CreateExecution(ExecutionRecord record) {
  return NotYet();
}
absl::StatusOr<ExecutionRecord> RedisExecutions::GetExecution(std::string_view execution) {
  return NotYet();
}
absl::StatusOr<bool> RedisExecutions::ReadExecution( std::string_view execution, absl::FunctionRef<void(const ExecutionRecord&)> visit) {
  return NotYet();
}
absl::Status RedisExecutions::CompleteExecution(std::string_view execution, std::vector<std::string> results, std::optional<std::string> error) {
  return NotYet();
}
absl::StatusOr<bool> RedisExecutions::DeleteExecution(std::string_view execution) {
  return NotYet();
}
absl::StatusOr<std::vector<ExecutionRecord>> RedisExecutions::ListExecutions( const ExecutionFilter& filter, size_t limit) {
  return NotYet();
}
absl::StatusOr<bool> RedisExecutions::TryReserve(std::string_view execution, std::string_view workgroup, std::string_view holder) {
  return NotYet();
}
absl::Status RedisExecutions::ReleaseReservation(std::string_view execution, std::string_view workgroup, std::string_view holder) {
  return NotYet();
}
absl::StatusOr<std::vector<ReservationRecord>> RedisExecutions::ListReservations( std::string_view workgroup, size_t limit) {
  return NotYet();
}

}  // namespace perper::storage::redis
