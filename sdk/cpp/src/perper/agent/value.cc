// SPDX-License-Identifier: MIT
#include "perper/agent/value.h"

#include <string>

#include "absl/strings/str_cat.h"

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

}  // namespace perper::value_internal
