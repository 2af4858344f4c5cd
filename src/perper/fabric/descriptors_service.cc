// SPDX-License-Identifier: MIT
#include "perper/fabric/descriptors_service.h"

#include <optional>
#include <string>

#include "absl/status/status.h"

#include "perper/common/grpc_status.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {

grpc::ServerUnaryReactor* DescriptorsService::Register(
    grpc::CallbackServerContext* call,
    const grpc2::FabricProtobufDescriptorsRegisterRequest* request, google::protobuf::Empty*) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  using Request = grpc2::FabricProtobufDescriptorsRegisterRequest;
  if (absl::Status s = RequireNonEmpty(request->type_url(), "type_url"); !s.ok()) {
    return FinishUnary(call, s);
  }
  if (request->descriptor_case() == Request::DESCRIPTOR_NOT_SET) {
    return FinishUnary(call, absl::InvalidArgumentError("descriptor (type or enum) must be set for "
                                                        "type_url \"" +
                                                        request->type_url() + "\""));
  }
  size_t size = request->ByteSizeLong();
  if (size > context_.limits.max_value_bytes) {
    return FinishUnary(
        call, absl::ResourceExhaustedError(
                  "descriptor of type_url \"" + request->type_url() + "\" is " +
                  std::to_string(size) + " bytes, over the limit of " +
                  std::to_string(context_.limits.max_value_bytes) + " bytes (--max-value-size)"));
  }
  // The whole request is stored; Get parses it back and answers its descriptor, so whatever the
  // client sent (unknown fields included) is what a reader gets.
  return AnswerWrite(context_, call, [store = context_.store, request]() {
    return store->descriptors().RegisterDescriptor(request->type_url(),
                                                   request->SerializeAsString());
  });
}

grpc::ServerUnaryReactor* DescriptorsService::Get(
    grpc::CallbackServerContext* call, const grpc2::FabricProtobufDescriptorsGetRequest* request,
    grpc2::FabricProtobufDescriptorsGetResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  using Stored = grpc2::FabricProtobufDescriptorsRegisterRequest;
  if (absl::Status s = RequireNonEmpty(request->type_url(), "type_url"); !s.ok()) {
    return FinishUnary(call, s);
  }
  absl::StatusOr<std::optional<std::string>> read =
      context_.store->descriptors().GetDescriptor(request->type_url());
  if (!read.ok()) return FinishUnary(call, read.status());
  std::optional<std::string>& bytes = *read;
  // Unknown type URL: an empty response (upstream compatible), not NOT_FOUND.
  if (!bytes.has_value()) return FinishUnary(call, absl::OkStatus());
  Stored stored;
  if (!stored.ParseFromString(*bytes)) {
    return FinishUnary(call, absl::DataLossError("stored descriptor of type_url \"" +
                                                 request->type_url() + "\" cannot be parsed"));
  }
  switch (stored.descriptor_case()) {
    case Stored::kType:
      response->mutable_type()->Swap(stored.mutable_type());
      break;
    case Stored::kEnum:
      response->mutable_enum_()->Swap(stored.mutable_enum_());
      break;
    case Stored::DESCRIPTOR_NOT_SET:
      break;
  }
  return FinishUnary(call, absl::OkStatus());
}

}  // namespace perper::fabric
