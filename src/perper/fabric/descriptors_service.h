// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real service.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/descriptors.grpc.pb.h"

namespace perper::fabric {

class DescriptorsService final : public perper::grpc2::FabricProtobufDescriptors::CallbackService {
 public:
  explicit DescriptorsService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
