// SPDX-License-Identifier: MIT
// ShortId, Quoted and BoundedText: what a status message may quote of client-supplied text.
#include "perper/common/text.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace perper {
namespace {

TEST(ShortIdTest, KeepsShortIdsWhole) {
  EXPECT_EQ(ShortId(""), "");
  EXPECT_EQ(ShortId("Run-1234"), "Run-1234");
  EXPECT_EQ(ShortId(std::string(96, 'a')), std::string(96, 'a'));
}

TEST(ShortIdTest, QuotesTheStartOfLongIdsWithTheirLength) {
  EXPECT_EQ(ShortId(std::string(97, 'a')), std::string(64, 'a') + "…(97 bytes)");
  EXPECT_EQ(ShortId(std::string(8000, 'b')), std::string(64, 'b') + "…(8000 bytes)");
}

TEST(ShortIdTest, NeverSplitsAUtf8Sequence) {
  // 63 ASCII bytes, then a 2-byte "é" straddling the 64-byte cut.
  std::string id = std::string(63, 'a') + "é" + std::string(100, 'z');
  EXPECT_EQ(ShortId(id), std::string(63, 'a') + "…(" + std::to_string(id.size()) + " bytes)");
}

TEST(QuotedTest, QuotesTheShortId) {
  EXPECT_EQ(Quoted("orders"), "\"orders\"");
  EXPECT_EQ(Quoted(""), "\"\"");
  EXPECT_EQ(Quoted(std::string(97, 'a')), "\"" + std::string(64, 'a') + "…(97 bytes)\"");
}

TEST(BoundedTextTest, KeepsTextThatFits) {
  EXPECT_EQ(BoundedText("short", 64), "short");
  EXPECT_EQ(BoundedText(std::string(1024, 'x'), 1024), std::string(1024, 'x'));
}

TEST(BoundedTextTest, CutsLongTextToTheBoundWithANote) {
  std::string cut = BoundedText(std::string(100000, 'x'), 1024);
  EXPECT_LE(cut.size(), 1024u);
  EXPECT_THAT(cut, ::testing::EndsWith(" …[cut: 100000 bytes in all]"));
  EXPECT_THAT(cut, ::testing::StartsWith(std::string(900, 'x')));
}

TEST(BoundedTextTest, NeverSplitsAUtf8Sequence) {
  std::string text;
  while (text.size() < 5000) text += "€";  // 3 bytes each.
  for (size_t bound : {64u, 65u, 66u, 1024u}) {
    std::string cut = BoundedText(text, bound);
    EXPECT_LE(cut.size(), bound);
    std::string kept = cut.substr(0, cut.find(" …[cut:"));
    EXPECT_EQ(kept.size() % 3, 0u) << bound;
    EXPECT_EQ(kept, text.substr(0, kept.size())) << bound;
  }
}

}  // namespace
}  // namespace perper
