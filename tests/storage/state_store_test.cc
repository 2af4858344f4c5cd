// SPDX-License-Identifier: MIT
// Conformance of StateStore (dictionaries and lists) on every backend.
#include <deque>
#include <random>
#include <thread>

#include <google/protobuf/struct.pb.h>

#include "perper/common/values.h"
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::DictionaryOperation;
using storage::ListEntry;
using storage::ListOperation;
using Location = storage::ListOperation::Location;

std::string V(int64_t v) { return SerializeAny(Int64Value(v)); }
std::string S(const std::string& v) { return SerializeAny(StringValue(v)); }
std::string ValueNull() {
  google::protobuf::Value value;
  value.set_null_value(google::protobuf::NULL_VALUE);
  google::protobuf::Any any;
  any.PackFrom(value);
  return SerializeAny(any);
}
int64_t I(const std::string& bytes) { return IntOf(ParseAny(bytes)); }

class StateStoreTest : public StoreTest {
 protected:
  storage::StateStore& states() { return store().states(); }

  storage::DictionaryOutcome Op(bool get, bool set, bool compare, std::string key,
                                std::string new_value = "", std::string expected = "") {
    DictionaryOperation op;
    op.key = std::move(key);
    op.get_existing_value = get;
    op.set_new_value = set;
    op.new_value = std::move(new_value);
    op.compare_existing_value = compare;
    op.expected_existing_value = std::move(expected);
    auto outcome = states().OperateDictionary("d", op);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    return outcome.value_or(storage::DictionaryOutcome{});
  }

  std::vector<std::string> ListOp(Location location, int64_t position, uint64_t count, bool get,
                                  bool remove, std::vector<std::string> insert,
                                  std::string_view list = "l") {
    ListOperation op;
    op.location = location;
    op.position = position;
    op.values_count = count;
    op.get_values = get;
    op.remove_values = remove;
    op.insert_values = std::move(insert);
    auto values = states().OperateList(list, op);
    EXPECT_TRUE(values.ok()) << values.status();
    return values.value_or(std::vector<std::string>{});
  }

  std::vector<std::pair<int64_t, int64_t>> RawAndValues(std::string_view list = "l") {
    std::vector<std::pair<int64_t, int64_t>> out;
    uint32_t expected_index = 0;
    for (const ListEntry& e : Ok(states().ListList(list))) {
      EXPECT_EQ(e.index, expected_index++);
      out.emplace_back(e.raw_index, I(e.value));
    }
    return out;
  }
};

using RV = std::vector<std::pair<int64_t, int64_t>>;

