// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real service.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/introspection.grpc.pb.h"

namespace perper::fabric {

class IntrospectionService final : public perper::grpc2::FabricIntrospection::CallbackService {
 public:
  explicit IntrospectionService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
