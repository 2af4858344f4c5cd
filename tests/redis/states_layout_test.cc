// SPDX-License-Identifier: MIT
// The redis backend's states (perper/storage/redis/redis_states.h) where Redis matters: where the
// keys live, names that need escaping, the global listings, long splices, and two stores on one
// deployment acting as two Fabric processes.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "perper/common/values.h"
#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_store.h"
#include "perper/storage/store.h"
#include "perper/storage/store_factory.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/redis_backends.h"

namespace perper::storage::redis {
namespace {

std::string V(int64_t v) { return SerializeAny(perper::testing::Int64Value(v)); }

DictionaryOperation Set(std::string key, std::string value) {
  DictionaryOperation op;
  op.key = std::move(key);
  op.set_new_value = true;
  op.new_value = std::move(value);
  return op;
}

ListOperation Insert(ListOperation::Location location, int64_t position,
                     std::vector<std::string> values) {
  ListOperation op;
  op.location = location;
  op.position = position;
  op.insert_values = std::move(values);
  return op;
}

class StatesLayoutTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(perper::testing::ResetRedisBackend(GetParam()).ok());
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<Store> Open() {
    auto store = OpenStore(*perper::testing::RedisBackendOptions(GetParam()));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  StateStore& states() { return store_->states(); }

  // A raw command on the node of `key`.
  RedisReply Raw(std::string_view key, const std::vector<std::string_view>& argv) {
    auto reply = static_cast<RedisStore&>(*store_).pool().Run(key, argv);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? *std::move(reply) : RedisReply{};
  }

  std::vector<std::string> Names(std::string_view prefix) {
    std::vector<std::string> out;
    auto listed = states().ListStates(prefix, 100);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (!listed.ok()) return out;
    for (const StateSummary& state : *listed) {
      out.push_back((state.kind == StateSummary::Kind::kList ? "L " : "D ") + state.name + " " +
                    std::to_string(state.count));
    }
    return out;
  }

  std::unique_ptr<Store> store_;
};

// An instance's state dictionary and list ("<instance>-") share the slot of its executions, so
// one script can touch both.
TEST_P(StatesLayoutTest, AnInstancesStateLivesUnderTheInstanceTag) {
  ASSERT_TRUE(states().OperateDictionary("inst-", Set(V(1), V(2))).ok());
  ASSERT_TRUE(
      states().OperateList("inst-", Insert(ListOperation::Location::kAtBack, 0, {V(3)})).ok());
  ASSERT_TRUE(states().OperateDictionary("plain", Set(V(1), V(2))).ok());
  EXPECT_EQ(Raw("{i:inst}:d", {"HLEN", "{i:inst}:d"}).integer, 1);
  EXPECT_EQ(Raw("{i:inst}:Li", {"LLEN", "{i:inst}:Li"}).integer, 1);
  EXPECT_EQ(Raw("{d:plain}:d", {"HLEN", "{d:plain}:d"}).integer, 1);
}

// '}' and '%' are escaped in a tag, so names that differ stay apart; names and keys are bytes.
TEST_P(StatesLayoutTest, NamesAndKeysAreBytesAndNeverCollide) {
  const std::vector<std::string> names = {"a}b", "a%7Db", "a%257Db", std::string("n\0x", 3),
                                          "{d:a}b"};
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_TRUE(states().OperateDictionary(names[i], Set(std::string("k\0\xff", 3), V(i))).ok());
  }
  for (size_t i = 0; i < names.size(); ++i) {
    auto entries = states().ListDictionary(names[i]);
    ASSERT_TRUE(entries.ok()) << entries.status();
    ASSERT_EQ(entries->size(), 1u) << i;
    EXPECT_EQ((*entries)[0].first, std::string("k\0\xff", 3));
    EXPECT_EQ((*entries)[0].second, V(i)) << i;
  }
  EXPECT_EQ(Names("a").size(), 3u);
}

// A name in the global listing whose object is gone (a process died between the object's script
// and the listing's write) is not listed.
TEST_P(StatesLayoutTest, AListedNameWithoutItsObjectIsNotListed) {
  ASSERT_TRUE(states().CreateDictionary("here").ok());
  Raw("{perper}:dicts", {"ZADD", "{perper}:dicts", "0", "ghost"});
  Raw("{perper}:lists", {"ZADD", "{perper}:lists", "0", "ghost"});
  EXPECT_EQ(Names(""), (std::vector<std::string>{"D here 0"}));
}

// A splice far longer than Lua's unpack limit (about 8,000 values), in the middle of a list.
TEST_P(StatesLayoutTest, LongSplicesInTheMiddle) {
  using Location = ListOperation::Location;
  ASSERT_TRUE(states().OperateList("l", Insert(Location::kAtBack, 0, {V(-1), V(-2), V(-3)})).ok());
  std::vector<std::string> many;
  for (int64_t i = 0; i < 20000; ++i) many.push_back(V(i));
  ASSERT_TRUE(states().OperateList("l", Insert(Location::kIndex, 1, many)).ok());
  ASSERT_TRUE(states().OperateList("l", Insert(Location::kIndexBackwards, 1, many)).ok());
  auto entries = states().ListList("l");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 40003u);
  EXPECT_EQ((*entries)[0].value, V(-1));
  EXPECT_EQ((*entries)[0].raw_index, -20000);  // The backward insert moved the front.
  EXPECT_EQ((*entries)[1].value, V(0));
  EXPECT_EQ((*entries)[20000].value, V(19999));
  EXPECT_EQ((*entries)[20001].value, V(-2));
  EXPECT_EQ((*entries)[20002].value, V(0));
  EXPECT_EQ((*entries)[40002].value, V(-3));
  EXPECT_EQ((*entries)[40002].raw_index, 20002);
}

// Two stores on one deployment are two Fabric processes: each sees the other's states at once.
TEST_P(StatesLayoutTest, TwoStoresShareTheirStates) {
  std::unique_ptr<Store> other = Open();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(states().OperateDictionary("shared", Set(V(1), V(10))).ok());
  ASSERT_TRUE(other->states()
                  .OperateList("shared", Insert(ListOperation::Location::kAtFront, 0, {V(5)}))
                  .ok());
  auto entries = other->states().ListDictionary("shared");
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].second, V(10));
  auto located = states().LocateInList("shared", V(5));
  ASSERT_TRUE(located.ok());
  ASSERT_TRUE(located->has_value());
  EXPECT_EQ((*located)->raw_index, -1);
  ASSERT_TRUE(other->states().DeleteDictionary("shared", /*keep_cache=*/false).ok());
  EXPECT_EQ(states().CountDictionary("shared").value(), 0u);
  EXPECT_EQ(Names("shared"), (std::vector<std::string>{"L shared 1"}));
  ASSERT_TRUE(other->descriptors().RegisterDescriptor("x/T", "bytes").ok());
  EXPECT_EQ(store_->descriptors().GetDescriptor("x/T").value(),
            std::optional<std::string>("bytes"));
}

INSTANTIATE_TEST_SUITE_P(Redis, StatesLayoutTest,
                         ::testing::Values(std::string("redis"), std::string("redis_cluster")),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace perper::storage::redis
