// SPDX-License-Identifier: MIT
// Destroying an instance with what it owns, for `perper destroy` and `perper up --reset`.
//
//   DestroyResult r = DestroyInstance(channel, "Shop-deploy", "Shop", /*skip_stop=*/true,
//                                     absl::Seconds(30));
//
// InstancesStopAndDelete does the work (the children cascade and the Fabric's retention rule:
// the instance's executions, their streams, its "<ID>-" dictionary and list). An instance
// without a Registry record — a Deploy instance "<Agent>-deploy" — is answered NOT_FOUND by a
// Fabric that only destroys Registry instances; with skip_stop it is then swept here by the same
// rule: every child in "<ID>-children" (StopAndDelete, skip_stop), that list, the executions of
// the instance and the streams of the same IDs, the dictionary and the list "<ID>-".
//
// Stateless functions over synchronous stubs; thread-safe.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"

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
