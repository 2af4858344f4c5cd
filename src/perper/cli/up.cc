// SPDX-License-Identifier: MIT
// `perper up` (the Fabric, the scaler and the application) and `perper fabric`.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <grpcpp/grpcpp.h>

#include "perper/cli/commands.h"
#include "perper/cli/destroy.h"
#include "perper/cli/fabric_client.h"
#include "perper/cli/local_redis.h"
#include "perper/common/fabric_endpoints.h"
#include "perper/common/files.h"
#include "perper/common/logging.h"
#include "perper/fabric/fabric_config.h"
#include "perper/fabric/fabric_server.h"
#include "perper/scaler/compose.h"
#include "perper/scaler/fabric_watchers.h"
#include "perper/scaler/manifest.h"
#include "perper/scaler/python_path.h"
#include "perper/scaler/supervisor.h"

namespace perper::cli {
namespace {

// The embedded Fabric's configuration: the manifest's fabric keys act as flags; `perper up`
// listens on a free loopback port and stores in memory unless told otherwise.
absl::StatusOr<fabric::FabricConfig> EmbeddedConfig(const scaler::FabricSpec& spec) {
  fabric::FabricConfigFlags flags;
  flags.config_file = spec.config_file;
  flags.listen = spec.listen;
  flags.storage = spec.storage;
  flags.data_dir = spec.data_dir;
  flags.log_level = spec.log_level;
  flags.max_value_size = spec.max_value_size;
  flags.max_stream_retained_bytes = spec.max_stream_retained_bytes;
  flags.stream_write_wait_ms = spec.stream_write_wait_ms;
  flags.sync = spec.sync;
  if (!flags.listen && !flags.config_file && std::getenv("PERPER_LISTEN") == nullptr) {
    flags.listen = "127.0.0.1:0";
  }
  if (!flags.storage && !flags.config_file && std::getenv("PERPER_STORAGE") == nullptr) {
    flags.storage = "memory";
  }
  return fabric::ResolveFabricConfig(flags);
}

// `.perper/fabric.address` in the application's folder while `perper up` runs, so that the
// inspection commands run there find its Fabric without --fabric (FindFabric). Removed when
// `perper up` ends, unless another `perper up` of the same folder has replaced it since.
class AppAddressFile {
 public:
  AppAddressFile(const std::string& app_dir, const std::string& address)
      : dir_(app_dir + "/" + kAppStateDir),
        path_(app_dir + "/" + kAppAddressFile),
        address_(address) {
    mkdir(dir_.c_str(), 0755);
    if (absl::Status s = WriteAddressFile(path_, address_); !s.ok()) {
      // Not fatal: the application runs; only finding its Fabric needs --fabric.
      PERPER_LOG_WARN(Logger::kScaler, "{}; give the inspection commands --fabric {}",
                      std::string(s.message()), address_);
      path_.clear();
    }
  }
  ~AppAddressFile() {
    if (path_.empty()) return;
    if (ReadAddressFile(path_) == address_) std::remove(path_.c_str());
    rmdir(dir_.c_str());  // Only when empty.
  }
  AppAddressFile(const AppAddressFile&) = delete;
  AppAddressFile& operator=(const AppAddressFile&) = delete;

