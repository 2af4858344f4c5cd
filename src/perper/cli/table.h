// SPDX-License-Identifier: MIT
// A plain-text table: a header row and aligned columns separated by two spaces.
//
//   Table table({"INSTANCE", "AGENT"});
//   table.AddRow({"Run-1", "Worker"});
//   std::fputs(table.Render().c_str(), stdout);
//
// Plain value; no synchronization.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace perper::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  // Rows shorter than the header are padded with empty cells.
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  size_t size() const { return rows_.size(); }
  // The header, then every row; the last column is not padded. Ends with a newline.
  //
  // With `max_width` (0: none), the columns in `shrinkable` (indexes) are narrowed, the widest
  // first but none below 8 characters, until every line fits, and a cell wider than its column
  // keeps its start and its end around an ellipsis ("Run-7771…67e993e907a3"): IDs differ at
  // either end. Widths count characters (UTF-8 code points), not bytes.
  std::string Render(size_t max_width = 0, const std::vector<size_t>& shrinkable = {}) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// The width tables should fit: the terminal's when stdout is one, else $COLUMNS when set; 0
// (no limit) when output goes to a file or a pipe, so that scripts get whole IDs.
size_t OutputWidth();

// `text` cut to `width` characters around an ellipsis, keeping its start and its end.
std::string Shorten(std::string_view text, size_t width);

}  // namespace perper::cli
