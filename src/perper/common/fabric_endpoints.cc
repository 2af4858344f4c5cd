// SPDX-License-Identifier: MIT
#include "perper/common/fabric_endpoints.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include "perper/common/strings.h"

namespace perper {

absl::StatusOr<std::vector<std::string>> ParseFabricEndpoints(std::string_view value,
                                                              std::string_view source) {
  std::vector<std::string> addresses;
  for (absl::string_view entry : absl::StrSplit(AbslView(value), ',')) {
    absl::string_view address = absl::StripAsciiWhitespace(entry);
    if (absl::StartsWith(address, "https://")) {
      return absl::InvalidArgumentError(absl::StrCat(AbslView(source), " '", AbslView(value),
                                                     "': ", address, ": TLS is not supported yet"));
    }
    absl::ConsumePrefix(&address, "http://");
    if (address.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AbslView(source), " '", AbslView(value), "' has an empty address"));
    }
    addresses.emplace_back(address);
  }
  return addresses;
}

}  // namespace perper
