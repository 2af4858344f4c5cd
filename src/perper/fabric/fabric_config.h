// SPDX-License-Identifier: MIT
// The Fabric's configuration: defaults < YAML file (--config) < PERPER_* environment variables
// < command-line flags; and running a Fabric as a program (signals, the allocator, the address
// file). Shared by `perper-fabric` and `perper fabric`, in the library perper_fabric_startup
// (fabric_config.cc, fabric_startup.cc), so that the server library links neither CLI11 nor
// yaml-cpp.
//
//   CLI::App app{"perper-fabric"};
//   FabricConfigFlags flags;
//   AddFabricFlags(app, flags);
//   CLI11_PARSE(app, argc, argv);
//   absl::StatusOr<FabricConfig> config = ResolveFabricConfig(flags);
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include <CLI/CLI.hpp>

#include "perper/fabric/fabric_server.h"

namespace perper::fabric {

struct FabricConfig {
  FabricOptions options;
  std::string log_level = "info";
  std::string address_file;  // When set, the bound address is written there once listening.
};

// What was given on the command line; unset flags fall back to env, file, then defaults.
struct FabricConfigFlags {
  std::optional<std::string> config_file;
  std::optional<std::string> listen;
  std::optional<std::string> storage;
  std::optional<std::string> data_dir;
  std::optional<std::string> log_level;
  std::optional<std::string> address_file;
  std::optional<size_t> max_value_size;
  std::optional<size_t> max_open_calls;
  std::optional<size_t> max_stream_retained_bytes;
  std::optional<size_t> stream_write_wait_ms;
  std::optional<bool> sync;
  // Redis (storage redis): parsed by ResolveFabricConfig, so that a bad value gets the same
  // precise message whether it came from a flag, the environment or the file.
  std::optional<std::string> redis;  // host:port[,host:port...]
  std::optional<std::string> redis_username;
  std::optional<std::string> redis_password;
  std::optional<std::string> redis_cluster;  // auto, yes or no.
  std::optional<std::string> redis_lease_ms;
  std::optional<std::string> redis_wait_replicas;
};

void AddFabricFlags(CLI::App& app, FabricConfigFlags& flags);

// Merges file, environment and flags over the defaults and validates the result.
// INVALID_ARGUMENT names the offending key (and the file and line for YAML errors). Storage
// redis without an address is accepted here (`perper up` may start a Redis and fill it in);
// RunFabricUntilSignalled refuses it.
absl::StatusOr<FabricConfig> ResolveFabricConfig(const FabricConfigFlags& flags);

// Runs a Fabric until SIGINT or SIGTERM, then shuts it down gracefully; on SIGUSR1 it logs the
// heap statistics (HeapStats in perper/common/memory.h), trims the heap and logs them again.
// Returns the exit code: 2 for a configuration it cannot run (an unknown log level, storage
// redis without an address), 1 when the store cannot be opened or the address bound.
// REQUIRES: SIGINT, SIGTERM and SIGUSR1 are blocked in every thread (call BlockShutdownSignals()
// first thing in main, before any thread starts).
int RunFabricUntilSignalled(const FabricConfig& config);
void BlockShutdownSignals();

}  // namespace perper::fabric
