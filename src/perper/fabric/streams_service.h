// SPDX-License-Identifier: MIT
// StreamsService: the FabricStreams gRPC service (perper/grpc2/streams.proto), with the
// extensions WriteItems, Complete, ListenItemsAndMove, GetProgress and Step.
// docs/protocol/streams.md describes every RPC, its ordering and delivery guarantees and its status
// codes.
//
// Listen calls are pull-based reactors: they subscribe to the stream's topic on the ChangeHub,
// treat each change as a hint, and read the next batch of items back from the Store after their
// cursor, with one write in flight per call. No thread is held per call, and a call's memory is
// bounded by one batch, so a slow listener slows only its own call.
//
// Thread safety: the service is stateless beyond its context; gRPC may call it from any thread.
#pragma once

#include <google/protobuf/empty.pb.h>
#include <grpcpp/grpcpp.h>

#include "perper/fabric/arena_allocator.h"
#include "perper/fabric/service_context.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace perper::fabric {

class StreamsService final : public perper::grpc2::FabricStreams::CallbackService {
 public:
  // `context` points at objects that outlive the service and every call it serves.
  explicit StreamsService(const ServiceContext& context) : context_(context) {
    SetMessageAllocatorFor_WriteItems(&write_items_allocator_);
  }

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* call,
                                   const grpc2::StreamsCreateRequest* request,
                                   google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* WriteItem(grpc::CallbackServerContext* call,
                                      const grpc2::StreamsWriteItemRequest* request,
                                      google::protobuf::Empty* response) override;
  grpc::ServerWriteReactor<grpc2::StreamsListenItemsResponse>* ListenItems(
      grpc::CallbackServerContext* call, const grpc2::StreamsListenItemsRequest* request) override;
  grpc::ServerUnaryReactor* MoveListener(grpc::CallbackServerContext* call,
                                         const grpc2::StreamsMoveListenerRequest* request,
                                         google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* WaitForListener(grpc::CallbackServerContext* call,
                                            const grpc2::StreamsWaitForListenerRequest* request,
                                            google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* call,
                                   const grpc2::StreamsDeleteRequest* request,
                                   google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* WriteItems(grpc::CallbackServerContext* call,
                                       const grpc2::StreamsWriteItemsRequest* request,
                                       grpc2::StreamsWriteItemsResponse* response) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* call,
                                     const grpc2::StreamsCompleteRequest* request,
                                     google::protobuf::Empty* response) override;
  grpc::ServerBidiReactor<grpc2::StreamsListenItemsAndMoveRequest,
                          grpc2::StreamsListenItemsResponse>*
  ListenItemsAndMove(grpc::CallbackServerContext* call) override;
  grpc::ServerUnaryReactor* GetProgress(grpc::CallbackServerContext* call,
                                        const grpc2::StreamsGetProgressRequest* request,
                                        grpc2::StreamsGetProgressResponse* response) override;
  grpc::ServerUnaryReactor* Step(grpc::CallbackServerContext* call,
                                 const grpc2::StreamsStepRequest* request,
                                 grpc2::StreamsStepResponse* response) override;

 private:
  ServiceContext context_;
  // WriteItems requests are parsed on a per-call arena (one allocation per block, not per item).
  ArenaMessageAllocator<grpc2::StreamsWriteItemsRequest, grpc2::StreamsWriteItemsResponse>
      write_items_allocator_;
};

}  // namespace perper::fabric
