// SPDX-License-Identifier: MIT
// Parsing of a Fabric endpoint list (PERPER_FABRIC_ENDPOINT, RunOptions::fabric_endpoint).
// Stateless; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace perper::internal {

// The addresses of a Fabric endpoint list ("a:1, http://b:2"): entries split at commas, spaces
// around them and an "http://" prefix removed. Empty entries and "https://" (no TLS yet) are
// errors naming `source` (the variable or option) and the value.
absl::StatusOr<std::vector<std::string>> ParseFabricEndpoints(absl::string_view value,
                                                              absl::string_view source);

}  // namespace perper::internal
