// SPDX-License-Identifier: MIT
// The application manifest of `perper up` (YAML; format in docs/scaler.md): which Fabric to use,
// and for each agent type the command that serves it, its environment and its mode.
//
//   absl::StatusOr<Manifest> manifest = LoadManifest("examples/apps/hello.yaml");
//   // errors name the file and line: "hello.yaml:7: agents.Hello.mode: expected instance or pool"
//
// Plain data; no synchronization needed.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace perper::scaler {

enum class AgentMode {
  kInstance,  // one process per live instance (X_PERPER_INSTANCE set)
  kPool,      // min..max processes serving every instance of the type
};

struct AgentSpec {
  std::string name;  // the agent type
  // argv[0] is an absolute path, or a name looked up on PATH. With `image`: the container's
  // command as written (empty: the image's own), for `perper up --scaler compose`.
  std::vector<std::string> argv;
  std::string image;    // the container image; empty: a local process
  std::string command;  // argv[0] as the manifest wrote it (for messages)
  std::map<std::string, std::string> env;
  std::string workdir;  // absolute; default: the manifest's folder
  AgentMode mode = AgentMode::kInstance;
  int min = 0;                              // pool only
  int max = 1;                              // pool only
  int executions_per_process = 1;           // pool only: pending executions one process should take
  absl::Duration idle = absl::Seconds(5);   // pool only: below target this long, scale down
  absl::Duration grace = absl::Seconds(5);  // SIGTERM, then SIGKILL after this
  int line = 0;                             // where the agent is defined
};

struct FabricSpec {
  // A running Fabric to use (host:port). Empty: run one embedded in `perper up`.
  std::string address;
  // --scaler compose: the Fabric's image (default localhost/perper-fabric).
  std::optional<std::string> image;
  // Settings of the embedded Fabric: the keys of the Fabric's YAML config (docs/configuration.md).
  std::optional<std::string> config_file, listen, storage, data_dir, log_level;
  std::optional<size_t> max_value_size, max_stream_retained_bytes, stream_write_wait_ms;
  std::optional<bool> sync;
  // storage: redis only. The Redis deployment ("host:port[,host:port...]"), or "start": a
  // private redis-server on a free port for this run (the default).
  std::optional<std::string> redis;
  // How many embedded Fabric processes share it (a local cluster to try); agents are spread
  // over them. More than 1 needs storage: redis.
  int processes = 1;
};

struct Manifest {
  std::string path;  // the file read (empty when parsed from text)
  std::string dir;   // absolute folder that relative paths are resolved against
  std::string name;
  FabricSpec fabric;
  std::string deploy;  // the agent type whose process runs Deploy; empty: none
  std::vector<AgentSpec> agents;

  // The agent named `name`, or nullptr.
  const AgentSpec* Find(std::string_view name) const;
};

// Parses manifest text. `path` names the source in errors; `dir` is the folder relative paths
// are resolved against. `${VAR}` and `${VAR:-default}` in commands, env values and workdir are
// replaced from the environment. Errors are INVALID_ARGUMENT "<path>:<line>: <what>".
absl::StatusOr<Manifest> ParseManifest(std::string_view text, std::string_view path,
                                       std::string_view dir);

// Reads and parses the file at `path` (relative paths resolve against its folder).
absl::StatusOr<Manifest> LoadManifest(const std::string& path);

// Checks what the OS would refuse when starting each agent's process: its command must be an
// executable file and its workdir a folder. FAILED_PRECONDITION with the OS's reason, e.g.
// "agent Cart: command ./bin/cart: No such file or directory". `perper up` runs it before it
// starts anything, so a missing binary is not found by a process that keeps failing to start.
// Agents with an `image` run in containers and are not checked.
absl::Status CheckCommands(const Manifest& manifest);

// Replaces ${VAR} and ${VAR:-default} in `text` from the environment. An unset variable without
// a default is INVALID_ARGUMENT naming it.
absl::StatusOr<std::string> ExpandVariables(std::string_view text);

}  // namespace perper::scaler
