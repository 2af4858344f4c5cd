// SPDX-License-Identifier: MIT
#include "perper/common/grpc_status.h"

#include <string>
#include <string_view>

#include "perper/common/text.h"

namespace perper {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Debian's abseil has its own string_view.
  std::string_view message(status.message().data(), status.message().size());
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      BoundedText(message, kMaxStatusMessageBytes));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace perper
