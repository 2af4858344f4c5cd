// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real engine.
#pragma once

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class StatesEngine final : public StateStore {
 public:
  StatesEngine(Journal* journal, Notifier* notifier) : journal_(journal), notifier_(notifier) {}
  absl::Status Load() { return absl::OkStatus(); }
  absl::Status CreateDictionary(std::string_view dictionary) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<DictionaryOutcome> OperateDictionary(std::string_view dictionary, const DictionaryOperation& op) override { return absl::UnimplementedError("not implemented"); }
  std::vector<std::pair<std::string, std::string>> ListDictionary( std::string_view dictionary) override { return {}; }
  uint64_t CountDictionary(std::string_view dictionary) override { return {}; }
  absl::Status DeleteDictionary(std::string_view dictionary, bool keep_cache) override { return absl::UnimplementedError("not implemented"); }
  absl::Status CreateList(std::string_view list) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<std::vector<std::string>> OperateList(std::string_view list, const ListOperation& op) override { return absl::UnimplementedError("not implemented"); }
  std::optional<ListEntry> LocateInList(std::string_view list, std::string_view value) override { return {}; }
  std::vector<ListEntry> ListList(std::string_view list) override { return {}; }
  uint64_t CountList(std::string_view list) override { return {}; }
  absl::Status DeleteList(std::string_view list, bool keep_cache) override { return absl::UnimplementedError("not implemented"); }
 private:
  Journal* journal_;
  Notifier* notifier_;
};

}  // namespace perper::storage
