// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real services.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/states.grpc.pb.h"

namespace perper::fabric {

class StatesDictionaryService final : public perper::grpc2::FabricStatesDictionary::CallbackService {
 public:
  explicit StatesDictionaryService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

class StatesListService final : public perper::grpc2::FabricStatesList::CallbackService {
 public:
  explicit StatesListService(const ServiceContext& context) : context_(context) {}

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
