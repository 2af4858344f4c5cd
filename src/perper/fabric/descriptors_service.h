// SPDX-License-Identifier: MIT
// FabricProtobufDescriptors: a registry of protobuf type descriptions (google.protobuf.Type or
// Enum) by type URL, kept by the Store's DescriptorStore. Register replaces what a URL had; Get of
// an unknown URL answers an empty response, as upstream did (docs/protocol/descriptors.md).
//
// Thread safety: stateless beyond its context; calls may run concurrently on any gRPC thread.
#pragma once

#include <google/protobuf/empty.pb.h>

#include "perper/fabric/service_context.h"
#include "perper/grpc2/descriptors.grpc.pb.h"

namespace perper::fabric {

class DescriptorsService final : public grpc2::FabricProtobufDescriptors::CallbackService {
 public:
  explicit DescriptorsService(const ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* call,
                                     const grpc2::FabricProtobufDescriptorsRegisterRequest* request,
                                     google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* call,
                                const grpc2::FabricProtobufDescriptorsGetRequest* request,
                                grpc2::FabricProtobufDescriptorsGetResponse* response) override;

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
