// SPDX-License-Identifier: MIT
// Conformance tests of ExecutionStore::ListExecutionIds (the copy-free scan the listen calls
// start with), run against every backend: it must list exactly the IDs ListExecutions returns,
// in the same (creation) order.
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::ExecutionFilter;
using storage::ExecutionRecord;

ExecutionRecord Record(const std::string& id, const std::string& agent, const std::string& instance,
                       const std::string& delegate) {
  ExecutionRecord record;
  record.execution = id;
  record.agent = agent;
  record.instance = instance;
  record.delegate = delegate;
  record.arguments = {"argument of " + id};
  return record;
}

class ExecutionIdsTest : public StoreTest {
 protected:
  storage::ExecutionStore& executions() { return store().executions(); }

  std::vector<std::string> Listed(const ExecutionFilter& filter, size_t limit) {
    std::vector<std::string> ids;
    for (const ExecutionRecord& record : Ok(executions().ListExecutions(filter, limit)))
      ids.push_back(record.execution);
    return ids;
  }
};

TEST_P(ExecutionIdsTest, ListsTheIdsListExecutionsReturnsInCreationOrder) {
  // Created in an order unrelated to the IDs' own order (and to the store's sharding).
  const std::vector<std::pair<std::string, std::string>> created = {
      {"z-9", "A"}, {"a-1", "A"}, {"m-5", "B"}, {"b-2", "A"},
      {"y-8", "A"}, {"c-3", "B"}, {"x-7", "A"}, {"d-4", "A"}};
  for (const auto& [id, agent] : created) {
    std::string instance = id[0] < 'n' ? "low" : "high";
    ASSERT_TRUE(executions().CreateExecution(Record(id, agent, instance, "Run")).ok());
  }
  ASSERT_TRUE(executions().CompleteExecution("b-2", {"done"}, std::nullopt).ok());
  ASSERT_TRUE(executions().DeleteExecution("y-8").ok());

  std::vector<ExecutionFilter> filters(6);
  filters[0].agent = "A";
  filters[1].agent = "A";
  filters[1].include_finished = true;
  filters[2].agent = "A";
  filters[2].instance = "low";
  filters[3].agent = "B";
  filters[3].delegate = "Run";
  filters[4].any_agent = true;
  filters[5].agent = "nobody";
  for (size_t f = 0; f < filters.size(); ++f) {
    for (size_t limit : {size_t{0}, size_t{2}, size_t{100}}) {
      SCOPED_TRACE("filter " + std::to_string(f) + ", limit " + std::to_string(limit));
      EXPECT_EQ(executions().ListExecutionIds(filters[f], limit).value(),
                Listed(filters[f], limit));
    }
  }
  // And the values themselves, for one filter: unfinished executions of A, oldest first.
  EXPECT_EQ(executions().ListExecutionIds(filters[0], 100).value(),
            (std::vector<std::string>{"z-9", "a-1", "x-7", "d-4"}));
}

INSTANTIATE_TEST_SUITE_P(Backends, ExecutionIdsTest, StoreBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
