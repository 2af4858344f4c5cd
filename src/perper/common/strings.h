// SPDX-License-Identifier: MIT
// Our APIs take std::string_view; Debian's Abseil has an absl::string_view of its own, which its
// functions (StrCat, SimpleAtoi, StrSplit) and its containers' heterogeneous lookup take.
// Stateless; thread-safe.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace perper {

// `s` as Abseil's string_view: the same characters, not copied.
inline absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace perper