TEST_P(StateStoreTest, DictionaryTruthTable) {
  // F F F ContainsKey.
  EXPECT_FALSE(Op(false, false, false, S("k")).operation_successful);
  // F T F Set.
  EXPECT_TRUE(Op(false, true, false, S("k"), V(1)).operation_successful);
  EXPECT_TRUE(Op(false, false, false, S("k")).operation_successful);
  // T F F Get.
  auto got = Op(true, false, false, S("k"));
  EXPECT_TRUE(got.operation_successful);
  ASSERT_TRUE(got.previous_value.has_value());
  EXPECT_EQ(I(*got.previous_value), 1);
  got = Op(true, false, false, S("absent"));
  EXPECT_TRUE(got.operation_successful);
  EXPECT_FALSE(got.previous_value.has_value());
  // F F T compare only.
  EXPECT_TRUE(Op(false, false, true, S("k"), "", V(1)).operation_successful);
  EXPECT_FALSE(Op(false, false, true, S("k"), "", V(2)).operation_successful);
  EXPECT_FALSE(Op(false, false, true, S("k"), "", "").operation_successful);
  EXPECT_TRUE(Op(false, false, true, S("absent"), "", "").operation_successful);
  EXPECT_TRUE(Op(false, false, true, S("absent"), "", ValueNull()).operation_successful);
  // T F T get and compare.
  got = Op(true, false, true, S("k"), "", V(2));
  EXPECT_FALSE(got.operation_successful);
  EXPECT_EQ(I(*got.previous_value), 1);
  // F T T CAS.
  EXPECT_FALSE(Op(false, true, true, S("k"), V(5), V(2)).operation_successful);
  EXPECT_TRUE(Op(false, true, true, S("k"), V(5), V(1)).operation_successful);
  EXPECT_FALSE(Op(false, true, true, S("k"), V(6), "").operation_successful);  // not absent
  EXPECT_TRUE(Op(false, true, true, S("n"), V(7), "").operation_successful);   // put if absent
  EXPECT_FALSE(Op(false, true, true, S("n"), "", V(8)).operation_successful);  // remove if equal
  EXPECT_TRUE(Op(false, true, true, S("n"), "", V(7)).operation_successful);
  EXPECT_FALSE(Op(false, false, false, S("n")).operation_successful);
  // T T F GetAndSet / GetAndRemove.
  got = Op(true, true, false, S("k"), V(9));
  EXPECT_TRUE(got.operation_successful);
  EXPECT_EQ(I(*got.previous_value), 5);
  got = Op(true, true, false, S("k"), "");
  EXPECT_TRUE(got.operation_successful);
  EXPECT_EQ(I(*got.previous_value), 9);
  EXPECT_EQ(states().CountDictionary("d").value(), 0u);
  // F T F remove: ok only when something was removed.
  EXPECT_FALSE(Op(false, true, false, S("k"), "").operation_successful);
  // T T T getAndPutIfAbsent: ok only when it put.
  got = Op(true, true, true, S("k"), V(3), "");
  EXPECT_TRUE(got.operation_successful);
  EXPECT_FALSE(got.previous_value.has_value());
  got = Op(true, true, true, S("k"), V(4), "");
  EXPECT_FALSE(got.operation_successful);
  EXPECT_EQ(I(*got.previous_value), 3);
  // T T T with a value: (false, current) on mismatch, (true, old) on swap.
  got = Op(true, true, true, S("k"), V(4), V(99));
  EXPECT_FALSE(got.operation_successful);
  EXPECT_EQ(I(*got.previous_value), 3);
  got = Op(true, true, true, S("k"), V(4), V(3));
  EXPECT_TRUE(got.operation_successful);
  EXPECT_EQ(I(*got.previous_value), 3);
  EXPECT_EQ(I(*Op(true, false, false, S("k")).previous_value), 4);
}

