// SPDX-License-Identifier: MIT
#include "perper/fabric/service_context.h"

#include <string>

#include <google/protobuf/descriptor.h>

#include "perper/common/text.h"

namespace perper::fabric {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Messages of the protocol's own packages are walked; google.protobuf.* (Any values, Empty,
// descriptors) are not.
bool IsProtocolMessage(const Descriptor* type) {
  const std::string& package = type->file()->package();
  return package.rfind("perper.grpc2", 0) == 0;
}

bool IsFreeText(const FieldDescriptor* field) {
  return field->full_name() == "perper.grpc2.model.PerperError.message" || field->name() == "sql";
}

// Whether a message of `type` can hold a string to check, so that repeated fields of, say,
// stream items (a key and an Any) are not visited element by element.
bool HasStrings(const Descriptor* type, int depth = 0) {
  if (depth > 8 || !IsProtocolMessage(type)) return false;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    if (field->type() == FieldDescriptor::TYPE_STRING) return true;
    if (field->type() == FieldDescriptor::TYPE_MESSAGE &&
        HasStrings(field->message_type(), depth + 1)) {
      return true;
    }
  }
  return false;
}

absl::Status CheckString(const std::string& value, const FieldDescriptor* field,
                         const std::string& path, const FabricLimits& limits) {
  if (IsFreeText(field)) {
    if (value.size() <= limits.max_error_bytes) return absl::OkStatus();
    return absl::ResourceExhaustedError(path + " is " + std::to_string(value.size()) +
                                        " bytes, over the limit of " +
                                        std::to_string(limits.max_error_bytes) + " bytes");
  }
  if (value.size() <= limits.max_id_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      path + " is " + std::to_string(value.size()) + " bytes, over the limit of " +
      std::to_string(limits.max_id_bytes) + " bytes (" + ShortId(value) + ")");
}

absl::Status CheckMessage(const Message& message, const std::string& prefix,
                          const FabricLimits& limits) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const bool is_string = field->type() == FieldDescriptor::TYPE_STRING;
    const bool is_walked =
        field->type() == FieldDescriptor::TYPE_MESSAGE && HasStrings(field->message_type());
    if (!is_string && !is_walked) continue;
    const std::string path = prefix + field->name();
    if (!field->is_repeated()) {
      absl::Status status =
          is_string ? CheckString(reflection->GetString(message, field), field, path, limits)
                    : CheckMessage(reflection->GetMessage(message, field), path + ".", limits);
      if (!status.ok()) return status;
      continue;
    }
    const int size = reflection->FieldSize(message, field);
    for (int i = 0; i < size; ++i) {
      const std::string element = path + "[" + std::to_string(i) + "]";
      absl::Status status = is_string
                                ? CheckString(reflection->GetRepeatedString(message, field, i),
                                              field, element, limits)
                                : CheckMessage(reflection->GetRepeatedMessage(message, field, i),
                                               element + ".", limits);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRequestStrings(const Message& request, const FabricLimits& limits) {
  return CheckMessage(request, "", limits);
}

}  // namespace perper::fabric
