// SPDX-License-Identifier: MIT
#include "perper/agent/value.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "perper/common/strings.h"

namespace perper::value_internal {

std::string TypeNameOf(const google::protobuf::Any& any) {
  if (IsNull(any)) {
    return "null";
  }
  const std::string& url = any.type_url();
  auto slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

absl::Status Mismatch(const google::protobuf::Any& any, std::string_view cpp_type) {
  return absl::InvalidArgumentError(
      absl::StrCat("cannot read ", TypeNameOf(any), " as ", std::string(cpp_type)));
}

bool IsNull(const google::protobuf::Any& any) {
  if (any.type_url().empty()) {
    return true;
  }
  google::protobuf::Value value;
  return any.Is<google::protobuf::Value>() && any.UnpackTo(&value) &&
         value.kind_case() == google::protobuf::Value::kNullValue;
}

namespace {

// The largest magnitude a double holds every integer up to: 2^53.
constexpr int64_t kExactLimit = int64_t{1} << 53;

std::string Where(std::string_view path) {
  return path.empty() ? std::string() : absl::StrCat(" at ", AbslView(path));
}

absl::Status Inexact(std::string_view number, std::string_view path) {
  return absl::InvalidArgumentError(absl::StrCat(
      "integer ", AbslView(number), Where(path),
      " is beyond 2^53: a google.protobuf.Value number (a double) cannot hold it exactly; "
      "send it as a string or as a top-level int64_t"));
}

std::string_view KindName(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNullValue:
      return "null";
    case google::protobuf::Value::kNumberValue:
      return "a number";
    case google::protobuf::Value::kStringValue:
      return "a string";
    case google::protobuf::Value::kBoolValue:
      return "a bool";
    case google::protobuf::Value::kStructValue:
      return "a struct";
    case google::protobuf::Value::kListValue:
      return "a list";
    default:
      return "an empty google.protobuf.Value";
  }
}

}  // namespace

std::string KeyPath(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(AbslView(parent), ".", AbslView(key));
}

std::string IndexPath(std::string_view parent, size_t index) {
  return absl::StrCat(AbslView(parent), "[", index, "]");
}

absl::Status SetInteger(int64_t n, std::string_view path, google::protobuf::Value* out) {
  if (n > kExactLimit || n < -kExactLimit) {
    return Inexact(std::to_string(n), path);
  }
  out->set_number_value(static_cast<double>(n));
  return absl::OkStatus();
}

absl::Status SetUnsigned(uint64_t n, std::string_view path, google::protobuf::Value* out) {
  if (n > static_cast<uint64_t>(kExactLimit)) {
    return Inexact(std::to_string(n), path);
  }
  out->set_number_value(static_cast<double>(n));
  return absl::OkStatus();
}

absl::StatusOr<double> IntegralNumber(const google::protobuf::Value& value, std::string_view path,
                                      double min, double end, std::string_view cpp_type) {
  if (value.kind_case() != google::protobuf::Value::kNumberValue) {
    return KindMismatch(value, path, cpp_type);
  }
  double number = value.number_value();
  if (!std::isfinite(number) || std::trunc(number) != number) {
    return absl::InvalidArgumentError(absl::StrCat("number ", number, Where(path),
                                                   " is not an integer: cannot read it as ",
                                                   AbslView(cpp_type), " (read it as double)"));
  }
  if (number < min || number >= end) {
    return absl::OutOfRangeError(
        absl::StrCat("number ", number, Where(path), " does not fit the requested integer type"));
  }
  return number;
}

absl::Status KindMismatch(const google::protobuf::Value& value, std::string_view path,
                          std::string_view cpp_type) {
  return absl::InvalidArgumentError(absl::StrCat("cannot read ", AbslView(KindName(value)),
                                                 Where(path), " as ", AbslView(cpp_type)));
}

google::protobuf::Any PackDeterministic(const google::protobuf::Message& message) {
  google::protobuf::Any any;
  any.set_type_url(absl::StrCat("type.googleapis.com/", message.GetDescriptor()->full_name()));
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  any.set_value(std::move(bytes));
  return any;
}

void PackFailed(const absl::Status& status) {
  std::fprintf(stderr,
               "perper::ToAny: %s (perper::TryToAny and the SDK's operations return this error "
               "instead)\n",
               std::string(status.message()).c_str());
  std::abort();
}

}  // namespace perper::value_internal
