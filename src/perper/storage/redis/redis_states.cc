// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_states.h"

namespace perper::storage::redis {
namespace {

absl::Status NotYet() { return absl::UnimplementedError("redis backend: not implemented yet"); }

}  // namespace

RedisStates::RedisStates(ClientPool& pool, RedisNotifier& notifier) : pool_(pool), notifier_(notifier) {}
RedisStates::~RedisStates() = default;
absl::Status RedisStates::Start() { return absl::OkStatus(); }

absl::Status RedisStates::CreateDictionary(std::string_view dictionary) {
  return NotYet();
}
absl::StatusOr<DictionaryOutcome> RedisStates::OperateDictionary(std::string_view dictionary, const DictionaryOperation& op) {
  return NotYet();
}
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RedisStates::ListDictionary( std::string_view dictionary) {
  return NotYet();
}
absl::StatusOr<uint64_t> RedisStates::CountDictionary(std::string_view dictionary) {
  return NotYet();
}
absl::Status RedisStates::DeleteDictionary(std::string_view dictionary, bool keep_cache) {
  return NotYet();
}
absl::Status RedisStates::CreateList(std::string_view list) {
  return NotYet();
}
absl::StatusOr<std::vector<std::string>> RedisStates::OperateList(std::string_view list, const ListOperation& op) {
  return NotYet();
}
absl::StatusOr<std::optional<ListEntry>> RedisStates::LocateInList(std::string_view list, std::string_view value) {
  return NotYet();
}
absl::StatusOr<std::vector<ListEntry>> RedisStates::ListList(std::string_view list) {
  return NotYet();
}
absl::StatusOr<uint64_t> RedisStates::CountList(std::string_view list) {
  return NotYet();
}
absl::Status RedisStates::DeleteList(std::string_view list, bool keep_cache) {
  return NotYet();
}
absl::StatusOr<std::vector<StateSummary>> RedisStates::ListStates(std::string_view prefix, size_t limit) {
  return NotYet();
}

}  // namespace perper::storage::redis
