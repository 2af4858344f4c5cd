// SPDX-License-Identifier: MIT
#pragma once

#include "absl/status/status.h"
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include "perper/common/grpc_status.h"
#include "perper/fabric/write_pool.h"

namespace perper::fabric {

// Answers a unary callback-API call at once with `status` (the response message as filled so
// far): the common shape of every unary handler that finishes without waiting.
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                             const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Answers a unary callback-API call with the status `body()` returns (body fills the response).
// With a write pool, `body` runs on one of its threads and this returns at once; without, it
// runs inline. `body` must capture only what outlives the call (the request and response
// messages do, until Finish).
template <class Body>
grpc::ServerUnaryReactor* AnswerUnary(WritePool* pool, grpc::CallbackServerContext* context,
                                      Body body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (pool == nullptr) {
    reactor->Finish(ToGrpcStatus(body()));
    return reactor;
  }
  pool->Post([reactor, body = std::move(body)]() mutable {
    reactor->Finish(ToGrpcStatus(body()));
  });
  return reactor;
}

}  // namespace perper::fabric
