// SPDX-License-Identifier: MIT
// FabricIntrospection (an extension): read-only listings of what the Store holds, for the CLI and
// dashboards. Each listing is bounded by the request's limit (0 means 1000; more than 100000 is
// INVALID_ARGUMENT). See docs/protocol/introspection.md.
//
//   ListExecutions    executions matching agent/instance/delegate (empty matches any), in
//                     creation order; finished ones only with include_finished
//   ListInstances     the unfinished executions of agent "Registry", as PerperInstance
//                     {instance = the Registry execution's ID, agent = its `instance` field}
//   ListStreams       streams by ID prefix, with sizes and listener positions
//   ListReservations  reservations of one workgroup
//   ListStates        dictionaries, then lists, by name prefix, with their entry counts
//   ListAgentListeners  the agents this process's open Listen/ListenAndReserve calls serve
//
// Thread safety: stateless beyond its context; calls may run concurrently on any gRPC thread.
#pragma once

#include "perper/fabric/service_context.h"
#include "perper/grpc2/introspection.grpc.pb.h"

namespace perper::fabric {

class IntrospectionService final : public grpc2::FabricIntrospection::CallbackService {
 public:
  static constexpr uint32_t kDefaultLimit = 1000;
  static constexpr uint32_t kMaxLimit = 100000;

  explicit IntrospectionService(const ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* ListExecutions(
      grpc::CallbackServerContext* call, const grpc2::IntrospectionListExecutionsRequest* request,
      grpc2::IntrospectionListExecutionsResponse* response) override;
  grpc::ServerUnaryReactor* ListInstances(
      grpc::CallbackServerContext* call, const grpc2::IntrospectionListInstancesRequest* request,
      grpc2::IntrospectionListInstancesResponse* response) override;
  grpc::ServerUnaryReactor* ListStreams(grpc::CallbackServerContext* call,
                                        const grpc2::IntrospectionListStreamsRequest* request,
                                        grpc2::IntrospectionListStreamsResponse* response) override;
  grpc::ServerUnaryReactor* ListReservations(
      grpc::CallbackServerContext* call, const grpc2::IntrospectionListReservationsRequest* request,
      grpc2::IntrospectionListReservationsResponse* response) override;
  grpc::ServerUnaryReactor* ListStates(grpc::CallbackServerContext* call,
                                       const grpc2::IntrospectionListStatesRequest* request,
                                       grpc2::IntrospectionListStatesResponse* response) override;
  grpc::ServerUnaryReactor* ListAgentListeners(
      grpc::CallbackServerContext* call,
      const grpc2::IntrospectionListAgentListenersRequest* request,
      grpc2::IntrospectionListAgentListenersResponse* response) override;

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
