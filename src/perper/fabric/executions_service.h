// SPDX-License-Identifier: MIT
// FabricExecutions: durable calls to agent instances (docs/protocol/executions.md).
//
// Every RPC is a callback reactor; streaming and waiting calls wait on ChangeHub subscriptions
// and re-read the store on each hint, so no thread is parked per call and a listener may be
// served by another process than the writer. Reservations (ListenAndReserve, Reserve) are held
// by a holder ID unique to each call and released when the call ends.
//
// Thread safety: the service is stateless beyond its context; gRPC may call it from any thread.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"

#include "perper/fabric/service_context.h"
#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::fabric {

class ExecutionsService final : public perper::grpc2::FabricExecutions::CallbackService {
 public:
  explicit ExecutionsService(const ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* call,
                                   const grpc2::ExecutionsCreateRequest* request,
                                   google::protobuf::Empty* response) override;
  grpc::ServerWriteReactor<grpc2::ExecutionsListenResponse>* Listen(
      grpc::CallbackServerContext* call, const grpc2::ExecutionsListenRequest* request) override;
  grpc::ServerBidiReactor<grpc2::ExecutionsListenAndReserveRequest,
                          grpc2::ExecutionsListenResponse>*
  ListenAndReserve(grpc::CallbackServerContext* call) override;
  grpc::ServerWriteReactor<google::protobuf::Empty>* Reserve(
      grpc::CallbackServerContext* call, const grpc2::ExecutionsReserveRequest* request) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* call,
                                     const grpc2::ExecutionsCompleteRequest* request,
                                     google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* GetResult(grpc::CallbackServerContext* call,
                                      const grpc2::ExecutionsGetResultRequest* request,
                                      grpc2::ExecutionsGetResultResponse* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* call,
                                   const grpc2::ExecutionsDeleteRequest* request,
                                   google::protobuf::Empty* response) override;

 private:
  ServiceContext context_;
};

// Checks a create request (IDs, required fields, value sizes) and turns it into a record.
// Shared with FabricInstances.Call.
absl::StatusOr<storage::ExecutionRecord> RecordFromCreateRequest(
    const grpc2::ExecutionsCreateRequest& request, const FabricLimits& limits);

// Completes the stream linked to `execution` (same ID) if it exists and is open. Errors other
// than "no such stream" and "already completed" are logged, not returned: the execution's own
// change has been made already.
void CompleteLinkedStream(const ServiceContext& context, const std::string& execution,
                          std::optional<std::string> error);
// Logs what completing the stream linked to `execution` answered, unless it is OK, "no such
// stream" or "already completed" (Store::CompleteExecutionAndStream's `stream`).
void ReportLinkedStream(const std::string& execution, const absl::Status& stream);

}  // namespace perper::fabric
