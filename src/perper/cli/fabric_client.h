// SPDX-License-Identifier: MIT
// What every command that talks to a running Fabric shares: the channel, the deadline, and the
// wording of failures and output. Internal to perper/cli.
//
// Stateless functions; thread-safe (they write to stdout/stderr).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>

#include "perper/cli/commands.h"
#include "perper/grpc2/introspection.pb.h"
#include "perper/grpc2/model.pb.h"

namespace perper::cli {

// host:port of the target (an http:// or https:// prefix dropped).
std::string Address(const FabricTarget& target);
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
                           std::vector<grpc2::model::PerperInstance>* instances);

// The dictionaries, then the lists, whose names start with `prefix`, into *states.
grpc::Status ListStates(const FabricTarget& target, const std::string& prefix,
                        std::vector<grpc2::StateSummary>* states);

void Print(const std::string& text);
void PrintJson(const nlohmann::json& value);

}  // namespace perper::cli