TEST_P(StateStoreTest, DictionaryRejectsNullKeyAndEmptyName) {
  DictionaryOperation op;
  op.key = "";
  auto outcome = states().OperateDictionary("d", op);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(outcome.status().message().find("key must not be null"), std::string::npos);
  op.key = ValueNull();
  EXPECT_EQ(states().OperateDictionary("d", op).status().code(),
            absl::StatusCode::kInvalidArgument);
  op.key = S("k");
  EXPECT_EQ(states().OperateDictionary("", op).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(states().CreateDictionary("").code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(StateStoreTest, DictionaryListsInKeyOrderAndDeletes) {
  ASSERT_TRUE(states().CreateDictionary("d").ok());
  ASSERT_TRUE(states().CreateDictionary("d").ok());
  for (std::string k : {"c", "a", "b"}) Op(false, true, false, S(k), V(k[0]));
  auto entries = states().ListDictionary("d").value();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].first, S("a"));
  EXPECT_EQ(entries[2].first, S("c"));
  EXPECT_EQ(I(entries[1].second), 'b');
  EXPECT_EQ(states().CountDictionary("d").value(), 3u);
  EXPECT_TRUE(states().ListDictionary("other").value().empty());
  ASSERT_TRUE(states().DeleteDictionary("d", /*keep_cache=*/true).ok());
  EXPECT_EQ(states().CountDictionary("d").value(), 0u);
  Op(false, true, false, S("x"), V(1));
  ASSERT_TRUE(states().DeleteDictionary("d", /*keep_cache=*/false).ok());
  EXPECT_EQ(states().CountDictionary("d").value(), 0u);
  ASSERT_TRUE(states().DeleteDictionary("never", /*keep_cache=*/false).ok());
  // Written again after a delete: a fresh dictionary.
  Op(false, true, false, S("y"), V(2));
  EXPECT_EQ(states().CountDictionary("d").value(), 1u);
}

// Deleting without keep_cache drops the object from the registry while its lock is held; the
// object must outlive that lock (it once did not, and this loop crashed the process).
TEST_P(StateStoreTest, WriteThenDeleteWithoutKeepCacheRepeatedly) {
  ListOperation append;
  append.location = Location::kAtBack;
  append.insert_values = {V(1)};
  for (int round = 0; round < 3000; ++round) {
    Op(false, true, false, S("k"), V(round));
    ASSERT_EQ(states().CountDictionary("d").value(), 1u) << round;
    ASSERT_TRUE(states().DeleteDictionary("d", /*keep_cache=*/false).ok()) << round;
    ASSERT_EQ(states().CountDictionary("d").value(), 0u) << round;
    ASSERT_TRUE(states().OperateList("l", append).ok()) << round;
    ASSERT_EQ(states().CountList("l").value(), 1u) << round;
    ASSERT_TRUE(states().DeleteList("l", /*keep_cache=*/false).ok()) << round;
    ASSERT_EQ(states().CountList("l").value(), 0u) << round;
  }
}

// Restart and reopen tests need a durable backend.
class StateStoreDurabilityTest : public StateStoreTest {};

TEST_P(StateStoreDurabilityTest, DictionarySurvivesReopen) {
  Op(false, true, false, S("a"), V(1));
  Op(false, true, false, S("b"), V(2));
  Op(false, true, false, S("c"), V(3));
  Op(false, true, false, S("b"), "");  // removed
  Op(false, true, false, S("a"), V(10));
  ASSERT_TRUE(states().CreateDictionary("empty").ok());
  ASSERT_TRUE(states().DeleteDictionary("gone", false).ok());
  DictionaryOperation op;
  op.key = S("z");
  op.set_new_value = true;
  op.new_value = V(1);
  ASSERT_TRUE(states().OperateDictionary("gone", op).ok());
  ASSERT_TRUE(states().DeleteDictionary("gone", false).ok());
  Reopen();
  auto entries = states().ListDictionary("d").value();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].first, S("a"));
  EXPECT_EQ(I(entries[0].second), 10);
  EXPECT_EQ(entries[1].first, S("c"));
  EXPECT_EQ(states().CountDictionary("gone").value(), 0u);
  EXPECT_EQ(states().CountDictionary("empty").value(), 0u);
}

TEST_P(StateStoreTest, ConcurrentCompareAndSetCountsExactly) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        while (true) {
          DictionaryOperation get;
          get.key = S("counter");
          get.get_existing_value = true;
          auto current = states().OperateDictionary("d", get);
          ASSERT_TRUE(current.ok());
          int64_t value = current->previous_value ? I(*current->previous_value) : 0;
          DictionaryOperation cas;
          cas.key = S("counter");
          cas.set_new_value = true;
          cas.new_value = V(value + 1);
          cas.compare_existing_value = true;
          cas.expected_existing_value = current->previous_value.value_or("");
          auto outcome = states().OperateDictionary("d", cas);
          ASSERT_TRUE(outcome.ok());
          if (outcome->operation_successful) break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(I(*Op(true, false, false, S("counter")).previous_value), kThreads * kIncrements);
}

TEST_P(StateStoreTest, ListPushPopKeepsRawIndices) {
  EXPECT_TRUE(ListOp(Location::kAtBack, 0, 0, false, false, {V(1), V(2)}).empty());
  ListOp(Location::kAtFront, 0, 0, false, false, {V(-1), V(0)});
  EXPECT_EQ(RawAndValues(), (RV{{-2, -1}, {-1, 0}, {0, 1}, {1, 2}}));
  EXPECT_EQ(states().CountList("l").value(), 4u);
  auto popped = ListOp(Location::kAtBack, 0, 1, true, true, {});
  ASSERT_EQ(popped.size(), 1u);
  EXPECT_EQ(I(popped[0]), 2);
  popped = ListOp(Location::kAtFront, 0, 2, true, true, {});
  ASSERT_EQ(popped.size(), 2u);
  EXPECT_EQ(I(popped[0]), -1);
  EXPECT_EQ(I(popped[1]), 0);
  EXPECT_EQ(RawAndValues(), (RV{{0, 1}}));
}

