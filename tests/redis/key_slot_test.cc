// SPDX-License-Identifier: MIT
// Key slots against the vectors of the Redis Cluster specification and known CLUSTER KEYSLOT
// answers (the cluster test also compares with a live server).
#include "perper/storage/redis/key_slot.h"

#include <string>

#include <gtest/gtest.h>

namespace perper::storage::redis {
namespace {

TEST(KeySlotTest, Crc16MatchesTheSpecificationVector) {
  EXPECT_EQ(Crc16("123456789"), 0x31C3);
  EXPECT_EQ(Crc16(""), 0);
}

TEST(KeySlotTest, KnownSlots) {
  // Answers of CLUSTER KEYSLOT on redis-server 7.0.
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("bar"), 5061);
  EXPECT_EQ(KeySlot("hello"), 866);
  EXPECT_EQ(KeySlot("123456789"), 0x31C3 % 16384);
  EXPECT_EQ(KeySlot(""), 0);
}

TEST(KeySlotTest, HashTagUsesTheFirstBracedContent) {
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("{user1000}.followers"), KeySlot("{user1000}.following"));
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));
  EXPECT_EQ(KeySlot("foo{bar}baz{"), KeySlot("bar"));
}

TEST(KeySlotTest, EmptyOrUnclosedTagHashesTheWholeKey) {
  EXPECT_EQ(KeySlot("foo{}{bar}"), Crc16("foo{}{bar}") % 16384);
  EXPECT_EQ(KeySlot("foo{bar"), Crc16("foo{bar") % 16384);
  EXPECT_EQ(KeySlot("}foo{"), Crc16("}foo{") % 16384);
}

TEST(KeySlotTest, BinaryKeys) {
  std::string key("a\0b{\0}", 6);
  EXPECT_EQ(KeySlot(key), Crc16(std::string_view("\0", 1)) % 16384);
  for (int i = 0; i < 1000; ++i) {
    int slot = KeySlot(std::to_string(i));
    EXPECT_GE(slot, 0);
    EXPECT_LT(slot, kSlotCount);
  }
}

}  // namespace
}  // namespace perper::storage::redis
