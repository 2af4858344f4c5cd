// SPDX-License-Identifier: MIT
#include "perper/fabric/service_context.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
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
bool HasStringsUncached(const Descriptor* type, int depth) {
  if (depth > 8 || !IsProtocolMessage(type)) return false;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    if (field->type() == FieldDescriptor::TYPE_STRING) return true;
    if (field->type() == FieldDescriptor::TYPE_MESSAGE &&
        HasStringsUncached(field->message_type(), depth + 1)) {
      return true;
    }
  }
  return false;
}

// The answer depends on the type alone; each thread keeps its own (lock-free) table.
bool HasStrings(const Descriptor* type) {
  thread_local absl::flat_hash_map<const Descriptor*, bool> known;
  auto [it, inserted] = known.try_emplace(type, false);
  if (inserted) it->second = HasStringsUncached(type, 0);
  return it->second;
}

// The longest value a string field may hold.
size_t LimitOf(const FieldDescriptor* field, const FabricLimits& limits) {
  return IsFreeText(field) ? limits.max_error_bytes : limits.max_id_bytes;
}

// The status for `value`, a string field named `name`, over its limit. The callers put the path
// of enclosing fields in front of `name` only on failure: checking a well-formed request builds
// no strings.
absl::Status OverLimit(const std::string& value, const FieldDescriptor* field,
                       const std::string& name, const FabricLimits& limits) {
  std::string message = name + " is " + std::to_string(value.size()) +
                        " bytes, over the limit of " + std::to_string(LimitOf(field, limits)) +
                        " bytes";
  if (IsFreeText(field)) return absl::ResourceExhaustedError(message);
  return absl::InvalidArgumentError(message + " (" + ShortId(value) + ")");
}

// `status`, a failure inside field `field` (element `index` of a repeated one, when >= 0), with
// that field's name in front of the path its message starts with.
absl::Status Within(const absl::Status& status, const FieldDescriptor* field, int index) {
  std::string path = field->name();
  if (index >= 0) path += "[" + std::to_string(index) + "]";
  return absl::Status(status.code(), path + "." + std::string(status.message()));
}

absl::Status CheckMessage(const Message& message, const FabricLimits& limits) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const bool is_string = field->type() == FieldDescriptor::TYPE_STRING;
    if (!is_string &&
        !(field->type() == FieldDescriptor::TYPE_MESSAGE && HasStrings(field->message_type()))) {
      continue;
    }
    if (!field->is_repeated()) {
      if (is_string) {
        const std::string& value = reflection->GetString(message, field);
        if (value.size() > LimitOf(field, limits)) {
          return OverLimit(value, field, field->name(), limits);
        }
      } else if (absl::Status status = CheckMessage(reflection->GetMessage(message, field), limits);
                 !status.ok()) {
        return Within(status, field, -1);
      }
      continue;
    }
    const int size = reflection->FieldSize(message, field);
    for (int i = 0; i < size; ++i) {
      if (is_string) {
        const std::string& value = reflection->GetRepeatedString(message, field, i);
        if (value.size() > LimitOf(field, limits)) {
          return OverLimit(value, field, field->name() + "[" + std::to_string(i) + "]", limits);
        }
      } else if (absl::Status status =
                     CheckMessage(reflection->GetRepeatedMessage(message, field, i), limits);
                 !status.ok()) {
        return Within(status, field, i);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRequestStrings(const Message& request, const FabricLimits& limits) {
  return CheckMessage(request, limits);
}

}  // namespace perper::fabric