TEST_P(StateStoreTest, ListLocationsAndErrors) {
  ListOp(Location::kAtBack, 0, 0, false, false, {V(10), V(11), V(12), V(13)});
  ListOperation op;
  op.location = Location::kIndex;
  op.position = 5;
  op.get_values = true;
  op.values_count = 1;
  auto bad = states().OperateList("l", op);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(bad.status().message().find("index 5"), std::string::npos) << bad.status();
  op.location = Location::kRawIndex;
  op.position = -1;
  EXPECT_EQ(states().OperateList("l", op).status().code(), absl::StatusCode::kOutOfRange);
  op.location = Location::kRawIndexBackwards;
  op.position = 4;
  EXPECT_EQ(states().OperateList("l", op).status().code(), absl::StatusCode::kOutOfRange);
  // Backward reads walk towards the front.
  auto got = ListOp(Location::kIndexBackwards, 1, 2, true, false, {});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(I(got[0]), 12);
  EXPECT_EQ(I(got[1]), 11);
  got = ListOp(Location::kRawIndexBackwards, 0, 5, true, false, {});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(I(got[0]), 10);
  // Reads of an unknown list see it empty and create nothing.
  EXPECT_TRUE(ListOp(Location::kAtFront, 0, 3, true, false, {}, "unknown").empty());
  EXPECT_EQ(states().CountList("unknown").value(), 0u);
}

TEST_P(StateStoreTest, ListMiddleInsertShiftsFollowingItems) {
  ListOp(Location::kAtBack, 0, 0, false, false, {V(0), V(1), V(2), V(3)});
  ListOp(Location::kIndex, 2, 0, false, false, {V(100), V(101)});
  EXPECT_EQ(RawAndValues(), (RV{{0, 0}, {1, 1}, {2, 100}, {3, 101}, {4, 2}, {5, 3}}));
  // A backward location keeps the items after it and moves the front.
  ListOp(Location::kIndexBackwards, 2, 0, false, false, {V(200)});
  EXPECT_EQ(RawAndValues(), (RV{{-1, 0}, {0, 1}, {1, 100}, {2, 101}, {3, 200}, {4, 2}, {5, 3}}));
  // Set at a raw index keeps every raw index.
  ListOp(Location::kRawIndex, 3, 1, false, true, {V(300)});
  EXPECT_EQ(RawAndValues(), (RV{{-1, 0}, {0, 1}, {1, 100}, {2, 101}, {3, 300}, {4, 2}, {5, 3}}));
  // Remove two forward from index 2: the following items move down.
  auto removed = ListOp(Location::kIndex, 2, 2, true, true, {});
  ASSERT_EQ(removed.size(), 2u);
  EXPECT_EQ(I(removed[0]), 100);
  EXPECT_EQ(RawAndValues(), (RV{{-1, 0}, {0, 1}, {1, 300}, {2, 2}, {3, 3}}));
}

TEST_P(StateStoreTest, ListLocateDeleteAndNulls) {
  ListOp(Location::kAtBack, 0, 0, false, false, {V(1), "", V(2), V(1)});
  auto entry = states().LocateInList("l", V(1)).value();
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->index, 0u);
  entry = states().LocateInList("l", V(2)).value();
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->index, 2u);
  EXPECT_EQ(entry->raw_index, 2);
  EXPECT_FALSE(states().LocateInList("l", V(3)).value().has_value());
  auto got = ListOp(Location::kAtFront, 0, 4, true, false, {});
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[1], "");
  ASSERT_TRUE(states().DeleteList("l", /*keep_cache=*/true).ok());
  EXPECT_EQ(states().CountList("l").value(), 0u);
  ListOp(Location::kAtBack, 0, 0, false, false, {V(5)});
  ASSERT_TRUE(states().DeleteList("l", /*keep_cache=*/false).ok());
  EXPECT_TRUE(states().ListList("l").value().empty());
  EXPECT_EQ(states().CreateList("").code(), absl::StatusCode::kInvalidArgument);
}

