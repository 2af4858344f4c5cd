// SPDX-License-Identifier: MIT
// Destroying an instance with what it owns, for `perper destroy` and `perper up --reset`.
//
//   DestroyResult r = DestroyInstance(channel, "Shop-deploy", "Shop", /*skip_stop=*/true,
//                                     absl::Seconds(30));
//
// InstancesStopAndDelete does the work: the children cascade and the Fabric's retention rule
// (the instance's executions, their streams, its "<ID>-" dictionary and list). With skip_stop the
// Fabric also destroys an instance that has no Registry record but owns something (the Deploy
// instance "<Agent>-deploy": its children and the recorded Deploy execution).
//
// Stateless functions over synchronous stubs; thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

namespace perper::cli {

struct DestroyResult {
  grpc::Status status;     // the Fabric's answer (NOT_FOUND: nothing of the instance exists)
  std::string stop_error;  // Stop completed with this error (the instance is destroyed anyway)
};

// `timeout` bounds each call made to the Fabric.
DestroyResult DestroyInstance(std::shared_ptr<grpc::Channel> channel, const std::string& instance,
                              const std::string& agent, bool skip_stop, absl::Duration timeout);

// The instance whose children are the instances Deploy of `agent` started, and whose executions
// include the recorded Deploy execution "<agent>-deploy-deploy".
std::string DeployInstance(const std::string& agent);

}  // namespace perper::cli
