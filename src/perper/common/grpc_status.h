// SPDX-License-Identifier: MIT
// The one place where absl::Status and grpc::Status meet. The numeric codes are the same, so the
// mapping keeps the code, and the message cut to kMaxStatusMessageBytes (perper/common/text.h).
#pragma once

#include "absl/status/status.h"
#include <grpcpp/support/status.h>

namespace perper {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace perper
