// SPDX-License-Identifier: MIT
// FabricStatesDictionary and FabricStatesList: named dictionaries (ordered by key bytes) and
// deques with stable raw indices, kept by the Store's StateStore. Semantics, the dictionary's
// Operate truth table and the list operation guide: docs/protocol/states.md.
//
// Every RPC validates its request (names non-empty, keys non-null, a list location set, every
// value within FabricLimits::max_value_bytes) and then makes one StateStore call, which is atomic.
// ListItems answers with a snapshot taken at the start of the call, written one message at a
// time. QuerySQL is not supported and answers UNIMPLEMENTED.
//
// Thread safety: the services are stateless beyond their context; every call may run
// concurrently on any gRPC thread.
#pragma once

#include <google/protobuf/empty.pb.h>

#include "perper/fabric/service_context.h"
#include "perper/grpc2/states.grpc.pb.h"

namespace perper::fabric {

class StatesDictionaryService final : public grpc2::FabricStatesDictionary::CallbackService {
 public:
  explicit StatesDictionaryService(const ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* call,
                                   const grpc2::StatesDictionaryCreateRequest* request,
                                   google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* Operate(grpc::CallbackServerContext* call,
                                    const grpc2::StatesDictionaryOperateRequest* request,
                                    grpc2::StatesDictionaryOperateResponse* response) override;
  grpc::ServerWriteReactor<grpc2::StatesDictionaryListItemsResponse>* ListItems(
      grpc::CallbackServerContext* call,
      const grpc2::StatesDictionaryListItemsRequest* request) override;
  grpc::ServerUnaryReactor* CountItems(
      grpc::CallbackServerContext* call, const grpc2::StatesDictionaryCountItemsRequest* request,
      grpc2::StatesDictionaryCountItemsResponse* response) override;
  grpc::ServerWriteReactor<grpc2::StatesDictionaryQuerySQLResponse>* QuerySQL(
      grpc::CallbackServerContext* call,
      const grpc2::StatesDictionaryQuerySQLRequest* request) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* call,
                                   const grpc2::StatesDictionaryDeleteRequest* request,
                                   google::protobuf::Empty* response) override;

 private:
  ServiceContext context_;
};

class StatesListService final : public grpc2::FabricStatesList::CallbackService {
 public:
  explicit StatesListService(const ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* call,
                                   const grpc2::StatesListCreateRequest* request,
                                   google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* Operate(grpc::CallbackServerContext* call,
                                    const grpc2::StatesListOperateRequest* request,
                                    grpc2::StatesListOperateResponse* response) override;
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* call,
                                   const grpc2::StatesListLocateRequest* request,
                                   grpc2::StatesListLocateResponse* response) override;
  grpc::ServerWriteReactor<grpc2::StatesListListItemsResponse>* ListItems(
      grpc::CallbackServerContext* call, const grpc2::StatesListListItemsRequest* request) override;
  grpc::ServerUnaryReactor* CountItems(grpc::CallbackServerContext* call,
                                       const grpc2::StatesListCountItemsRequest* request,
                                       grpc2::StatesListCountItemsResponse* response) override;
  grpc::ServerWriteReactor<grpc2::StatesListQuerySQLResponse>* QuerySQL(
      grpc::CallbackServerContext* call, const grpc2::StatesListQuerySQLRequest* request) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* call,
                                   const grpc2::StatesListDeleteRequest* request,
                                   google::protobuf::Empty* response) override;

 private:
  ServiceContext context_;
};

}  // namespace perper::fabric