// Random operations against a plain model; the durable backends must read back the same list.
TEST_P(StateStoreTest, RandomListOperationsMatchModelAndSurviveReopen) {
  std::mt19937 rng(42);
  std::deque<int64_t> model;
  int64_t next_value = 0;
  for (int step = 0; step < 400; ++step) {
    int64_t count = static_cast<int64_t>(model.size());
    ListOperation op;
    int kind = static_cast<int>(rng() % 6);
    op.location = static_cast<Location>(kind);
    op.values_count = rng() % 3;
    op.get_values = rng() % 2 == 0;
    op.remove_values = rng() % 2 == 0;
    int inserts = static_cast<int>(rng() % 3);
    std::vector<int64_t> inserted;
    for (int i = 0; i < inserts; ++i) {
      inserted.push_back(next_value);
      op.insert_values.push_back(V(next_value++));
    }
    auto before = states().ListList("r").value();
    int64_t start = before.empty() ? 0 : before.front().raw_index;
    int64_t boundary = 0;
    bool forward = true;
    switch (op.location) {
      case Location::kAtFront:
        boundary = 0;
        break;
      case Location::kAtBack:
        boundary = count;
        forward = false;
        break;
      case Location::kIndex:
        boundary = op.position = rng() % (count + 1);
        break;
      case Location::kIndexBackwards:
        op.position = rng() % (count + 1);
        boundary = count - op.position;
        forward = false;
        break;
      case Location::kRawIndex:
        boundary = rng() % (count + 1);
        if (before.empty()) {
          // An empty list's start is not observable through ListList: use at_back instead.
          op.location = Location::kAtBack;
          forward = false;
          boundary = 0;
        } else {
          op.position = start + boundary;
        }
        break;
      case Location::kRawIndexBackwards:
        if (before.empty()) {
          op.location = Location::kAtFront;
          boundary = 0;
        } else {
          boundary = rng() % (count + 1);
          op.position = start + boundary - 1;
          forward = false;
        }
        break;
    }
    int64_t reached =
        (op.get_values || op.remove_values)
            ? std::min<int64_t>(op.values_count, forward ? count - boundary : boundary)
            : 0;
    int64_t lo = forward ? boundary : boundary - reached;
    std::vector<int64_t> expected_got;
    if (op.get_values) {
      for (int64_t i = 0; i < reached; ++i) {
        expected_got.push_back(forward ? model[lo + i] : model[lo + reached - 1 - i]);
      }
    }
    int64_t at = boundary;
    if (op.remove_values) {
      model.erase(model.begin() + lo, model.begin() + lo + reached);
      at = lo;
    }
    model.insert(model.begin() + at, inserted.begin(), inserted.end());

    auto got = states().OperateList("r", op);
    ASSERT_TRUE(got.ok()) << got.status() << " at step " << step;
    std::vector<int64_t> got_values;
    for (const auto& v : *got) got_values.push_back(I(v));
    ASSERT_EQ(got_values, expected_got) << "step " << step;
    auto after = states().ListList("r").value();
    ASSERT_EQ(after.size(), model.size()) << "step " << step;
    for (size_t i = 0; i < after.size(); ++i) {
      ASSERT_EQ(I(after[i].value), model[i]) << "step " << step;
      if (i > 0) {
        ASSERT_EQ(after[i].raw_index, after[i - 1].raw_index + 1);
      }
    }
  }
  auto final_entries = states().ListList("r").value();
  if (!IsDurable()) return;
  Reopen();
  auto reopened = states().ListList("r").value();
  ASSERT_EQ(reopened.size(), final_entries.size());
  for (size_t i = 0; i < reopened.size(); ++i) {
    EXPECT_EQ(reopened[i].raw_index, final_entries[i].raw_index);
    EXPECT_EQ(reopened[i].value, final_entries[i].value);
  }
}

