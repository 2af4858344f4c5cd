// SPDX-License-Identifier: MIT
// What a listen call's start costs, over real gRPC: Listen and ListenAndReserve start from the
// IDs of the waiting executions (ExecutionStore::ListExecutionIds), never from copies of every
// waiting record (ListExecutions), and still deliver the backlog oldest first.
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>


#include "tests/integration/executions_helpers.h"
#include "tests/support/wrapped_store_fabric.h"

namespace perper::testing {
namespace {

using storage::ExecutionFilter;
using storage::ExecutionRecord;

// An ExecutionStore that forwards to another and counts the two kinds of scan.
class CountingExecutions final : public storage::ExecutionStore {
 public:
  explicit CountingExecutions(storage::ExecutionStore& inner) : inner_(inner) {}

  std::atomic<int64_t> list_executions_calls{0};
  std::atomic<int64_t> list_ids_calls{0};

  absl::StatusOr<bool> CreateExecution(ExecutionRecord record) override {
    return inner_.CreateExecution(std::move(record));
  }
  absl::StatusOr<ExecutionRecord> GetExecution(std::string_view execution) override {
    return inner_.GetExecution(execution);
  }
  absl::StatusOr<bool> ReadExecution(std::string_view execution,
                                     absl::FunctionRef<void(const ExecutionRecord&)> visit) override {
    return inner_.ReadExecution(execution, visit);
  }
  absl::Status CompleteExecution(std::string_view execution, std::vector<std::string> results,
                                 std::optional<std::string> error) override {
    return inner_.CompleteExecution(execution, std::move(results), std::move(error));
  }
  absl::StatusOr<bool> DeleteExecution(std::string_view execution) override {
    return inner_.DeleteExecution(execution);
  }
  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ExecutionFilter& filter,
                                                               size_t limit) override {
    ++list_executions_calls;
    return inner_.ListExecutions(filter, limit);
  }
  absl::StatusOr<std::vector<std::string>> ListExecutionIds(const ExecutionFilter& filter,
                                                            size_t limit) override {
    ++list_ids_calls;
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

 private:
  storage::ExecutionStore& inner_;
};

// A Fabric in this process on a counting store of the given backend.
class CountingFabric {
 public:
  explicit CountingFabric(const std::string& kind)
      : fabric_(kind, [this](WrappedStore& store) {
          executions_ = std::make_unique<CountingExecutions>(store.inner().executions());
          store.set_executions(executions_.get());
        }) {}

  CountingExecutions& executions() { return *executions_; }
  std::unique_ptr<grpc2::FabricExecutions::Stub> Executions() {
    return grpc2::FabricExecutions::NewStub(fabric_.channel());
  }

 private:
  std::unique_ptr<CountingExecutions> executions_;  // Outlives the server.
  WrappedStoreFabric fabric_;
};

class ListenScanCostTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ListenScanCostTest, ListenStartsFromIdsAndDeliversTheBacklogOldestFirst) {
  CountingFabric fabric(GetParam());
  auto stub = fabric.Executions();
  // IDs whose own order differs from their creation order.
  const std::vector<std::string> created = {"job-c", "job-a", "job-d", "job-b"};
  for (const std::string& id : created) {
    ASSERT_TRUE(CreateExecution(*stub, id, "Worker", "w", "Run").ok());
  }
  ASSERT_TRUE(CreateExecution(*stub, "other", "Other", "w", "Run").ok());

  ListenCall listen(*stub, "Worker");
  EXPECT_EQ(listen.ReadInitial(), created);

  ReserveCall reserve(*stub, "Worker", /*credits=*/4);
  for (const std::string& id : created)
    EXPECT_EQ(reserve.NextExecution(), id);

  EXPECT_EQ(fabric.executions().list_executions_calls.load(), 0);
  EXPECT_EQ(fabric.executions().list_ids_calls.load(), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, ListenScanCostTest, ::testing::Values("memory", "rocksdb"));

}  // namespace
}  // namespace perper::testing
