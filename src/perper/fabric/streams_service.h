// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real service.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace perper::fabric {

class StreamsService final : public perper::grpc2::FabricStreams::CallbackService {
 public:
  explicit StreamsService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
