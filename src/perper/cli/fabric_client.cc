// SPDX-License-Identifier: MIT
#include "perper/cli/fabric_client.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "perper/common/fabric_endpoints.h"
#include "perper/common/files.h"
#include "perper/grpc2/introspection.grpc.pb.h"

namespace perper::cli {

void FindFabric(FabricTarget& target, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path start = fs::absolute(dir, error).lexically_normal();
  if (!start.has_filename() && start != start.root_path()) start = start.parent_path();  // "a/"
  for (fs::path at = start;; at = at.parent_path()) {
    fs::path file = at / kAppAddressFile;
    if (std::string address = ReadAddressFile(file.string()); !address.empty()) {
      target.address = address;
      target.origin = absl::StrCat("the address is from ", file.string(),
                                   ", which perper up writes while it runs; a perper up that "
                                   "was killed leaves it behind");
      return;
    }
    if (at == at.parent_path()) break;
  }
  target.address = kDefaultAddress;
  target.origin = absl::StrCat("no --fabric, no $PERPER_FABRIC_ENDPOINT and no ", kAppAddressFile,
                               " in ", start.string(), " or its parents, so the default");
}

absl::StatusOr<std::vector<std::string>> Addresses(const FabricTarget& target) {
  return ParseFabricEndpoints(target.address, "--fabric");
}

std::string Address(const FabricTarget& target) {
  auto addresses = Addresses(target);
  return addresses.ok() ? absl::StrJoin(*addresses, ", ") : target.address;
}

namespace {

// Whether a connection to `channel` is established before `deadline` (false as soon as it
// fails: refused or unreachable).
bool Connects(grpc::Channel& channel, std::chrono::system_clock::time_point deadline) {
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN ||
        !channel.WaitForStateChange(state, deadline)) {
      return false;
    }
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return true;
}

}  // namespace

std::shared_ptr<grpc::Channel> Channel(const FabricTarget& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto addresses = Addresses(target);
  if (!addresses.ok() || addresses->empty()) {  // rejected by Main before any command runs
    return grpc::CreateCustomChannel(target.address, grpc::InsecureChannelCredentials(), args);
  }
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const std::string& address : *addresses) {
    channels.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  if (channels.size() > 1) {
    auto deadline = std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(target.timeout_seconds * 1000));
    for (const auto& channel : channels) {
      if (Connects(*channel, deadline)) return channel;
    }
  }
  return channels.front();
}

void Deadline(grpc::ClientContext& context, const FabricTarget& target) {
  context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(target.timeout_seconds * 1000)));
}

int Fail(const FabricTarget& target, const grpc::Status& status, const std::string& what) {
  std::string message;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      message =
          absl::StrCat("cannot reach the Fabric at ", Address(target), " (", status.error_message(),
                       "); is it running? Give its address with --fabric");
      if (!target.origin.empty()) absl::StrAppend(&message, " (", target.origin, ")");
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      message = absl::StrCat("the Fabric at ", Address(target), " did not answer ", what,
                             " within ", target.timeout_seconds, " s");
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      message = absl::StrCat("the Fabric at ", Address(target), " does not support ", what,
                             " (an older version?)");
      break;
    case grpc::StatusCode::NOT_FOUND:
      message = absl::StrCat(what, ": not found: ", status.error_message());
      break;
    default:
      message = absl::StrCat(what, " failed: ", status.error_message());
  }
  return Error(message);
}

int Error(const std::string& message) {
  std::fprintf(stderr, "perper: %s\n", message.c_str());
  return 1;
}

grpc::Status ListInstances(const FabricTarget& target, const std::string& agent,
                           std::vector<grpc2::model::PerperInstance>* instances,
                           std::vector<grpc2::InstancePlacement>* placements) {
  auto stub = grpc2::FabricIntrospection::NewStub(Channel(target));
  grpc2::IntrospectionListInstancesRequest request;
  request.set_agent(agent);
  request.set_limit(100000);
  grpc2::IntrospectionListInstancesResponse response;
  grpc::ClientContext context;
  Deadline(context, target);
  grpc::Status status = stub->ListInstances(&context, request, &response);
  instances->assign(response.instances().begin(), response.instances().end());
  if (placements != nullptr) {
    placements->assign(response.placements().begin(), response.placements().end());
  }
  return status;
}

grpc::Status ListStates(const FabricTarget& target, const std::string& prefix,
                        std::vector<grpc2::StateSummary>* states) {
  auto stub = grpc2::FabricIntrospection::NewStub(Channel(target));
  grpc2::IntrospectionListStatesRequest request;
  request.set_name_prefix(prefix);
  request.set_limit(100000);
  grpc2::IntrospectionListStatesResponse response;
  grpc::ClientContext context;
  Deadline(context, target);
  grpc::Status status = stub->ListStates(&context, request, &response);
  states->assign(response.states().begin(), response.states().end());
  return status;
}

void Print(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

void PrintJson(const nlohmann::json& value) { Print(value.dump(2) + "\n"); }

}  // namespace perper::cli
