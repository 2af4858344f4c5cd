// SPDX-License-Identifier: MIT
// Values (google.protobuf.Any) as JSON, for printing and for `perper call` arguments, with the
// value table every Perper SDK shares (docs/sdk-cpp.md):
//
//   JSON null <-> the empty Any;  true/false <-> BoolValue;  integers -> Int64Value;
//   other numbers -> DoubleValue;  strings <-> StringValue;  {"@type": ..., ...} <-> that message;
//   other arrays and objects -> google.protobuf.Value.
//   Int32Value, UInt32Value, UInt64Value, FloatValue print as numbers; a type this program does
//   not know prints as {"@type": URL, "bytes": N}.
//
// In JSON output a 64-bit integer whose magnitude exceeds 2^53 is printed as a decimal string
// (JsonInteger): a reader that parses JSON numbers as doubles (JavaScript, jq) would otherwise
// get a different number. Messages follow the protobuf JSON mapping (64-bit fields as strings).
//
// Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include <google/protobuf/any.pb.h>

#include <nlohmann/json.hpp>

namespace perper::cli {

// 2^53: the largest magnitude up to which every integer is exact in a double.
inline constexpr int64_t kMaxExactJsonInteger = int64_t{1} << 53;

// `value` as a JSON number when |value| <= 2^53, else as its decimal string.
nlohmann::json JsonInteger(int64_t value);
nlohmann::json JsonInteger(uint64_t value);

// For JSON output (64-bit integers beyond 2^53 as strings).
nlohmann::json AnyToJson(const google::protobuf::Any& value);

// Compact JSON text for a table cell or a line of text: integers are printed exactly, as numbers.
std::string AnyToText(const google::protobuf::Any& value);

// INVALID_ARGUMENT when an object with "@type" does not parse as that message, or an integer
// does not fit in an int64.
absl::StatusOr<google::protobuf::Any> JsonToAny(const nlohmann::json& value);

}  // namespace perper::cli
