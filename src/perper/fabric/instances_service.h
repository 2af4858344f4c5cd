// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real service.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/instances.grpc.pb.h"

namespace perper::fabric {

class InstancesService final : public perper::grpc2::FabricInstances::CallbackService {
 public:
  explicit InstancesService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