 private:
  std::string dir_, path_, address_;
};

// `perper up --scaler compose`: the Fabric and the agents in containers (scaler/compose.h).
int RunComposeUp(const UpOptions& options, const scaler::Manifest& manifest) {
  if (!options.fabric.empty()) {
    std::fprintf(stderr, "perper up: --fabric: the compose scaler runs its own Fabric container\n");
    return 2;
  }
  scaler::ComposeOptions compose;
  compose.project = options.project;
  if (options.reset) {
    compose.before_deploy = [&manifest](std::shared_ptr<grpc::Channel> channel) {
      std::string instance = DeployInstance(manifest.deploy);
      DestroyResult reset = DestroyInstance(channel, instance, manifest.deploy,
                                            /*skip_stop=*/true, absl::Seconds(30));
      if (!reset.status.ok() && reset.status.error_code() != grpc::StatusCode::NOT_FOUND) {
        return absl::UnavailableError(absl::StrCat("--reset: destroying ", instance,
                                                   " failed: ", reset.status.error_message()));
      }
      return absl::OkStatus();
    };
  }
  // As with the local scaler, the inspection commands run in the application's folder find
  // the Fabric (here its published port) through .perper/fabric.address.
  std::unique_ptr<AppAddressFile> app_address_file;
  int address_file_error = 0;
  compose.on_fabric_ready = [&](const std::string& address) {
    if (!options.address_file.empty()) {
      if (absl::Status s = WriteAddressFile(options.address_file, address); !s.ok()) {
        PERPER_LOG_ERROR(Logger::kScaler, "--address-file: {}", std::string(s.message()));
        address_file_error = 1;
      }
    }
    app_address_file = std::make_unique<AppAddressFile>(manifest.dir, address);
  };
  scaler::ComposeScaler scaler(manifest, std::move(compose));
  int code = scaler.Run();
  app_address_file.reset();
  PERPER_LOG_INFO(Logger::kScaler, "stopped (exit code {})", code);
  return code != 0 ? code : address_file_error;
}

}  // namespace

int RunUp(const UpOptions& options) {
  // Before any thread exists: the supervisor takes these signals through a signalfd.
  scaler::BlockSupervisorSignals();
  auto manifest = scaler::LoadManifest(options.manifest);
  if (!manifest.ok()) {
    std::fprintf(stderr, "perper up: %s\n", std::string(manifest.status().message()).c_str());
    return 2;
  }
  if (options.reset && manifest->deploy.empty()) {
    std::fprintf(stderr, "perper up: --reset starts Deploy over, but %s names no deploy: agent\n",
                 options.manifest.c_str());
    return 2;
  }
  if (options.scaler == "compose") return RunComposeUp(options, *manifest);
  for (const scaler::AgentSpec& agent : manifest->agents) {
    if (!agent.image.empty()) {
      std::fprintf(stderr,
                   "perper up: %s:%d: agents.%s has an image: run it with --scaler compose\n",
                   options.manifest.c_str(), agent.line, agent.name.c_str());
      return 2;
    }
  }
  // Before anything starts: a command that cannot run would only show as a crash loop.
  if (absl::Status s = scaler::CheckCommands(*manifest); !s.ok()) {
    std::fprintf(stderr, "perper up: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::string address = !options.fabric.empty() ? options.fabric : manifest->fabric.address;
  if (!address.empty()) {
    auto addresses =
        ParseFabricEndpoints(address, !options.fabric.empty() ? "--fabric" : "fabric.address");
    if (!addresses.ok()) {
      std::fprintf(stderr, "perper up: %s\n", std::string(addresses.status().message()).c_str());
      return 2;
    }
    // The scaler and the processes it starts are given one address; a list would reach them
    // as a host name.
    if (addresses->size() != 1) {
      std::fprintf(stderr, "perper up: the Fabric address '%s' must be a single host:port\n",
                   address.c_str());
      return 2;
    }
    address = addresses->front();
  }
  // The embedded Fabric processes (several share one Redis: a local cluster), and the private
  // redis-server they use when the manifest says `redis: start` (destroyed last).
  std::unique_ptr<LocalRedis> local_redis;
  std::vector<std::unique_ptr<fabric::FabricServer>> servers;
  // Every agent process is given them all; the scaler's own calls use the first.
  std::string agent_addresses = address;
  if (address.empty()) {
    auto config = EmbeddedConfig(manifest->fabric);
    if (!config.ok()) {
      std::fprintf(stderr, "perper up: %s: fabric: %s\n", options.manifest.c_str(),
                   std::string(config.status().message()).c_str());
      return 2;
    }
    storage::StoreOptions& store = config->options.store;
    int processes = manifest->fabric.processes;
    if (store.kind != "redis" && (processes > 1 || manifest->fabric.redis.has_value())) {
      std::fprintf(stderr,
                   "perper up: %s: fabric: processes and redis need storage: redis (the "
                   "processes share their data through Redis)\n",
                   options.manifest.c_str());
      return 2;
    }
    if (store.kind == "redis") {
      std::string redis = manifest->fabric.redis.value_or(
          store.redis_addresses.empty() ? "start" : absl::StrJoin(store.redis_addresses, ","));
      if (redis == "start") {
        auto started = LocalRedis::Start();
        if (!started.ok()) {
          std::fprintf(stderr, "perper up: cannot start redis-server: %s\n",
                       std::string(started.status().message()).c_str());
          return 1;
        }
        local_redis = *std::move(started);
        store.redis_addresses = {local_redis->address()};
        PERPER_LOG_INFO(Logger::kScaler, "redis-server started on {} (its data ends with this run)",
                        local_redis->address());
      } else {
        store.redis_addresses = absl::StrSplit(redis, ',', absl::SkipWhitespace());
      }
    }
    // The Fabric's own logs stay quiet unless the manifest or PERPER_LOG_LEVEL asks for a level.
    if (absl::Status s = SetLogLevel(config->log_level); !s.ok()) {
      std::fprintf(stderr, "perper up: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    if (!manifest->fabric.log_level.has_value() && std::getenv("PERPER_LOG_LEVEL") == nullptr) {
      GetLogger(Logger::kFabric).set_level(spdlog::level::warn);
      GetLogger(Logger::kStorage).set_level(spdlog::level::warn);
    }
    std::vector<std::string> addresses;
    for (int i = 0; i < processes; ++i) {
      fabric::FabricOptions fabric_options = config->options;
      // One listen address serves one process; the others take free ports.
      if (i > 0) fabric_options.listen_address = "127.0.0.1:0";
      auto started = fabric::FabricServer::Start(fabric_options);
      if (!started.ok()) {
        std::fprintf(stderr, "perper up: cannot start the Fabric: %s\n",
                     std::string(started.status().message()).c_str());
        return 1;
      }
      addresses.push_back((*started)->address());
      servers.push_back(*std::move(started));
    }
    address = addresses.front();
    agent_addresses = absl::StrJoin(addresses, ",");
    if (processes == 1) {
      PERPER_LOG_INFO(Logger::kScaler, "Fabric ({} storage) listening on {}", store.kind, address);
    } else {
      PERPER_LOG_INFO(Logger::kScaler, "{} Fabric processes (redis storage on {}) listening on {}",
                      processes, absl::StrJoin(store.redis_addresses, ","), agent_addresses);
    }
  } else {
    PERPER_LOG_INFO(Logger::kScaler, "using the Fabric at {}", address);
  }
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  // Before any process starts: nothing serves the old instances, so they go without Stop.
  if (options.reset) {
    std::string instance = DeployInstance(manifest->deploy);
    DestroyResult reset = DestroyInstance(channel, instance, manifest->deploy,
                                          /*skip_stop=*/true, absl::Seconds(30));
    if (reset.status.error_code() == grpc::StatusCode::NOT_FOUND) {
      PERPER_LOG_INFO(Logger::kScaler, "reset: no earlier Deploy of {} on this Fabric",
                      manifest->deploy);
    } else if (!reset.status.ok()) {
      std::fprintf(stderr, "perper up: --reset: destroying %s failed: %s\n", instance.c_str(),
                   reset.status.error_message().c_str());
      return 1;
    } else {
      PERPER_LOG_INFO(Logger::kScaler,
                      "reset: destroyed {} (the instances the earlier Deploy started, its "
                      "executions and state); Deploy runs anew",
                      instance);
    }
  }
  if (!options.address_file.empty()) {
    if (absl::Status s = WriteAddressFile(options.address_file, agent_addresses); !s.ok()) {
      std::fprintf(stderr, "perper up: --address-file: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  AppAddressFile app_address_file(manifest->dir, agent_addresses);

  scaler::SupervisorOptions supervisor_options;
  supervisor_options.fabric_address = agent_addresses;
  supervisor_options.log_dir = options.log_dir;
  supervisor_options.python_path = scaler::BundledPythonPath();
  scaler::Supervisor supervisor(*manifest, supervisor_options);
  if (absl::Status s = supervisor.Init(); !s.ok()) {
    std::fprintf(stderr, "perper up: %s\n", std::string(s.message()).c_str());
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::vector<std::string> pools;
  int max_pending = 1;
  for (const scaler::AgentSpec& agent : manifest->agents) {
    if (agent.mode != scaler::AgentMode::kPool) continue;
    pools.push_back(agent.name);
    max_pending = std::max(max_pending, agent.max * agent.executions_per_process + 1);
  }
  auto registry = std::make_unique<scaler::RegistryWatcher>(channel, supervisor);
  std::unique_ptr<scaler::PoolMonitor> monitor;
  if (!pools.empty()) {
    monitor = std::make_unique<scaler::PoolMonitor>(channel, supervisor, pools, max_pending,
                                                    absl::Milliseconds(200));
  }
  PERPER_LOG_INFO(Logger::kScaler, "application {} is up ({} agent types)",
                  manifest->name.empty() ? options.manifest : manifest->name,
                  manifest->agents.size());
  int code = supervisor.Run();  // every agent process has exited when it returns
  registry->Stop();
  if (monitor) monitor->Stop();
  for (auto& server : servers) server->Shutdown(absl::Seconds(1));
  servers.clear();
  PERPER_LOG_INFO(Logger::kScaler, "stopped (exit code {})", code);
  return code;
}

int RunFabric(const fabric::FabricConfigFlags& flags) {
  fabric::BlockShutdownSignals();
  auto config = fabric::ResolveFabricConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "perper fabric: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  return fabric::RunFabricUntilSignalled(*config);
}

}  // namespace perper::cli
