// SPDX-License-Identifier: MIT
// FabricInstances: instance lifecycle and one-round-trip calls, done by the Fabric on the
// client's behalf over ordinary executions (docs/protocol/instances.md). An extension: upstream
// declares the service but does not serve it.
//
// Each RPC is a small state machine on a unary callback reactor: it creates executions and
// moves on when their results arrive (ChangeHub hints), so no thread waits for an agent.
//
// Thread safety: the service is stateless beyond its context; gRPC may call it from any thread.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/instances.grpc.pb.h"

namespace perper::fabric {

class InstancesService final : public perper::grpc2::FabricInstances::CallbackService {
 public:
  explicit InstancesService(const ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* CreateAndStart(grpc::CallbackServerContext* call,
                                           const grpc2::InstancesCreateAndStartRequest* request,
                                           grpc2::ExecutionsGetResultResponse* response) override;
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* call,
                                 const grpc2::ExecutionsCreateRequest* request,
                                 grpc2::ExecutionsGetResultResponse* response) override;
  grpc::ServerUnaryReactor* StopAndDelete(grpc::CallbackServerContext* call,
                                          const grpc2::InstancesStopAndDeleteRequest* request,
                                          grpc2::ExecutionsGetResultResponse* response) override;

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