TEST_P(StateStoreDurabilityTest, ListSurvivesReopen) {
  ListOp(Location::kAtBack, 0, 0, false, false, {V(1), V(2), V(3)});
  ListOp(Location::kAtFront, 0, 0, false, false, {V(0)});
  ListOp(Location::kIndex, 2, 0, false, false, {V(9)});
  ListOp(Location::kAtBack, 0, 1, false, true, {});
  ASSERT_TRUE(states().CreateList("empty").ok());
  ListOp(Location::kAtBack, 0, 0, false, false, {V(1)}, "gone");
  ASSERT_TRUE(states().DeleteList("gone", false).ok());
  ListOp(Location::kAtBack, 0, 0, false, false, {V(1)}, "cleared");
  ASSERT_TRUE(states().DeleteList("cleared", true).ok());
  RV before = RawAndValues();
  EXPECT_EQ(before, (RV{{-1, 0}, {0, 1}, {1, 9}, {2, 2}}));
  Reopen();
  EXPECT_EQ(RawAndValues(), before);
  EXPECT_EQ(states().CountList("gone").value(), 0u);
  EXPECT_EQ(states().CountList("cleared").value(), 0u);
  // Writes continue from the reloaded bounds.
  ListOp(Location::kAtFront, 0, 0, false, false, {V(-5)});
  EXPECT_EQ(RawAndValues().front(), (std::pair<int64_t, int64_t>{-2, -5}));
}

TEST_P(StateStoreTest, ListStatesListsWhatExistsByPrefixAndKind) {
  ASSERT_TRUE(states().CreateDictionary("p-b").ok());
  Op(false, true, false, S("k"), V(1));  // Writes dictionary "d".
  DictionaryOperation op;
  op.key = S("k");
  op.set_new_value = true;
  op.new_value = V(1);
  ASSERT_TRUE(states().OperateDictionary("p-a", op).ok());
  op.key = S("j");
  ASSERT_TRUE(states().OperateDictionary("p-a", op).ok());
  ASSERT_TRUE(states().CreateList("p-a").ok());
  ListOp(Location::kAtBack, 0, 0, false, false, {V(1), V(2)}, "p-c");
  // Neither a read nor a refused write makes a dictionary exist.
  DictionaryOperation refused = op;
  refused.compare_existing_value = true;
  refused.expected_existing_value = V(5);
  ASSERT_TRUE(states().OperateDictionary("p-x", refused).ok());
  EXPECT_EQ(states().CountDictionary("p-y").value(), 0u);

  auto names = [&](std::string_view prefix, size_t limit) {
    std::vector<std::string> out;
    for (const storage::StateSummary& state : Ok(states().ListStates(prefix, limit))) {
      out.push_back((state.kind == storage::StateSummary::Kind::kList ? "L " : "D ") + state.name +
                    " " + std::to_string(state.count));
    }
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names("p-", 100), (Names{"D p-a 2", "D p-b 0", "L p-a 0", "L p-c 2"}));
  EXPECT_EQ(names("", 100), (Names{"D d 1", "D p-a 2", "D p-b 0", "L p-a 0", "L p-c 2"}));
  EXPECT_EQ(names("p-", 3), (Names{"D p-a 2", "D p-b 0", "L p-a 0"}));
  EXPECT_EQ(names("q", 100), Names{});
  if (IsDurable()) {
    Reopen();
    EXPECT_EQ(names("p-", 100), (Names{"D p-a 2", "D p-b 0", "L p-a 0", "L p-c 2"}));
  }
  ASSERT_TRUE(states().DeleteDictionary("p-a", /*keep_cache=*/false).ok());
  ASSERT_TRUE(states().DeleteList("p-c", /*keep_cache=*/true).ok());
  EXPECT_EQ(names("p-", 100), (Names{"D p-b 0", "L p-a 0", "L p-c 0"}));
}

INSTANTIATE_TEST_SUITE_P(Backends, StateStoreTest, StoreBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, StateStoreDurabilityTest, DurableBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
