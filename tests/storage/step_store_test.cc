// SPDX-License-Identifier: MIT
// Conformance tests of Store::Step (a consumer's atomic step over one dictionary and one named
// listener), run against every backend: each outcome (applied, already taken, position
// mismatch, a failed compare), that nothing applies unless everything does, garbage collection
// of an ephemeral stream after a step, and durability across a reopen.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "perper/common/values.h"
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::DictionaryOperation;
using storage::ItemToWrite;
using storage::kPositionNotStarted;
using storage::StepRequest;
using storage::StepResult;
using storage::StreamRecord;

// Dictionary keys and values are Any bytes.
std::string V(const std::string& text) { return SerializeAny(StringValue(text)); }
std::string Text(const std::string& bytes) { return StringOf(ParseAny(bytes)); }

DictionaryOperation Set(const std::string& key, const std::string& value) {
  DictionaryOperation op;
  op.key = V(key);
  op.set_new_value = true;
  op.new_value = V(value);
  return op;
}

DictionaryOperation Remove(const std::string& key) {
  DictionaryOperation op;
  op.key = V(key);
  op.set_new_value = true;  // An empty new value is null: remove.
  return op;
}

// Compare-and-set; an empty `expected` means "absent".
DictionaryOperation CompareAndSet(const std::string& key, const std::string& expected,
                                  const std::string& value) {
  DictionaryOperation op = Set(key, value);
  op.get_existing_value = true;
  op.compare_existing_value = true;
  op.expected_existing_value = expected.empty() ? std::string() : V(expected);
  return op;
}

class StepStoreTest : public StoreTest {
 protected:
  storage::StreamStore& streams() { return store().streams(); }
  storage::StateStore& states() { return store().states(); }

  StepResult Step(StepRequest request) {
    absl::StatusOr<StepResult> result = store().Step(request);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : StepResult{};
  }

  static StepRequest Request(const std::string& stream, const std::string& listener,
                             int64_t reached_key, std::vector<DictionaryOperation> operations = {},
                             const std::string& dictionary = "state") {
    StepRequest request;
    request.stream = stream;
    request.listener = listener;
    request.reached_key = reached_key;
    request.dictionary = dictionary;
    request.operations = std::move(operations);
    return request;
  }

  // The dictionary as {key text, value text} pairs, sorted by key text.
  std::vector<std::pair<std::string, std::string>> Entries(const std::string& dictionary) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& [key, value] : Ok(states().ListDictionary(dictionary))) {
      entries.emplace_back(Text(key), Text(value));
    }
    std::sort(entries.begin(), entries.end());
    return entries;
  }

  std::optional<int64_t> Position(const std::string& stream, const std::string& listener) {
    auto listeners = streams().ListListeners(stream);
    EXPECT_TRUE(listeners.ok()) << listeners.status();
    if (!listeners.ok()) return std::nullopt;
    for (const auto& record : *listeners) {
      if (record.name == listener) return record.position;
    }
    return std::nullopt;
  }

  std::vector<int64_t> StoredKeys(const std::string& id) {
    auto items = streams().ReadItems(id, std::numeric_limits<int64_t>::min(), 1 << 20, 1 << 30);
    EXPECT_TRUE(items.ok()) << items.status();
    std::vector<int64_t> keys;
    if (items.ok()) {
      for (const auto& item : *items) keys.push_back(item.key);
    }
    return keys;
  }

  void ReopenIfDurable() {
    if (IsDurable()) Reopen();
  }
};

using Pairs = std::vector<std::pair<std::string, std::string>>;

TEST_P(StepStoreTest, AppliesEveryOperationAndMovesTheListener) {
  CreateStream("s", false);
  WriteKeys("s", {1, 2, 3});
  StepResult result =
      Step(Request("s", "avg", 2, {Set("total", "5"), Set("count", "2"), Remove("absent")}));
  EXPECT_TRUE(result.applied);
  EXPECT_FALSE(result.already_taken);
  EXPECT_FALSE(result.position_mismatch);
  EXPECT_EQ(result.position, 2);
  ASSERT_EQ(result.outcomes.size(), 3u);
  EXPECT_TRUE(result.outcomes[0].operation_successful);
  EXPECT_TRUE(result.outcomes[1].operation_successful);
  EXPECT_FALSE(result.outcomes[2].operation_successful);  // Removing an absent key, as Operate.
  EXPECT_EQ(Entries("state"), (Pairs{{"count", "2"}, {"total", "5"}}));
  EXPECT_EQ(Position("s", "avg"), std::optional<int64_t>(2));
  auto listeners = streams().ListListeners("s");
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->size(), 1u);
  EXPECT_FALSE((*listeners)[0].transient);  // A step makes a durable listener.
}

