// SPDX-License-Identifier: MIT
#include "perper/cli/destroy.h"

#include <chrono>
#include <vector>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

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

bool Gone(const grpc::Status& status) {
  return status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND;
}

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

// The instances listed in "<instance>-children".
grpc::Status Children(const Calls& calls, const std::string& instance,
                      std::vector<grpc2::model::PerperInstance>* children) {
  auto stub = grpc2::FabricStatesList::NewStub(calls.channel());
  grpc2::StatesListListItemsRequest request;
  request.mutable_list()->set_list(instance + "-children");
  grpc::ClientContext context;
  calls.Prepare(context);
  auto reader = stub->ListItems(&context, request);
  grpc2::StatesListListItemsResponse item;
  while (reader->Read(&item)) {
    grpc2::model::PerperInstance child;
    if (item.value().UnpackTo(&child) && !child.instance().empty()) children->push_back(child);
  }
  grpc::Status status = reader->Finish();
  return status.error_code() == grpc::StatusCode::NOT_FOUND ? grpc::Status::OK : status;
}

grpc::Status ExecutionsOf(const Calls& calls, const std::string& instance,
                          std::vector<std::string>* ids) {
  auto stub = grpc2::FabricIntrospection::NewStub(calls.channel());
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_instance(instance);
  request.set_include_finished(true);
  request.set_limit(100000);
  grpc2::IntrospectionListExecutionsResponse response;
  grpc::ClientContext context;
  calls.Prepare(context);
  grpc::Status status = stub->ListExecutions(&context, request, &response);
  for (const auto& e : response.executions()) {
    // A Registry record whose agent type is spelled like the instance is another instance.
    if (e.instance().agent() != "Registry") ids->push_back(e.execution().execution());
  }
  return status;
}

// The retention rule, applied by the client to an instance the Fabric does not know as one.
grpc::Status Sweep(const Calls& calls, const std::string& instance) {
  std::vector<grpc2::model::PerperInstance> children;
  std::vector<std::string> executions;
  if (grpc::Status s = Children(calls, instance, &children); !s.ok()) return s;
  if (grpc::Status s = ExecutionsOf(calls, instance, &executions); !s.ok()) return s;
  if (children.empty() && executions.empty()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "instance " + instance + " not found");
  }
  for (const auto& child : children) {
    grpc2::ExecutionsGetResultResponse ignored;
    grpc::Status s = StopAndDelete(calls, child, /*skip_stop=*/true, &ignored);
    if (!Gone(s)) return s;
  }
  google::protobuf::Empty empty;
  auto lists = grpc2::FabricStatesList::NewStub(calls.channel());
  auto dictionaries = grpc2::FabricStatesDictionary::NewStub(calls.channel());
  auto execution_stub = grpc2::FabricExecutions::NewStub(calls.channel());
  auto streams = grpc2::FabricStreams::NewStub(calls.channel());
  for (const std::string& id : executions) {
    grpc2::ExecutionsDeleteRequest request;
    request.mutable_execution()->set_execution(id);
    grpc::ClientContext context;
    calls.Prepare(context);
    if (grpc::Status s = execution_stub->Delete(&context, request, &empty); !Gone(s)) return s;
    grpc2::StreamsDeleteRequest stream;
    stream.mutable_stream()->set_stream(id);
    grpc::ClientContext stream_context;
    calls.Prepare(stream_context);
    if (grpc::Status s = streams->Delete(&stream_context, stream, &empty); !Gone(s)) return s;
  }
  for (const std::string& name : {instance + "-children", instance + "-"}) {
    grpc2::StatesListDeleteRequest request;
    request.mutable_list()->set_list(name);
    grpc::ClientContext context;
    calls.Prepare(context);
    if (grpc::Status s = lists->Delete(&context, request, &empty); !Gone(s)) return s;
  }
  grpc2::StatesDictionaryDeleteRequest request;
  request.mutable_dictionary()->set_dictionary(instance + "-");
  grpc::ClientContext context;
  calls.Prepare(context);
  if (grpc::Status s = dictionaries->Delete(&context, request, &empty); !Gone(s)) return s;
  return grpc::Status::OK;
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
  if (result.status.error_code() == grpc::StatusCode::NOT_FOUND && skip_stop) {
    result.status = Sweep(calls, instance);
    return result;
  }
  if (result.status.ok() && response.has_error()) result.stop_error = response.error().message();
  return result;
}

}  // namespace perper::cli
