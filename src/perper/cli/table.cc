// SPDX-License-Identifier: MIT
#include "perper/cli/table.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/numbers.h"

namespace perper::cli {
namespace {

constexpr size_t kMinShrunkWidth = 8;
constexpr char kEllipsis[] = "\u2026";

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Characters (UTF-8 code points) in `text`.
size_t Width(std::string_view text) {
  return static_cast<size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return !IsContinuation(c); }));
}

// The byte offset of character `n` of `text` (its size when it has fewer).
size_t ByteOf(std::string_view text, size_t n) {
  size_t at = 0;
  for (size_t seen = 0; at < text.size(); ++at) {
    if (!IsContinuation(text[at]) && seen++ == n) return at;
  }
  return text.size();
}

}  // namespace

std::string Shorten(std::string_view text, size_t width) {
  const size_t length = Width(text);
  if (length <= width || width == 0) return std::string(text);
  const size_t tail = (width - 1) / 2, head = width - 1 - tail;
  return std::string(text.substr(0, ByteOf(text, head))) + kEllipsis +
         std::string(text.substr(ByteOf(text, length - tail)));
}

std::string Table::Render(size_t max_width, const std::vector<size_t>& shrinkable) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) widths[i] = Width(headers_[i]);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], Width(row[i]));
    }
  }
  if (max_width > 0) {
    auto total = [&] {
      size_t sum = 2 * (widths.size() - 1);
      for (size_t w : widths) sum += w;
      return sum;
    };
    while (total() > max_width) {
      size_t* widest = nullptr;
      for (size_t i : shrinkable) {
        if (i < widths.size() && widths[i] > kMinShrunkWidth &&
            (widest == nullptr || widths[i] > *widest)) {
          widest = &widths[i];
        }
      }
      if (widest == nullptr) break;  // As narrow as it gets.
      --*widest;
    }
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t i = 0; i < headers_.size(); ++i) {
      const std::string cell = Shorten(i < cells.size() ? cells[i] : "", widths[i]);
      text += cell;
      if (i + 1 < headers_.size()) text += std::string(widths[i] - Width(cell) + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
  return out;
}

size_t OutputWidth() {
  winsize size{};
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    return size.ws_col;
  }
  size_t columns = 0;
  const char* env = std::getenv("COLUMNS");
  if (env != nullptr && absl::SimpleAtoi(env, &columns)) return columns;
  return 0;
}

}  // namespace perper::cli
