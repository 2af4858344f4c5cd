// SPDX-License-Identifier: MIT
// The redis backend's Step (perper/storage/redis/redis_step.h) where the cluster matters: the
// fence in the dictionary's slot that makes a step exactly-once although the dictionary and the
// listener are written by two scripts, possibly on two nodes.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "perper/common/values.h"
#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_step.h"
#include "perper/storage/redis/redis_store.h"
#include "perper/storage/store.h"
#include "perper/storage/store_factory.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/redis_backends.h"

namespace perper::storage::redis {
namespace {

std::string V(const std::string& text) { return SerializeAny(perper::testing::StringValue(text)); }

DictionaryOperation CompareAndSet(const std::string& key, const std::string& expected,
                                  const std::string& value) {
  DictionaryOperation op;
  op.key = V(key);
  op.set_new_value = true;
  op.new_value = V(value);
  op.get_existing_value = true;
  op.compare_existing_value = true;
  op.expected_existing_value = expected.empty() ? std::string() : V(expected);
  return op;
}

StepRequest Request(int64_t reached, std::vector<DictionaryOperation> operations) {
  StepRequest request;
  request.stream = "s";
  request.listener = "l";
  request.reached_key = reached;
  request.dictionary = "state";
  request.operations = std::move(operations);
  return request;
}

class StepFenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(perper::testing::ResetRedisBackend(GetParam()).ok());
    auto store = OpenStore(*perper::testing::RedisBackendOptions(GetParam()));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto dying = OpenStore(*perper::testing::RedisBackendOptions(GetParam()));
    ASSERT_TRUE(dying.ok()) << dying.status();
    dying_ = *std::move(dying);
    StreamRecord record;
    record.stream = "s";
    record.ephemeral = false;
    ASSERT_TRUE(store_->streams().CreateStream(record).ok());
  }
  void TearDown() override {
    dying_.reset();
    store_.reset();
  }

  std::optional<int64_t> Position() {
    auto listeners = store_->streams().ListListeners("s");
    EXPECT_TRUE(listeners.ok()) << listeners.status();
    if (!listeners.ok()) return std::nullopt;
    for (const ListenerRecord& record : *listeners) {
      if (record.name == "l") return record.position;
    }
    return std::nullopt;
  }

  std::optional<std::string> Value(const std::string& key) {
    DictionaryOperation get;
    get.key = V(key);
    get.get_existing_value = true;
    auto outcome = store_->states().OperateDictionary("state", get);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    if (!outcome.ok() || !outcome->previous_value.has_value()) return std::nullopt;
    return perper::testing::StringOf(ParseAny(*outcome->previous_value));
  }

  // The pool of another store on the same deployment, playing the process that dies mid-step.
  ClientPool& pool() { return static_cast<RedisStore&>(*dying_).pool(); }

  std::unique_ptr<Store> store_;
  std::unique_ptr<Store> dying_;
};

TEST_P(StepFenceTest, ARetryAfterADeathBetweenFenceAndMoveIsTakenAndMovesTheListener) {
  ASSERT_TRUE(store_->Step(Request(1, {CompareAndSet("k", "", "1")})).value().applied);
  ASSERT_EQ(Position(), std::optional<int64_t>(1));

  // A process runs phase 2 of the step to 2 and dies before moving the listener.
  StepRequest step = Request(2, {CompareAndSet("k", "1", "2")});
  step.expected_position = 1;
  auto fenced = FenceStep(pool(), step, /*listener_position=*/1);
  ASSERT_TRUE(fenced.ok()) << fenced.status();
  ASSERT_TRUE(fenced->applied);
  EXPECT_EQ(Value("k"), std::optional<std::string>("2"));
  EXPECT_EQ(Position(), std::optional<int64_t>(1));  // Left behind.

  // Its retry: taken (not a mismatch, although the listener is still at 1), nothing applied
  // again, and the listener is moved where the step put it.
  auto retry = store_->Step(step);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->applied);
  EXPECT_TRUE(retry->already_taken);
  EXPECT_FALSE(retry->position_mismatch);
  EXPECT_EQ(retry->position, 2);
  ASSERT_EQ(retry->outcomes.size(), 1u);
  EXPECT_EQ(retry->outcomes[0].previous_value, std::optional<std::string>(V("2")));
  EXPECT_EQ(Value("k"), std::optional<std::string>("2"));
  EXPECT_EQ(Position(), std::optional<int64_t>(2));

  // The consumer carries on from there.
  StepRequest next = Request(3, {CompareAndSet("k", "2", "3")});
  next.expected_position = 2;
  auto result = store_->Step(next);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->applied);
  EXPECT_EQ(Value("k"), std::optional<std::string>("3"));
  EXPECT_EQ(Position(), std::optional<int64_t>(3));
}

// Two steps of one listener race: the second read the listener's position before the first
// moved it. The fence, not the position it read, decides.
TEST_P(StepFenceTest, AStaleListenerPositionDoesNotLetAStepApplyTwice) {
  ASSERT_TRUE(store_->Step(Request(1, {CompareAndSet("k", "", "1")})).value().applied);
  DictionaryOperation set;
  set.key = V("log");
  set.set_new_value = true;
  set.new_value = V("first");
  ASSERT_TRUE(store_->Step(Request(2, {set})).value().applied);
  set.new_value = V("second");
  auto stale = FenceStep(pool(), Request(2, {set}), /*listener_position=*/1);
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->applied);
  EXPECT_TRUE(stale->already_taken);
  EXPECT_EQ(Value("log"), std::optional<std::string>("first"));
}

// Stream keys are ticks, beyond what a Lua number holds exactly: 2^60 and 2^60 + 1 are one
// double, but two keys.
TEST_P(StepFenceTest, KeysBeyondTwoToThe53AreComparedExactly) {
  const int64_t big = int64_t{1} << 60;
  DictionaryOperation set;
  set.key = V("k");
  set.set_new_value = true;
  set.new_value = V("a");
  ASSERT_TRUE(store_->Step(Request(big, {set})).value().applied);
  set.new_value = V("b");
  auto next = store_->Step(Request(big + 1, {set}));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(next->applied);
  EXPECT_EQ(next->position, big + 1);
  auto again = store_->Step(Request(big, {set}));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_taken);
  EXPECT_EQ(again->position, big + 1);
  EXPECT_EQ(Value("k"), std::optional<std::string>("b"));
  // And far below zero.
  StepRequest low = Request(-big - 1, {set});
  low.listener = "low";
  EXPECT_TRUE(store_->Step(low).value().applied);
  low.reached_key = -big;
  EXPECT_TRUE(store_->Step(low).value().applied);
  EXPECT_TRUE(store_->Step(low).value().already_taken);
}

INSTANTIATE_TEST_SUITE_P(Redis, StepFenceTest,
                         ::testing::Values(std::string("redis"), std::string("redis_cluster")),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace perper::storage::redis
