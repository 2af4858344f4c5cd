// SPDX-License-Identifier: MIT
// The commands that remove things from a running Fabric: destroy and delete.
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "perper/cli/commands.h"
#include "perper/cli/destroy.h"
#include "perper/cli/fabric_client.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace perper::cli {

int RunDestroy(const FabricTarget& target, const DestroyOptions& options) {
  auto channel = Channel(target);
  std::string agent = options.agent;
  if (agent.empty()) {
    std::vector<grpc2::model::PerperInstance> instances;
    grpc::Status status = ListInstances(target, "", &instances);
    if (!status.ok()) return Fail(target, status, "listing instances");
    for (const auto& i : instances) {
      if (i.instance() == options.instance) agent = i.agent();
    }
    if (agent.empty()) {
      return Error(absl::StrCat("no instance '", options.instance,
                                "' (see perper instances; --agent A --force destroys an instance "
                                "without a Registry record, such as a Deploy instance A-deploy)"));
    }
  }
  DestroyResult result =
      DestroyInstance(channel, options.instance, agent, options.force,
                      absl::Milliseconds(static_cast<int64_t>(target.timeout_seconds * 1000)));
  if (result.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !options.force) {
    return Error(absl::StrCat("no process served Stop of instance ", options.instance, " within ",
                              target.timeout_seconds,
                              " s, so nothing was destroyed; `perper destroy ", options.instance,
                              " --force` destroys it without calling Stop"));
  }
  if (result.status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return Error(absl::StrCat("no instance '", options.instance, "' of agent '", agent,
                              "' (see perper instances)"));
  }
  if (!result.status.ok()) {
    return Fail(target, result.status, "destroying instance " + options.instance);
  }
  if (!result.stop_error.empty()) {
    std::fprintf(stderr, "perper: Stop of %s failed (%s); the instance is destroyed anyway\n",
                 options.instance.c_str(), result.stop_error.c_str());
  }
  Print(absl::StrCat("destroyed instance ", options.instance, "\n"));
  return 0;
}

int RunDeleteExecution(const FabricTarget& target, const std::string& id) {
  auto channel = Channel(target);
  // Executions.Delete succeeds for an unknown ID; the listing tells a typo from a deletion.
  auto introspection = grpc2::FabricIntrospection::NewStub(channel);
  grpc2::IntrospectionListExecutionsRequest list;
  list.set_include_finished(true);
  list.set_limit(100000);
  grpc2::IntrospectionListExecutionsResponse executions;
  grpc::ClientContext list_context;
  Deadline(list_context, target);
  grpc::Status status = introspection->ListExecutions(&list_context, list, &executions);
  if (!status.ok()) return Fail(target, status, "listing executions");
  const grpc2::ExecutionSummary* found = nullptr;
  for (const auto& e : executions.executions()) {
    if (e.execution().execution() == id) found = &e;
  }
  if (found == nullptr)
    return Error(absl::StrCat("no execution '", id, "' (see perper executions)"));
  if (found->instance().agent() == "Registry") {
    return Error(absl::StrCat("execution ", id, " is the Registry record of instance ", id,
                              "; `perper destroy ", id,
                              "` destroys the instance with its children and state"));
  }
  auto stub = grpc2::FabricExecutions::NewStub(channel);
  grpc2::ExecutionsDeleteRequest request;
  request.mutable_execution()->set_execution(id);
  google::protobuf::Empty empty;
  grpc::ClientContext context;
  Deadline(context, target);
  status = stub->Delete(&context, request, &empty);
  if (!status.ok()) return Fail(target, status, "deleting execution " + id);
  Print(absl::StrCat("deleted execution ", id, "\n"));
  return 0;
}

int RunDeleteStream(const FabricTarget& target, const std::string& id) {
  auto stub = grpc2::FabricStreams::NewStub(Channel(target));
  grpc2::StreamsDeleteRequest request;
  request.mutable_stream()->set_stream(id);
  google::protobuf::Empty empty;
  grpc::ClientContext context;
  Deadline(context, target);
  grpc::Status status = stub->Delete(&context, request, &empty);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return Error(absl::StrCat("no stream '", id, "' (see perper streams)"));
  }
  if (!status.ok()) return Fail(target, status, "deleting stream " + id);
  Print(absl::StrCat("deleted stream ", id, "\n"));
  return 0;
}

int RunDeleteState(const FabricTarget& target, const std::string& name, bool list) {
  auto channel = Channel(target);
  // Deleting an absent dictionary or list succeeds; the listing says which exist.
  std::vector<grpc2::StateSummary> states;
  grpc::Status status = ListStates(target, name, &states);
  if (!status.ok()) return Fail(target, status, "listing states");
  bool dictionary_exists = false, list_exists = false;
  for (const auto& s : states) {
    if (s.name() != name) continue;
    (s.kind() == grpc2::StateSummary::LIST ? list_exists : dictionary_exists) = true;
  }
  bool delete_list = list || !dictionary_exists;
  if (delete_list ? !list_exists : !dictionary_exists) {
    return Error(absl::StrCat("no ", list ? "list" : "dictionary or list", " '", name,
                              "' (see perper states)"));
  }
  google::protobuf::Empty empty;
  grpc::ClientContext context;
  Deadline(context, target);
  if (delete_list) {
    grpc2::StatesListDeleteRequest request;
    request.mutable_list()->set_list(name);
    status = grpc2::FabricStatesList::NewStub(channel)->Delete(&context, request, &empty);
  } else {
    grpc2::StatesDictionaryDeleteRequest request;
    request.mutable_dictionary()->set_dictionary(name);
    status = grpc2::FabricStatesDictionary::NewStub(channel)->Delete(&context, request, &empty);
  }
  std::string what = absl::StrCat(delete_list ? "list " : "dictionary ", name);
  if (!status.ok()) return Fail(target, status, "deleting " + what);
  Print(absl::StrCat("deleted ", what, "\n"));
  if (!delete_list && list_exists) {
    std::fprintf(stderr,
                 "perper: a list '%s' remains; `perper delete state %s --list` deletes it\n",
                 name.c_str(), name.c_str());
  }
  return 0;
}

}  // namespace perper::cli
