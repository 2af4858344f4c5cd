// SPDX-License-Identifier: MIT
#pragma once

#include "absl/status/status.h"
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include "perper/common/grpc_status.h"

namespace perper::fabric {

// Answers a unary callback-API call at once with `status` (the response message as filled so
// far): the common shape of every unary handler that finishes without waiting.
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                             const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace perper::fabric
