// SPDX-License-Identifier: MIT
#include "perper/cli/destroy.h"

#include <chrono>

#include "perper/grpc2/instances.grpc.pb.h"

namespace perper::cli {
namespace {

// The channel and the per-call timeout of one destroy.
class Calls {
 public:
  Calls(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
      : channel_(std::move(channel)), timeout_(timeout) {}

  void Prepare(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout_));
  }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  absl::Duration timeout_;
};

grpc::Status StopAndDelete(const Calls& calls, const grpc2::model::PerperInstance& instance,
                           bool skip_stop, grpc2::ExecutionsGetResultResponse* response) {
  auto stub = grpc2::FabricInstances::NewStub(calls.channel());
  grpc2::InstancesStopAndDeleteRequest request;
  *request.mutable_instance() = instance;
  request.set_skip_stop(skip_stop);
  grpc::ClientContext context;
  calls.Prepare(context);
  return stub->StopAndDelete(&context, request, response);
}

}  // namespace

std::string DeployInstance(const std::string& agent) { return agent + "-deploy"; }

DestroyResult DestroyInstance(std::shared_ptr<grpc::Channel> channel, const std::string& instance,
                              const std::string& agent, bool skip_stop, absl::Duration timeout) {
  Calls calls(std::move(channel), timeout);
  grpc2::model::PerperInstance model;
  model.set_instance(instance);
  model.set_agent(agent);
  grpc2::ExecutionsGetResultResponse response;
  DestroyResult result;
  result.status = StopAndDelete(calls, model, skip_stop, &response);
  if (result.status.ok() && response.has_error()) result.stop_error = response.error().message();
  return result;
}

}  // namespace perper::cli
