// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real service.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::fabric {

class ExecutionsService final : public perper::grpc2::FabricExecutions::CallbackService {
 public:
  explicit ExecutionsService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
