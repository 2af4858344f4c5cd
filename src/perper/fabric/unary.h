// SPDX-License-Identifier: MIT
// How unary handlers answer, and the one path every store write of a handler takes.
//
// Thread safety: the functions may be called from any thread.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include "perper/common/grpc_status.h"
#include "perper/fabric/service_context.h"

namespace perper::fabric {

// Answers a unary callback-API call at once with `status` (the response message as filled so
// far): the common shape of every unary handler that finishes without waiting.
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* call,
                                             const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Whether RunWrite runs a write inline (before it returns), on the calling thread.
inline bool WritesRunInline(const ServiceContext& context) { return context.writes == nullptr; }

// Runs `write` (store writes, and what they answer) where the store's writes belong: on the
// write pool when the store declared that its writes wait (ServiceContext::writes is set only
// then), inline otherwise. Every write a handler makes goes through here, so no handler chooses.
template <class Write>
void RunWrite(const ServiceContext& context, Write write) {
  if (WritesRunInline(context)) {
    write();
    return;
  }
  context.writes->Post(std::move(write));
}

// Answers a unary call with the status `body()` returns (body writes to the store and fills the
// response), run by RunWrite: with a write pool this returns at once. `body` must capture only
// what outlives the call (the request and response messages do, until Finish).
template <class Body>
grpc::ServerUnaryReactor* AnswerWrite(const ServiceContext& context,
                                      grpc::CallbackServerContext* call, Body body) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  RunWrite(context,
           [reactor, body = std::move(body)]() mutable { reactor->Finish(ToGrpcStatus(body())); });
  return reactor;
}

}  // namespace perper::fabric
