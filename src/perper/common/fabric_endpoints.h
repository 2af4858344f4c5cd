// SPDX-License-Identifier: MIT
// A Fabric endpoint list ("a:1, http://b:2") as the SDK (PERPER_FABRIC_ENDPOINT,
// RunOptions::fabric_endpoint), the CLI (--fabric) and `perper up` read it: one rule, so that a
// value one of them accepts means the same to the others (and to the Python and .NET SDKs).
// Stateless; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace perper {

// The addresses of a Fabric endpoint list: entries split at commas, spaces around them and an
// "http://" prefix removed; each is a host:port as gRPC dials it. Empty entries and "https://"
// (no TLS yet) are InvalidArgument errors naming `source` (the variable or option) and `value`.
absl::StatusOr<std::vector<std::string>> ParseFabricEndpoints(std::string_view value,
                                                              std::string_view source);

}  // namespace perper
