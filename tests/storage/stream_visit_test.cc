// SPDX-License-Identifier: MIT
// Conformance tests of StreamStore::VisitItems (the copy-free read the listen calls use), run
// against every backend: it must visit exactly what ReadItems returns.
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::ItemToWrite;
using storage::StreamItem;

class StreamVisitTest : public StoreTest {
 protected:
  storage::StreamStore& streams() { return store().streams(); }

  void CreateWith(const std::string& id,
                  const std::vector<std::pair<int64_t, std::string>>& items) {
    storage::StreamRecord record;
    record.stream = id;
    ASSERT_TRUE(streams().CreateStream(record).ok());
    std::vector<ItemToWrite> writes;
    for (const auto& [key, value] : items) writes.push_back(ItemToWrite{key, value});
    ASSERT_TRUE(streams().WriteItems(id, std::move(writes)).ok());
  }

  std::vector<StreamItem> Visit(const std::string& id, int64_t from, size_t max_items,
                                size_t max_bytes, size_t* count = nullptr) {
    std::vector<StreamItem> seen;
    auto visited = streams().VisitItems(id, from, max_items, max_bytes,
                                        [&](int64_t key, std::string_view value) {
                                          seen.push_back(StreamItem{key, std::string(value)});
                                        });
    EXPECT_TRUE(visited.ok()) << visited.status();
    if (count != nullptr) *count = visited.ok() ? *visited : 0;
    return seen;
  }
};

bool Same(const std::vector<StreamItem>& a, const std::vector<StreamItem>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].key != b[i].key || a[i].value != b[i].value) return false;
  return true;
}

TEST_P(StreamVisitTest, VisitsWhatReadItemsReturns) {
  CreateWith("s", {{5, "five"}, {1, "one"}, {3, std::string(100, 'x')}, {2, ""}, {9, "nine"}});
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  struct Case {
    int64_t from;
    size_t max_items;
    size_t max_bytes;
  };
  for (Case c : {Case{kMin, 100, 1 << 20}, Case{3, 100, 1 << 20}, Case{0, 2, 1 << 20},
                 Case{0, 100, 1}, Case{0, 100, 110}, Case{10, 100, 1 << 20}}) {
    SCOPED_TRACE("from " + std::to_string(c.from) + " max_items " + std::to_string(c.max_items) +
                 " max_bytes " + std::to_string(c.max_bytes));
    auto read = streams().ReadItems("s", c.from, c.max_items, c.max_bytes);
    ASSERT_TRUE(read.ok()) << read.status();
    size_t count = 0;
    std::vector<StreamItem> visited = Visit("s", c.from, c.max_items, c.max_bytes, &count);
    EXPECT_TRUE(Same(visited, *read));
    EXPECT_EQ(count, read->size());
  }
  // Spot checks of the values themselves.
  std::vector<StreamItem> all = Visit("s", kMin, 100, 1 << 20);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].key, 1);
  EXPECT_EQ(all[0].value, "one");
  EXPECT_EQ(all[1].value, "");
  EXPECT_EQ(all[2].value, std::string(100, 'x'));
  EXPECT_EQ(all[4].key, 9);
  EXPECT_EQ(all[4].value, "nine");
  // At least one item whatever the byte limit, then it stops after the item reaching it.
  EXPECT_EQ(Visit("s", 3, 100, 1).size(), 1u);
  EXPECT_EQ(Visit("s", 10, 100, 1 << 20).size(), 0u);
}

TEST_P(StreamVisitTest, UnknownOrDeletedStreamIsNotFound) {
  auto unknown = streams().VisitItems("nope", 0, 10, 100, [](int64_t, std::string_view) {
    ADD_FAILURE() << "visited an item of an unknown stream";
  });
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  CreateWith("gone", {{1, "a"}});
  ASSERT_TRUE(streams().DeleteStream("gone").ok());
  auto deleted = streams().VisitItems("gone", 0, 10, 100, [](int64_t, std::string_view) {
    ADD_FAILURE() << "visited an item of a deleted stream";
  });
  EXPECT_EQ(deleted.status().code(), absl::StatusCode::kNotFound);
}

class StreamVisitDurableTest : public StreamVisitTest {};

TEST_P(StreamVisitDurableTest, VisitsItemsAfterReopen) {
  CreateWith("kept", {{7, "seven"}, {8, "eight"}});
  Reopen();
  std::vector<StreamItem> seen = Visit("kept", 0, 10, 1 << 20);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].key, 7);
  EXPECT_EQ(seen[0].value, "seven");
  EXPECT_EQ(seen[1].key, 8);
  EXPECT_EQ(seen[1].value, "eight");
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamVisitTest, StoreBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, StreamVisitDurableTest, DurableBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
