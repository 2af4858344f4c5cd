// SPDX-License-Identifier: MIT
// Calculator.Add (instance "calc") through FabricInstances.Call from a plain gRPC client, as the
// reconnection tests make it: waiting for the Fabric to be reachable, with a 30 s deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "perper/agent/agent.h"
#include "perper/grpc2/instances.grpc.pb.h"

namespace perper::testing {

// Execution `a`+`b` of ID "Add-<a>-<b>"; *sum is set when the call succeeds.
inline grpc::Status CallAdd(const std::shared_ptr<grpc::Channel>& channel, int64_t a, int64_t b,
                            int64_t* sum) {
  auto stub = grpc2::FabricInstances::NewStub(channel);
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution("Add-" + std::to_string(a) + "-" + std::to_string(b));
  request.mutable_instance()->set_agent("Calculator");
  request.mutable_instance()->set_instance("calc");
  request.set_delegate("Add");
  *request.add_arguments() = ToAny(a);
  *request.add_arguments() = ToAny(b);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  context.set_wait_for_ready(true);
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = stub->Call(&context, request, &response);
  if (status.ok()) {
    auto value = FromAny<int64_t>(response.results(0));
    *sum = value.ok() ? *value : -1;
  }
  return status;
}

}  // namespace perper::testing
