// SPDX-License-Identifier: MIT
#include "perper/cli/values.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wrappers.pb.h>

namespace perper::cli {
namespace {

namespace pb = google::protobuf;

std::string TypeName(const pb::Any& value) {
  const std::string& url = value.type_url();
  size_t slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

nlohmann::json Unknown(const pb::Any& value) {
  return {{"@type", value.type_url()}, {"bytes", value.value().size()}};
}

nlohmann::json ToJson(const pb::Any& value, bool exact_integers) {
  auto integer = [exact_integers](auto v) -> nlohmann::json {
    return exact_integers ? nlohmann::json(v) : JsonInteger(v);
  };
  if (value.type_url().empty()) return nullptr;
  std::string type = TypeName(value);
  if (type == "google.protobuf.StringValue") {
    pb::StringValue v;
    if (value.UnpackTo(&v)) return v.value();
  } else if (type == "google.protobuf.BoolValue") {
    pb::BoolValue v;
    if (value.UnpackTo(&v)) return v.value();
  } else if (type == "google.protobuf.Int32Value") {
    pb::Int32Value v;
    if (value.UnpackTo(&v)) return v.value();
  } else if (type == "google.protobuf.Int64Value") {
    pb::Int64Value v;
    if (value.UnpackTo(&v)) return integer(static_cast<int64_t>(v.value()));
  } else if (type == "google.protobuf.UInt32Value") {
    pb::UInt32Value v;
    if (value.UnpackTo(&v)) return v.value();
  } else if (type == "google.protobuf.UInt64Value") {
    pb::UInt64Value v;
    if (value.UnpackTo(&v)) return integer(static_cast<uint64_t>(v.value()));
  } else if (type == "google.protobuf.FloatValue") {
    pb::FloatValue v;
    if (value.UnpackTo(&v)) return v.value();
  } else if (type == "google.protobuf.DoubleValue") {
    pb::DoubleValue v;
    if (value.UnpackTo(&v)) return v.value();
  }
  const pb::Descriptor* descriptor =
      pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (descriptor == nullptr) return Unknown(value);
  std::unique_ptr<pb::Message> message(
      pb::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
  if (!message->ParseFromString(value.value())) return Unknown(value);
  std::string text;
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!pb::util::MessageToJsonString(*message, &text, options).ok()) return Unknown(value);
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Unknown(value);
  if (type == "google.protobuf.Value" || type == "google.protobuf.Struct" ||
      type == "google.protobuf.ListValue") {
    return json;
  }
  if (!json.is_object()) json = {{"value", json}};
  json["@type"] = value.type_url();
  return json;
}

}  // namespace

nlohmann::json JsonInteger(int64_t value) {
  if (value > kMaxExactJsonInteger || value < -kMaxExactJsonInteger) return std::to_string(value);
  return value;
}

nlohmann::json JsonInteger(uint64_t value) {
  if (value > static_cast<uint64_t>(kMaxExactJsonInteger)) return std::to_string(value);
  return value;
}

nlohmann::json AnyToJson(const pb::Any& value) { return ToJson(value, /*exact_integers=*/false); }

std::string AnyToText(const pb::Any& value) {
  return ToJson(value, /*exact_integers=*/true).dump();
}

absl::StatusOr<pb::Any> JsonToAny(const nlohmann::json& value) {
  pb::Any any;
  if (value.is_null()) return any;
  if (value.is_boolean()) {
    pb::BoolValue v;
    v.set_value(value.get<bool>());
    any.PackFrom(v);
  } else if (value.is_number_unsigned() &&
             value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat(value.dump(), " does not fit in a 64-bit signed integer"));
  } else if (value.is_number_integer()) {
    pb::Int64Value v;
    v.set_value(value.get<int64_t>());
    any.PackFrom(v);
  } else if (value.is_number()) {
    pb::DoubleValue v;
    v.set_value(value.get<double>());
    any.PackFrom(v);
  } else if (value.is_string()) {
    pb::StringValue v;
    v.set_value(value.get<std::string>());
    any.PackFrom(v);
  } else if (value.is_object() && value.contains("@type")) {
    auto status = pb::util::JsonStringToMessage(value.dump(), &any);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", value.dump(), ": ", std::string(status.message())));
    }
  } else {
    pb::Value v;
    auto status = pb::util::JsonStringToMessage(value.dump(), &v);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", value.dump(), ": ", std::string(status.message())));
    }
    any.PackFrom(v);
  }
  return any;
}

}  // namespace perper::cli
