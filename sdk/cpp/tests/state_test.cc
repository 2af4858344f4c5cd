// SPDX-License-Identifier: MIT
// State in the agent SDK against a real perper-fabric process over gRPC on loopback:
// dictionaries (compare-and-set, contains, count, items, clear) and lists (push, pop, get, set,
// insert, remove, count, items, locate, clear, a list passed to another agent).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "sdk/cpp/tests/drive.h"
#include "tests/support/fabric_process.h"

namespace perper {
namespace {

using ::perper::testing::DriveAgent;
using ::perper::testing::FabricProcess;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

class StateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  std::unique_ptr<FabricProcess> fabric_;
};

TEST_F(StateTest, DictionaryCompareAndSetCountsAndLists) {
  absl::StatusOr<bool> put_if_absent, put_again, replace_wrong, replace_right, remove_if_equal;
  absl::StatusOr<std::optional<int64_t>> n;
  absl::StatusOr<bool> has_n, has_gone;
  absl::StatusOr<int64_t> count, count_after_clear;
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> items;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> mistyped;
  absl::Status cleared;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    Dictionary d = ctx.dictionary("counters");
    put_if_absent = co_await d.compare_and_set("n", std::nullopt, int64_t{41});
    put_again = co_await d.compare_and_set("n", std::nullopt, int64_t{0});
    replace_wrong = co_await d.compare_and_set("n", int64_t{40}, int64_t{0});
    replace_right = co_await d.compare_and_set("n", int64_t{41}, int64_t{42});
    n = co_await d.get<int64_t>("n");
    (void)co_await d.set("gone", int64_t{1});
    remove_if_equal = co_await d.compare_and_set("gone", int64_t{1}, std::nullopt);
    has_n = co_await d.contains("n");
    has_gone = co_await d.contains("gone");
    (void)co_await d.set("m", int64_t{7});
    count = co_await d.count();
    items = co_await d.items<std::string, int64_t>();
    mistyped = co_await d.items<std::string, std::string>();
    cleared = co_await d.clear();
    count_after_clear = co_await d.count();
  }));
  EXPECT_TRUE(*put_if_absent);
  EXPECT_FALSE(*put_again);
  EXPECT_FALSE(*replace_wrong);
  EXPECT_TRUE(*replace_right);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 42);
  EXPECT_TRUE(*remove_if_equal);
  EXPECT_TRUE(*has_n);
  EXPECT_FALSE(*has_gone);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 2);
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_THAT(*items, ElementsAre(Pair("m", 7), Pair("n", 42)));
  ASSERT_FALSE(mistyped.ok());
  EXPECT_THAT(mistyped.status().message(), HasSubstr("cannot read google.protobuf.Int64Value"));
  EXPECT_TRUE(cleared.ok()) << cleared;
  EXPECT_EQ(*count_after_clear, 0);
}

TEST_F(StateTest, ListIsADequeWithIndexedAccess) {
  std::vector<absl::Status> writes;
  absl::StatusOr<std::vector<std::string>> after_pushes, after_edits, final_items;
  absl::StatusOr<std::string> first, last, second;
  absl::StatusOr<std::string> removed;
  absl::StatusOr<std::optional<std::string>> popped_front, popped_back, popped_empty;
  absl::StatusOr<std::optional<int64_t>> found, missing;
  absl::StatusOr<int64_t> count, count_after_clear;
  absl::StatusOr<std::string> past_end;
  absl::Status set_past_end;
  absl::StatusOr<std::vector<std::string>> after_clear;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    List list = ctx.list("names");
    writes.push_back(co_await list.push_back(std::string("b"), std::string("c")));
    writes.push_back(co_await list.push_front(std::string("a")));
    after_pushes = co_await list.items<std::string>();
    first = co_await list.get<std::string>(0);
    last = co_await list.get<std::string>(-1);
    writes.push_back(co_await list.insert(1, std::string("x")));  // a x b c
    writes.push_back(co_await list.set(2, std::string("B")));     // a x B c
    second = co_await list.get<std::string>(1);
    after_edits = co_await list.items<std::string>();
    found = co_await list.locate(std::string("B"));
    missing = co_await list.locate(std::string("zzz"));
    removed = co_await list.remove_at<std::string>(1);  // a B c
    popped_front = co_await list.pop_front<std::string>();
    popped_back = co_await list.pop_back<std::string>();
    count = co_await list.count();
    final_items = co_await list.items<std::string>();
    past_end = co_await list.get<std::string>(5);
    set_past_end = co_await list.set(1, std::string("no"));
    (void)co_await list.clear();
    count_after_clear = co_await list.count();
    after_clear = co_await list.items<std::string>();
    popped_empty = co_await list.pop_front<std::string>();
  }));
  for (const auto& status : writes) {
    EXPECT_TRUE(status.ok()) << status;
  }
  EXPECT_THAT(*after_pushes, ElementsAre("a", "b", "c"));
  EXPECT_EQ(*first, "a");
  EXPECT_EQ(*last, "c");
  EXPECT_EQ(*second, "x");
  EXPECT_THAT(*after_edits, ElementsAre("a", "x", "B", "c"));
  EXPECT_EQ(*found, 2);
  EXPECT_EQ(*missing, std::nullopt);
  EXPECT_EQ(*removed, "x");
  EXPECT_EQ(*popped_front, "a");
  EXPECT_EQ(*popped_back, "c");
  EXPECT_EQ(*count, 1);
  EXPECT_THAT(*final_items, ElementsAre("B"));
  EXPECT_EQ(past_end.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(set_past_end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*count_after_clear, 0);
  EXPECT_TRUE(after_clear->empty());
  ASSERT_TRUE(popped_empty.ok()) << popped_empty.status();
  EXPECT_EQ(*popped_empty, std::nullopt);
}

TEST_F(StateTest, AListPassedToAnotherAgentIsTheSameList) {
  Agent filler("Filler");
  filler.on("Fill",
            [](Context& ctx, grpc2::model::PerperList model, int64_t n) -> Task<absl::Status> {
              List list = ctx.list(model.list());
              for (int64_t i = 0; i < n; ++i) {
                if (absl::Status pushed = co_await list.push_back(i * i); !pushed.ok()) {
                  co_return pushed;
                }
              }
              co_return absl::OkStatus();
            });
  RunOptions options;
  options.fabric_endpoint = fabric_->address();
  Runtime runtime(filler, options);
  ASSERT_TRUE(runtime.Start().ok());
  Result<void> filled;
  absl::StatusOr<std::vector<int64_t>> items;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    List squares = ctx.list("squares");
    filled = co_await ctx.agent("Filler", "f-1").call("Fill", squares.model(), 4);
    items = co_await squares.items<int64_t>();
  }));
  EXPECT_TRUE(filled.ok()) << filled;
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_THAT(*items, ElementsAre(0, 1, 4, 9));
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

}  // namespace
}  // namespace perper
