// SPDX-License-Identifier: MIT
// The Docker Compose scaler of `perper up --scaler compose` (docs/containers.md): runs the
// Fabric and the agents of a manifest as containers on one machine through docker-compose
// (against podman's Docker API, DOCKER_HOST). It writes a compose file into a project folder
// and runs `docker-compose -p <project> ...`:
//
// - the Fabric: service `fabric` (the manifest's fabric.image, default localhost/perper-fabric),
//   its port 40400 published on 127.0.0.1:<free port>, which the scaler itself uses;
// - the Deploy agent: one container, attached (`up --exit-code-from`): when it exits, everything
//   stops and Run returns its exit code;
// - instance agents: one service per live instance, `<agent>-<hash of the instance>`, started
//   when its Registry execution appears, removed (`up --remove-orphans`) when it is deleted;
// - pool agents: one service `<agent>`, `--scale`d between min and max by PoolPolicy;
// - every agent gets PERPER_FABRIC_ENDPOINT=fabric:40400, X_PERPER_AGENT (and
//   X_PERPER_INSTANCE); instance and pool containers have `restart: always`, so podman starts
//   a container whose process died again; one stopped otherwise (`podman kill`, `podman stop`)
//   is started by the scaler (`up -d`), which watches the engine's container events (its
//   /events API, through curl) and waits as RestartPolicy says;
// - SIGINT/SIGTERM or Deploy's exit: `docker-compose down` removes the containers and network.
// Each service's output is forwarded by a `docker-compose logs -f` child ("svc_1 | line").
//
// Thread model: Run is called on the main thread with SIGINT, SIGTERM and SIGCHLD blocked in
// every thread (BlockSupervisorSignals); it owns the docker-compose child processes. The
// ScalerEvents methods may be called from any thread (QueuedScalerEvents).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/grpcpp.h>

#include "perper/scaler/manifest.h"
#include "perper/scaler/pool_policy.h"
#include "perper/scaler/restart_policy.h"
#include "perper/scaler/supervisor.h"

namespace perper::scaler {

struct ComposeOptions {
  std::string project;  // docker-compose's project name; empty: from the manifest's name
  std::string dir;      // the project folder (compose file); empty: <manifest dir>/.perper/compose
  // Runs once the Fabric answers, before Deploy starts (`perper up --reset`); an error stops.
  std::function<absl::Status(std::shared_ptr<grpc::Channel>)> before_deploy;
  // Called with the Fabric's published address (127.0.0.1:port) once it answers.
  std::function<void(const std::string&)> on_fabric_ready;
};

// The compose service of an instance: "<agent>-<10 hex digits of a hash of the instance>",
// lower case, characters outside [a-z0-9-] replaced by '-'.
std::string InstanceServiceName(std::string_view agent, std::string_view instance);

class ComposeScaler : public QueuedScalerEvents {
 public:
  // Keeps a reference to `manifest`, which must outlive the scaler.
  ComposeScaler(const Manifest& manifest, ComposeOptions options);
  ~ComposeScaler() override;
  ComposeScaler(const ComposeScaler&) = delete;
  ComposeScaler& operator=(const ComposeScaler&) = delete;

  // Checks what it needs (docker-compose on PATH, DOCKER_HOST, what the manifest asks), then
  // runs the application until Deploy exits (its exit code), or SIGINT/SIGTERM (128 + the
  // signal). Returns 1 (2 for a manifest problem) with a message on stderr when it cannot start.
  int Run();

 private:
  struct Pool {
    explicit Pool(const AgentSpec& spec)
        : policy(spec.min, spec.max, spec.executions_per_process, spec.idle) {}
    PoolPolicy policy;
    int pending = 0;
    int running = 0;
  };

  // Applies queued events; true when the wanted set of containers changed.
  bool HandleEvents();
  bool ReconcilePools();
  absl::Status WriteComposeFile();
  // `docker-compose -p P -f F <args>`, waited for; its output is in the error when it fails.
  absl::Status Compose(const std::vector<std::string>& args);
  // The same, answering what it printed.
  absl::StatusOr<std::string> ComposeOutput(const std::vector<std::string>& args);
  // Attaches to Deploy's container (`up --exit-code-from`): its output is forwarded, and the
  // attached process exits with Deploy's exit code.
  void AttachDeploy();
  // Starts `docker-compose -p P -f F <args>` with its stdout and stderr on `output_fd` (-1:
  // ours); returns its pid, or -1.
  pid_t ComposeChild(const std::vector<std::string>& args, int output_fd = -1);
  absl::Status Reconcile();
  void FollowLogs();
  // Reads the events child's lines; a wanted container that died is started again.
  void ReadEvents();
  // Starts the events child: the engine's /events of this project's containers, one JSON
  // object a line (`docker-compose events` would know only the services of the file it read).
  void WatchEvents();
  pid_t Child(std::vector<std::string> argv, int output_fd);
  void OnContainerEvent(const std::string& action, const std::string& service,
                        const std::string& exit_code);
  void ReapChildren();
  void Shutdown();

  const Manifest& manifest_;
  ComposeOptions options_;
  std::string compose_file_;
  int fabric_port_ = 0;
  int signal_fd_ = -1;

  // Loop-thread state.
  std::map<std::string, InstanceInfo> instances_;  // by service name
  std::map<std::string, Pool> pools_;              // by agent type
  std::set<std::string> warned_;                   // instances of unknown types, logged once
  std::map<std::string, pid_t> followers_;         // service -> its `logs -f` child
  std::set<std::string> followed_;                 // services whose logs were shown from start
  std::map<std::string, int> follower_failures_;   // service -> `logs -f` that ended in error
  pid_t events_pid_ = -1;                          // curl of the engine's /events
  int events_fd_ = -1;
  std::string events_buffer_;
  std::map<std::string, RestartPolicy> restarts_;  // by service
  std::map<std::string, absl::Time> started_;      // by service: its container's last start
  std::optional<absl::Time> restart_at_;           // when to `up -d` the died containers
  pid_t deploy_pid_ = -1;
  int deploy_attachments_ = 0;
  std::optional<int> deploy_exit_code_;
  std::optional<int> stopped_by_signal_;
};

}  // namespace perper::scaler
