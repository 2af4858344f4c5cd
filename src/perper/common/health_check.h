// SPDX-License-Identifier: MIT
// A client of gRPC's standard health service (grpc.health.v1.Health/Check), which the Fabric
// serves: `perper health` and the tests ask it. The two messages are tiny and fixed, so they are
// encoded by hand instead of generating code from health.proto.
//
//   int serving = 0;
//   grpc::Status s = CheckHealth(channel, deadline, &serving);  // serving == kHealthServing
//
// Stateless; thread-safe.
#pragma once

#include <chrono>
#include <memory>

#include <grpcpp/grpcpp.h>

namespace perper {

// HealthCheckResponse.ServingStatus values.
inline constexpr int kHealthUnknown = 0;
inline constexpr int kHealthServing = 1;
inline constexpr int kHealthNotServing = 2;

// Asks for the server's overall health (service ""); on OK, *serving_status is the answer's
// status field (kHealthUnknown when absent, -1 when the answer cannot be read).
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                         std::chrono::system_clock::time_point deadline, int* serving_status);

// The name of a ServingStatus value ("SERVING", …), or its number.
const char* HealthStatusName(int serving_status);

}  // namespace perper
