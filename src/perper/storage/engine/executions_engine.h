// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real engine.
#pragma once

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class ExecutionsEngine final : public ExecutionStore {
 public:
  ExecutionsEngine(Journal* journal, Notifier* notifier) : journal_(journal), notifier_(notifier) {}
  absl::Status Load() { return absl::OkStatus(); }
  absl::StatusOr<bool> CreateExecution(ExecutionRecord record) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<ExecutionRecord> GetExecution(std::string_view execution) override { return absl::UnimplementedError("not implemented"); }
  absl::Status CompleteExecution(std::string_view execution, std::vector<std::string> results, std::optional<std::string> error) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<bool> DeleteExecution(std::string_view execution) override { return absl::UnimplementedError("not implemented"); }
  std::vector<ExecutionRecord> ListExecutions(const ExecutionFilter& filter, size_t limit) override { return {}; }
  absl::StatusOr<bool> TryReserve(std::string_view execution, std::string_view workgroup, std::string_view holder) override { return absl::UnimplementedError("not implemented"); }
  void ReleaseReservation(std::string_view execution, std::string_view workgroup, std::string_view holder) override {  }
  std::vector<ReservationRecord> ListReservations(std::string_view workgroup, size_t limit) override { return {}; }
 private:
  Journal* journal_;
  Notifier* notifier_;
};

}  // namespace perper::storage