TEST_P(StepStoreTest, OperationsSeeTheOnesBeforeThem) {
  CreateStream("s", false);
  StepResult result = Step(Request(
      "s", "l", 1, {CompareAndSet("k", "", "a"), CompareAndSet("k", "a", "b"), Set("k", "c")}));
  EXPECT_TRUE(result.applied);
  ASSERT_EQ(result.outcomes.size(), 3u);
  EXPECT_TRUE(result.outcomes[0].operation_successful);
  EXPECT_FALSE(result.outcomes[0].previous_value.has_value());
  EXPECT_TRUE(result.outcomes[1].operation_successful);
  EXPECT_EQ(result.outcomes[1].previous_value, std::optional<std::string>(V("a")));
  EXPECT_EQ(Entries("state"), (Pairs{{"k", "c"}}));
}

TEST_P(StepStoreTest, AStepAlreadyTakenChangesNothing) {
  CreateStream("s", false);
  ASSERT_TRUE(Step(Request("s", "l", 5, {Set("k", "1")})).applied);
  for (int64_t reached : {5, 4}) {
    StepResult again = Step(Request("s", "l", reached, {Set("k", "2")}));
    EXPECT_FALSE(again.applied) << reached;
    EXPECT_TRUE(again.already_taken) << reached;
    EXPECT_FALSE(again.position_mismatch) << reached;
    EXPECT_EQ(again.position, 5) << reached;
  }
  EXPECT_EQ(Entries("state"), (Pairs{{"k", "1"}}));
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(5));
}

TEST_P(StepStoreTest, AListenerThatDoesNotExistIsNotStarted) {
  CreateStream("s", false);
  StepRequest request = Request("s", "fresh", -100, {Set("k", "1")});
  request.expected_position = kPositionNotStarted;
  StepResult result = Step(request);
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.position, -100);
}

TEST_P(StepStoreTest, APositionMismatchChangesNothing) {
  CreateStream("s", false);
  ASSERT_TRUE(streams().MoveListener("s", "l", 3).ok());
  StepRequest request = Request("s", "l", 7, {Set("k", "1")});
  request.expected_position = 2;
  StepResult result = Step(request);
  EXPECT_FALSE(result.applied);
  EXPECT_FALSE(result.already_taken);
  EXPECT_TRUE(result.position_mismatch);
  EXPECT_EQ(result.position, 3);
  EXPECT_TRUE(Entries("state").empty());
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(3));

  request.expected_position = 3;
  result = Step(request);
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.position, 7);
  // A listener that does not exist is at kPositionNotStarted.
  StepRequest fresh = Request("s", "other", 1);
  fresh.expected_position = 0;
  EXPECT_TRUE(Step(fresh).position_mismatch);
}

TEST_P(StepStoreTest, AFailedCompareAppliesNothing) {
  CreateStream("s", false);
  ASSERT_TRUE(Step(Request("s", "l", 1, {Set("k", "old"), Set("other", "x")})).applied);
  StepResult result = Step(Request(
      "s", "l", 2, {Set("first", "1"), CompareAndSet("k", "wrong", "new"), Remove("other")}));
  EXPECT_FALSE(result.applied);
  EXPECT_FALSE(result.already_taken);
  EXPECT_FALSE(result.position_mismatch);
  EXPECT_EQ(result.position, 1);
  ASSERT_EQ(result.outcomes.size(), 3u);
  EXPECT_TRUE(result.outcomes[0].operation_successful);
  EXPECT_FALSE(result.outcomes[1].operation_successful);
  EXPECT_EQ(result.outcomes[1].previous_value, std::optional<std::string>(V("old")));
  EXPECT_TRUE(result.outcomes[2].operation_successful);
  EXPECT_EQ(Entries("state"), (Pairs{{"k", "old"}, {"other", "x"}}));
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(1));
  ReopenIfDurable();
  EXPECT_EQ(Entries("state"), (Pairs{{"k", "old"}, {"other", "x"}}));
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(1));
}

TEST_P(StepStoreTest, AStepWithoutOperationsOnlyMovesTheListener) {
  CreateStream("s", false);
  StepRequest request = Request("s", "l", 4, {}, /*dictionary=*/"");
  StepResult result = Step(request);
  EXPECT_TRUE(result.applied);
  EXPECT_TRUE(result.outcomes.empty());
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(4));
}

