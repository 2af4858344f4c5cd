// SPDX-License-Identifier: MIT
// The commands of the `perper` command line, one function each (see cli.h). Each returns the
// process exit code. Internal to perper/cli.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "perper/fabric/fabric_config.h"

namespace perper::cli {

// Options every inspection command takes.
struct FabricTarget {
  std::string address;  // host:port, or a comma-separated list (see Addresses)
  // Where `address` came from, when not from --fabric or $PERPER_FABRIC_ENDPOINT: said when the
  // Fabric cannot be reached (FindFabric).
  std::string origin;
  bool json = false;
  double timeout_seconds = 10;
};

struct ExecutionsOptions {
  std::string agent, instance, delegate;
  std::string state = "all";  // all, unfinished, waiting, running, finished, failed
  uint32_t limit = 1000;
  bool wide = false;  // never shorten IDs to fit the terminal
};

struct TailOptions {
  std::string stream;
  int64_t from = 0;
  bool follow = true;
};

// `perper state get|list`: DICTIONARY (and KEY) as positionals, or --instance X for the state
// dictionary of instance X ("X-"), then KEY.
struct StateOptions {
  std::vector<std::string> positionals;
  std::string instance;
  bool json_key = false;
};

struct CallOptions {
  std::string agent, instance, delegate;
  std::vector<std::string> arguments;  // one JSON value each
  bool any_instance = false;
};

struct DestroyOptions {
  std::string instance;
  std::string agent;   // empty: the live instance's agent type
  bool force = false;  // skip_stop: no Stop call
};

struct UpOptions {
  std::string manifest;
  std::string fabric;  // a running Fabric; empty: the manifest's, or an embedded one
  std::string log_dir;
  std::string address_file;
  bool reset = false;            // destroy what the previous Deploy recorded before Deploy starts
  std::string scaler = "local";  // local (processes) or compose (containers)
  std::string project;           // compose: docker-compose's project name
};

int RunExecutions(const FabricTarget& target, const ExecutionsOptions& options);
int RunInstances(const FabricTarget& target, const std::string& agent);
int RunStreams(const FabricTarget& target, const std::string& prefix);
int RunStreamTail(const FabricTarget& target, const TailOptions& options);
int RunStateGet(const FabricTarget& target, const StateOptions& options);
int RunStateList(const FabricTarget& target, const StateOptions& options);
int RunStates(const FabricTarget& target, const std::string& prefix);
int RunCall(const FabricTarget& target, const CallOptions& options);
int RunDestroy(const FabricTarget& target, const DestroyOptions& options);
int RunDeleteExecution(const FabricTarget& target, const std::string& id);
int RunDeleteStream(const FabricTarget& target, const std::string& id);
// `list`: delete the list NAME; otherwise the dictionary NAME, or the list when no dictionary.
int RunDeleteState(const FabricTarget& target, const std::string& name, bool list);
int RunUp(const UpOptions& options);
// Exit 0 when the Fabric's grpc.health.v1 service answers SERVING, 1 otherwise.
int RunHealth(const FabricTarget& target);
// Writes the template of `language` (cpp, python) into ./NAME, refusing a non-empty NAME.
int RunInit(const std::string& language, const std::string& name);
int RunFabric(const fabric::FabricConfigFlags& flags);

}  // namespace perper::cli
