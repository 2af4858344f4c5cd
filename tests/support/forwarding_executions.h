// SPDX-License-Identifier: MIT
// Test support for cost tests: an ExecutionStore that forwards to another, for a test to
// override what it watches; one that counts the two kinds of scan; and a Fabric on that one
// (tests/support/wrapped_store_fabric.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/storage/store.h"
#include "tests/support/wrapped_store_fabric.h"

namespace perper::testing {

// Forwards every call to `inner` except ReadAndReserve, which stays ExecutionStore's default
// (ReadExecution, then TryReserve, through this wrapper: a subclass counting reads sees them).
// Thread safety: as the store it wraps.
class ForwardingExecutions : public storage::ExecutionStore {
 public:
  explicit ForwardingExecutions(storage::ExecutionStore& inner) : inner_(inner) {}

  absl::StatusOr<bool> CreateExecution(storage::ExecutionRecord record) override {
    return inner_.CreateExecution(std::move(record));
  }
  absl::StatusOr<storage::ExecutionRecord> GetExecution(std::string_view execution) override {
    return inner_.GetExecution(execution);
  }
  absl::StatusOr<bool> ReadExecution(
      std::string_view execution,
      absl::FunctionRef<void(const storage::ExecutionRecord&)> visit) override {
    return inner_.ReadExecution(execution, visit);
  }
  absl::Status CompleteExecution(std::string_view execution, std::vector<std::string> results,
                                 std::optional<std::string> error) override {
    return inner_.CompleteExecution(execution, std::move(results), std::move(error));
  }
  absl::StatusOr<bool> DeleteExecution(std::string_view execution) override {
    return inner_.DeleteExecution(execution);
  }
  absl::StatusOr<std::vector<storage::ExecutionRecord>> ListExecutions(
      const storage::ExecutionFilter& filter, size_t limit) override {
    return inner_.ListExecutions(filter, limit);
  }
  absl::StatusOr<std::vector<std::string>> ListExecutionIds(const storage::ExecutionFilter& filter,
                                                            size_t limit) override {
    return inner_.ListExecutionIds(filter, limit);
  }
  absl::StatusOr<bool> TryReserve(std::string_view execution, std::string_view workgroup,
                                  std::string_view holder) override {
    return inner_.TryReserve(execution, workgroup, holder);
  }
  absl::Status ReleaseReservation(std::string_view execution, std::string_view workgroup,
                                  std::string_view holder) override {
    return inner_.ReleaseReservation(execution, workgroup, holder);
  }
  absl::StatusOr<std::vector<storage::ReservationRecord>> ListReservations(
      std::string_view workgroup, size_t limit) override {
    return inner_.ListReservations(workgroup, limit);
  }

 protected:
  storage::ExecutionStore& inner_;
};

// Counts the two kinds of scan. Thread safety: as the store it wraps; the counters are atomic.
class CountingExecutions final : public ForwardingExecutions {
 public:
  using ForwardingExecutions::ForwardingExecutions;

  std::atomic<int64_t> list_executions_calls{0};
  std::atomic<int64_t> list_ids_calls{0};

  absl::StatusOr<std::vector<storage::ExecutionRecord>> ListExecutions(
      const storage::ExecutionFilter& filter, size_t limit) override {
    ++list_executions_calls;
    return inner_.ListExecutions(filter, limit);
  }
  absl::StatusOr<std::vector<std::string>> ListExecutionIds(const storage::ExecutionFilter& filter,
                                                            size_t limit) override {
    ++list_ids_calls;
    return inner_.ListExecutionIds(filter, limit);
  }
};

// A Fabric in this process (WrappedStoreFabric) on a counting store of the given backend.
class CountingFabric {
 public:
  explicit CountingFabric(const std::string& kind)
      : fabric_(kind, [this](WrappedStore& store) {
          executions_ = std::make_unique<CountingExecutions>(store.inner().executions());
          store.set_executions(executions_.get());
        }) {}

  CountingExecutions& executions() { return *executions_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return fabric_.channel(); }
  std::unique_ptr<grpc2::FabricExecutions::Stub> Executions() {
    return grpc2::FabricExecutions::NewStub(fabric_.channel());
  }

 private:
  std::unique_ptr<CountingExecutions> executions_;  // Outlives the server.
  WrappedStoreFabric fabric_;
};

}  // namespace perper::testing
