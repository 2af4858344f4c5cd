// SPDX-License-Identifier: MIT
// A plain-text table: a header row and aligned columns separated by two spaces.
//
//   Table table({"INSTANCE", "AGENT"});
//   table.AddRow({"Run-1", "Worker"});
//   std::fputs(table.Render().c_str(), stdout);
//
// Plain value; no synchronization.
#pragma once

#include <string>
#include <vector>

namespace perper::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  // Rows shorter than the header are padded with empty cells.
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  size_t size() const { return rows_.size(); }
  // The header, then every row; the last column is not padded. Ends with a newline.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace perper::cli
