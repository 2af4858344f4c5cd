// SPDX-License-Identifier: MIT
#include "perper/common/values.h"

#include <chrono>

#include <google/protobuf/struct.pb.h>

namespace perper {
namespace {
constexpr std::string_view kValueTypeUrlSuffix = "/google.protobuf.Value";
}  // namespace

bool IsNullValue(std::string_view any_bytes) {
  if (any_bytes.empty()) return true;
  google::protobuf::Any any;
  if (!any.ParseFromArray(any_bytes.data(), static_cast<int>(any_bytes.size()))) return false;
  if (any.type_url().empty()) return true;
  const std::string& url = any.type_url();
  if (url.size() >= kValueTypeUrlSuffix.size() &&
      std::string_view(url).substr(url.size() - kValueTypeUrlSuffix.size()) ==
          kValueTypeUrlSuffix) {
    google::protobuf::Value value;
    return value.ParseFromString(any.value()) &&
           value.kind_case() == google::protobuf::Value::kNullValue;
  }
  return false;
}

std::string SerializeAny(const google::protobuf::Any& any) {
  if (any.type_url().empty() && any.value().empty()) return {};
  std::string bytes;
  any.SerializeToString(&bytes);
  return bytes;
}

google::protobuf::Any ParseAny(std::string_view bytes) {
  google::protobuf::Any any;
  if (!bytes.empty()) any.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  return any;
}

int64_t NowTicks() {
  auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count() / 100;
}

}  // namespace perper
