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
// Stateless functions; thread-safe.
#pragma once

#include <google/protobuf/any.pb.h>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace perper::cli {

nlohmann::json AnyToJson(const google::protobuf::Any& value);

// Compact JSON text of AnyToJson.
std::string AnyToText(const google::protobuf::Any& value);

// INVALID_ARGUMENT when an object with "@type" does not parse as that message.
absl::StatusOr<google::protobuf::Any> JsonToAny(const nlohmann::json& value);

}  // namespace perper::cli