TEST_P(StepStoreTest, RefusesBadRequests) {
  CreateStream("s", false);
  EXPECT_EQ(store().Step(Request("", "l", 1)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().Step(Request("s", "", 1)).status().code(), absl::StatusCode::kInvalidArgument);
  absl::Status no_dictionary = store().Step(Request("s", "l", 1, {Set("k", "1")}, "")).status();
  EXPECT_EQ(no_dictionary.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_dictionary.message().find("dictionary"), std::string::npos);
  DictionaryOperation null_key = Set("k", "1");
  null_key.key.clear();
  EXPECT_EQ(store().Step(Request("s", "l", 1, {null_key})).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status unknown = store().Step(Request("missing", "l", 1, {Set("k", "1")})).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.message().find("missing"), std::string::npos);
  // Nothing of the refused steps was applied.
  EXPECT_TRUE(Entries("state").empty());
  EXPECT_EQ(Position("s", "l"), std::nullopt);
}

TEST_P(StepStoreTest, CollectsAnEphemeralStreamAsMoveListenerDoes) {
  CreateStream("e", true);
  WriteKeys("e", {1, 2, 3, 4});
  ASSERT_TRUE(streams().RegisterListener("e", "l", kPositionNotStarted, false).ok());
  ASSERT_TRUE(Step(Request("e", "l", 3, {Set("k", "1")})).applied);
  EXPECT_EQ(StoredKeys("e"), (std::vector<int64_t>{3, 4}));  // The item at the position stays.
  auto progress = streams().GetProgress("e");
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->written_count, 4u);
  ReopenIfDurable();
  EXPECT_EQ(StoredKeys("e"), (std::vector<int64_t>{3, 4}));
  // The collected keys are below the floor now: rewriting them is a replay.
  WriteKeys("e", {1, 2});
  EXPECT_EQ(StoredKeys("e"), (std::vector<int64_t>{3, 4}));
}

TEST_P(StepStoreTest, ReportsAListenerChange) {
  CreateStream("s", false);
  TakeChanges();
  ASSERT_TRUE(Step(Request("s", "l", 1, {Set("k", "1")})).applied);
  bool listener_changed = false;
  for (const storage::Change& change : TakeChanges()) {
    if (change.kind == storage::Change::Kind::kListenerChanged && change.id == "s") {
      listener_changed = true;
    }
  }
  EXPECT_TRUE(listener_changed);
}

TEST_P(StepStoreTest, SurvivesAReopen) {
  CreateStream("s", false);
  WriteKeys("s", {1, 2});
  ASSERT_TRUE(Step(Request("s", "l", 2, {Set("total", "3"), Set("count", "2")})).applied);
  ReopenIfDurable();
  EXPECT_EQ(Entries("state"), (Pairs{{"count", "2"}, {"total", "3"}}));
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(2));
  EXPECT_TRUE(Step(Request("s", "l", 2, {Set("total", "99")})).already_taken);
}

TEST_P(StepStoreTest, ConcurrentStepsOfOneListenerApplyOnce) {
  CreateStream("s", false);
  constexpr int kThreads = 4;
  constexpr int64_t kSteps = 50;
  std::atomic<int> applied{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int64_t key = 1; key <= kSteps; ++key) {
        // Each step reads the count and sets it one higher, guarded by a compare: applied
        // steps must add up to the count exactly.
        absl::StatusOr<storage::DictionaryOutcome> current =
            states().OperateDictionary("state", [] {
              DictionaryOperation get;
              get.key = V("count");
              get.get_existing_value = true;
              return get;
            }());
        ASSERT_TRUE(current.ok());
        std::string before =
            current->previous_value.has_value() ? Text(*current->previous_value) : "";
        int64_t n = before.empty() ? 0 : std::stoll(before);
        absl::StatusOr<StepResult> result = store().Step(
            Request("s", "l", key, {CompareAndSet("count", before, std::to_string(n + 1))}));
        ASSERT_TRUE(result.ok()) << result.status();
        if (result->applied) applied.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_GE(applied.load(), 1);
  EXPECT_LE(applied.load(), kSteps);
  auto count = states().ListDictionary("state").value();
  ASSERT_EQ(count.size(), 1u);
  EXPECT_EQ(count[0].second, V(std::to_string(applied.load())));
  EXPECT_EQ(Position("s", "l"), std::optional<int64_t>(kSteps));
}

TEST_P(StepStoreTest, StepsAndDictionaryOperationsInterleaveWithoutDeadlock) {
  CreateStream("a", true);
  CreateStream("b", true);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string stream = t % 2 == 0 ? "a" : "b";
      const std::string dictionary = t < 2 ? "d1" : "d2";
      for (int64_t key = 1; key <= 100; ++key) {
        WriteKeys(stream, {key * 10 + t});
        absl::StatusOr<StepResult> result = store().Step(
            Request(stream, "l" + std::to_string(t), key * 10 + t, {Set("k", "x")}, dictionary));
        ASSERT_TRUE(result.ok()) << result.status();
        ASSERT_TRUE(states().OperateDictionary(dictionary, Set("other", "y")).ok());
        ASSERT_TRUE(states().DeleteDictionary(dictionary == "d1" ? "d2" : "d1", false).ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(Position("a", "l0"), std::optional<int64_t>(1000));
  EXPECT_EQ(Position("b", "l3"), std::optional<int64_t>(1003));
}

INSTANTIATE_TEST_SUITE_P(Backends, StepStoreTest, StoreBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
