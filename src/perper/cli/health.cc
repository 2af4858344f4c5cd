// SPDX-License-Identifier: MIT
// `perper health`: asks the Fabric's grpc.health.v1 service, for container health checks and
// scripts.
#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"

#include "perper/cli/commands.h"
#include "perper/cli/fabric_client.h"
#include "perper/common/health_check.h"

namespace perper::cli {

int RunHealth(const FabricTarget& target) {
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(target.timeout_seconds * 1000));
  int serving = kHealthUnknown;
  grpc::Status status = CheckHealth(Channel(target), deadline, &serving);
  if (!status.ok()) return Fail(target, status, "health check");
  if (serving != kHealthServing) {
    return Error(
        absl::StrCat("the Fabric at ", Address(target), " is ", HealthStatusName(serving)));
  }
  Print(absl::StrCat("SERVING (", Address(target), ")\n"));
  return 0;
}

}  // namespace perper::cli
