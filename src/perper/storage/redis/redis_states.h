// SPDX-License-Identifier: MIT
// Dictionaries and lists on Redis (docs/cluster.md).
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
class RedisStates final : public StateStore {
 public:
  RedisStates(ClientPool& pool, RedisNotifier& notifier);
  ~RedisStates() override;
  RedisStates(const RedisStates&) = delete;
  RedisStates& operator=(const RedisStates&) = delete;

  // Starts whatever runs in the background; called once by RedisStore::Open.
  absl::Status Start();

  absl::Status CreateDictionary(std::string_view dictionary) override;
  absl::StatusOr<DictionaryOutcome> OperateDictionary(std::string_view dictionary, const DictionaryOperation& op) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListDictionary( std::string_view dictionary) override;
  absl::StatusOr<uint64_t> CountDictionary(std::string_view dictionary) override;
  absl::Status DeleteDictionary(std::string_view dictionary, bool keep_cache) override;
  absl::Status CreateList(std::string_view list) override;
  absl::StatusOr<std::vector<std::string>> OperateList(std::string_view list, const ListOperation& op) override;
  absl::StatusOr<std::optional<ListEntry>> LocateInList(std::string_view list, std::string_view value) override;
  absl::StatusOr<std::vector<ListEntry>> ListList(std::string_view list) override;
  absl::StatusOr<uint64_t> CountList(std::string_view list) override;
  absl::Status DeleteList(std::string_view list, bool keep_cache) override;
  absl::StatusOr<std::vector<StateSummary>> ListStates(std::string_view prefix, size_t limit) override;

 private:
  [[maybe_unused]] ClientPool& pool_;
  [[maybe_unused]] RedisNotifier& notifier_;
};

}  // namespace perper::storage::redis
