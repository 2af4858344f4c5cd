// SPDX-License-Identifier: MIT
// NameTable: one index per distinct name, counted; a released index is handed out again.
#include "perper/fabric/name_table.h"

#include <string>

#include <gtest/gtest.h>

namespace perper::fabric {
namespace {

TEST(NameTableTest, TheSameNameGetsTheSameIndex) {
  NameTable names;
  uint32_t a = names.Intern("instance-1");
  uint32_t b = names.Intern("Run");
  EXPECT_NE(a, b);
  EXPECT_EQ(names.Intern("instance-1"), a);
  EXPECT_EQ(names.Get(a), "instance-1");
  EXPECT_EQ(names.Get(b), "Run");
  EXPECT_EQ(names.size(), 2u);
}

TEST(NameTableTest, ANameIsKeptUntilItsLastReferenceIsReleased) {
  NameTable names;
  uint32_t a = names.Intern("instance-1");
  names.Intern("instance-1");
  names.Release(a);
  EXPECT_EQ(names.size(), 1u);
  EXPECT_EQ(names.Get(a), "instance-1");
  names.Release(a);
  EXPECT_EQ(names.size(), 0u);
}

TEST(NameTableTest, AReleasedIndexIsReusedForTheNextNewName) {
  NameTable names;
  uint32_t a = names.Intern("instance-1");
  uint32_t b = names.Intern("instance-2");
  names.Release(a);
  uint32_t c = names.Intern("instance-3");
  EXPECT_EQ(c, a);
  EXPECT_EQ(names.Get(c), "instance-3");
  EXPECT_EQ(names.Get(b), "instance-2");
  // The released name is new again: it gets a fresh index, not the one it had.
  uint32_t d = names.Intern("instance-1");
  EXPECT_NE(d, c);
  EXPECT_NE(d, b);
  EXPECT_EQ(names.Get(d), "instance-1");
  EXPECT_EQ(names.size(), 3u);
}

}  // namespace
}  // namespace perper::fabric
