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
#include "tests/support/forwarding_executions.h"
#include "tests/support/wrapped_store_fabric.h"

namespace perper::testing {
namespace {

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
  for (const std::string& id : created) EXPECT_EQ(reserve.NextExecution(), id);

  EXPECT_EQ(fabric.executions().list_executions_calls.load(), 0);
  EXPECT_EQ(fabric.executions().list_ids_calls.load(), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, ListenScanCostTest, ::testing::Values("memory", "rocksdb"));

}  // namespace
}  // namespace perper::testing
