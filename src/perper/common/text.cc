// SPDX-License-Identifier: MIT
#include "perper/common/text.h"

namespace perper {
namespace {

// The largest n <= max such that text[0, n) does not end inside a UTF-8 sequence.
size_t Utf8Prefix(std::string_view text, size_t max) {
  if (max >= text.size()) return text.size();
  size_t n = max;
  // Back up over continuation bytes (10xxxxxx) to the start of the sequence they belong to.
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80 && max - n < 4) --n;
  return n;
}

}  // namespace

std::string ShortId(std::string_view id) {
  constexpr size_t kWhole = 96;
  if (id.size() <= kWhole) return std::string(id);
  std::string out(id.substr(0, Utf8Prefix(id, kQuotedIdPrefixBytes)));
  out += "…(" + std::to_string(id.size()) + " bytes)";
  return out;
}

std::string Quoted(std::string_view name) { return "\"" + ShortId(name) + "\""; }

std::string BoundedText(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::string note = " …[cut: " + std::to_string(text.size()) + " bytes in all]";
  std::string out(text.substr(0, Utf8Prefix(text, max_bytes - note.size())));
  out += note;
  return out;
}

}  // namespace perper
