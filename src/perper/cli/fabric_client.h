// SPDX-License-Identifier: MIT
// What every command that talks to a running Fabric shares: the channel, the deadline, and the
// wording of failures and output. Internal to perper/cli.
//
// Stateless functions; thread-safe (they write to stdout/stderr).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <grpcpp/grpcpp.h>

#include "perper/cli/commands.h"
#include "perper/grpc2/introspection.pb.h"
#include "perper/grpc2/model.pb.h"
#include <nlohmann/json.hpp>

namespace perper::cli {

// The Fabric an inspection command talks to when neither --fabric nor $PERPER_FABRIC_ENDPOINT
// names one: the address `perper up` writes to `.perper/fabric.address` in its application's
// folder while it runs, found in `dir` or the nearest of its parents that has one; else the
// default address.
inline constexpr char kDefaultAddress[] = "127.0.0.1:40400";
inline constexpr char kAppStateDir[] = ".perper";
inline constexpr char kAppAddressFile[] = ".perper/fabric.address";
// Sets target.address and target.origin as described above.
void FindFabric(FabricTarget& target, const std::string& dir);

// The addresses of --fabric, a comma-separated list of host:port, read as the SDKs read
// PERPER_FABRIC_ENDPOINT (ParseFabricEndpoints: an http:// prefix dropped, spaces around entries
// ignored). An empty entry or an https:// one is an error naming the flag and the value.
absl::StatusOr<std::vector<std::string>> Addresses(const FabricTarget& target);
// The target's addresses for messages: "a:1" or "a:1, b:2".
std::string Address(const FabricTarget& target);
// A channel to the first of the target's addresses that answers, tried in order (an address
// that refuses the connection or is unreachable is passed over). With one address, or when
// none answers, a channel to the first: its calls then fail as the Fabric there does.
std::shared_ptr<grpc::Channel> Channel(const FabricTarget& target);
// Sets the call's deadline to the target's timeout from now.
void Deadline(grpc::ClientContext& context, const FabricTarget& target);

// Prints a failed call in words a person understands ("cannot reach the Fabric at …",
// "did not answer … within N s", "<what>: not found: …"); returns the exit code 1.
int Fail(const FabricTarget& target, const grpc::Status& status, const std::string& what);
// Prints "perper: <message>" to stderr; returns the exit code 1.
int Error(const std::string& message);

// The live instances (of `agent`; empty: of every type) into *instances.
grpc::Status ListInstances(const FabricTarget& target, const std::string& agent,
                           std::vector<grpc2::model::PerperInstance>* instances,
                           std::vector<grpc2::InstancePlacement>* placements = nullptr);

// The dictionaries, then the lists, whose names start with `prefix`, into *states.
grpc::Status ListStates(const FabricTarget& target, const std::string& prefix,
                        std::vector<grpc2::StateSummary>* states);

void Print(const std::string& text);
void PrintJson(const nlohmann::json& value);

}  // namespace perper::cli
