// SPDX-License-Identifier: MIT
// The process supervisor of the local scaler: starts, watches and stops the agent processes of
// one application manifest.
//
// - the Deploy agent: one process, started at once, with X_PERPER_RECORD_DEPLOY=1 (the SDK
//   records Deploy, so it is not run again once finished); when it exits, everything stops and
//   Run() returns its exit code;
// - per-instance agents: one process per live instance (X_PERPER_INSTANCE set), started when
//   AddInstance/SetInstances reports the instance and stopped when it is removed;
// - pool agents: between min and max processes, following SetPending (see PoolPolicy).
// A process that exits while it is still wanted is restarted with back-off (RestartPolicy); a
// crash loop is logged as an error. Stopping a process is SIGTERM to its process group, then
// SIGKILL after the agent's grace period. Each line a process writes is forwarded prefixed with
// "[agent=A instance=I pid=P] " (and kept in <log_dir>/<agent>.<instance>.log when log_dir is
// set).
//
//   Supervisor supervisor(manifest, {.fabric_address = address});
//   PERPER_RETURN_IF_ERROR(supervisor.Init());
//   RegistryWatcher watcher(channel, supervisor);   // feeds AddInstance/RemoveInstance
//   int code = supervisor.Run();                    // until Deploy exits or SIGINT/SIGTERM
//
// Thread model: Init and Run are called on the main thread, which owns every process and file
// descriptor (children are forked from it, so their parent-death signal follows the process).
// SIGINT, SIGTERM and SIGCHLD must be blocked in every thread before any thread starts (see
// BlockSupervisorSignals); Run receives them through a signalfd. AddInstance, RemoveInstance,
// SetInstances, SetPending and RequestStop may be called from any thread: they queue an event
// and wake the loop.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "perper/scaler/manifest.h"
#include "perper/scaler/pool_policy.h"
#include "perper/scaler/restart_policy.h"

namespace perper::scaler {

struct SupervisorOptions {
  std::string fabric_address;  // given to agents as PERPER_FABRIC_ENDPOINT
  std::string log_dir;         // empty: no log files
  std::string python_path;     // appended to the agents' PYTHONPATH (python_path.h); may be ""
  RestartSettings restart;
};

// A live instance: the Registry execution `id`, whose `instance` field names the agent type.
struct InstanceInfo {
  std::string id;
  std::string agent;
};

// What the Fabric watchers (fabric_watchers.h) report to a scaler: the live instances and the
// pending executions of pool agents. Implementations are thread-safe.
class ScalerEvents {
 public:
  virtual ~ScalerEvents() = default;
  // A full list of live instances (after a (re)connection): instances missing from it are gone.
  virtual void SetInstances(std::vector<InstanceInfo> instances) = 0;
  virtual void AddInstance(InstanceInfo instance) = 0;
  virtual void RemoveInstance(std::string id) = 0;
  // The number of unfinished executions of a pool agent type.
  virtual void SetPending(std::string agent, int pending) = 0;
};

// ScalerEvents for a scaler that runs one loop: each call queues an event and wakes the loop
// through an eventfd (poll event_fd()); the loop takes the queue with TakeEvents. The calls are
// thread-safe; InitEvents and TakeEvents belong to the loop's thread.
class QueuedScalerEvents : public ScalerEvents {
 public:
  struct Event {
    enum Kind { kSnapshot, kAdd, kRemove, kPending, kStop } kind;
    std::vector<InstanceInfo> instances;  // kSnapshot, kAdd (one)
    std::string id;                       // kRemove: the instance; kPending: the agent
    int pending = 0;
  };
  ~QueuedScalerEvents() override;

  void SetInstances(std::vector<InstanceInfo> instances) override;
  void AddInstance(InstanceInfo instance) override;
  void RemoveInstance(std::string id) override;
  void SetPending(std::string agent, int pending) override;

 protected:
  absl::Status InitEvents();  // creates the eventfd
  int event_fd() const { return event_fd_; }
  void Post(Event event);
  std::vector<Event> TakeEvents();  // and clears the eventfd

 private:
  int event_fd_ = -1;
  absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

// Blocks SIGINT, SIGTERM and SIGCHLD in the calling thread (and threads it starts later).
void BlockSupervisorSignals();

// In a child a scaler has just forked (before exec): its own process group, `death_signal`
// when `parent` dies, no blocked signals, stdin from `null_fd` (if >= 0). False when the parent
// is gone already: the child should _exit. Async-signal-safe.
bool PrepareScalerChild(pid_t parent, int death_signal, int null_fd);

class Supervisor : public QueuedScalerEvents {
 public:
  // Keeps a reference to `manifest`, which must outlive the supervisor.
  Supervisor(const Manifest& manifest, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Creates the signalfd and the wake-up eventfd. Call on the main thread, before Run.
  absl::Status Init();

  // Starts Deploy and the pools' minimum, then supervises until Deploy exits (returns its exit
  // code: the code, or 128 + signal number), or until SIGINT, SIGTERM or RequestStop (returns
  // 0). Every process is stopped before it returns.
  int Run();

  // Thread-safe, as SetInstances (instances missing from its list are stopped), AddInstance,
  // RemoveInstance and SetPending.
  void RequestStop();

 private:
  struct Slot;
  struct LogStream;
  struct Pool;

  void HandleEvents();
  void HandleSignals();
  void ReadLog(int fd);
  void CloseLog(int fd);
  // Keeps `line` as one of the last stderr lines of the log's slot (for crash reports).
  void NoteError(const LogStream& log, std::string_view line);
  void Reaped(pid_t pid, int status);
  void OnTimers();
  void BeginShutdown();

  void EnsureInstance(const InstanceInfo& instance);
  void ReconcilePool(const std::string& agent);
  void AddSlot(std::string key, const AgentSpec& spec, std::string label, std::string instance,
               bool deploy);
  void StopSlot(Slot& slot);
  void Spawn(Slot& slot);
  std::optional<absl::Time> NextDeadline() const;

  const Manifest& manifest_;
  SupervisorOptions options_;
  int signal_fd_ = -1;

  // Loop-thread state.
  std::map<std::string, std::unique_ptr<Slot>> slots_;  // by key
  std::map<pid_t, std::string> pids_;                   // live pid -> slot key
  std::map<int, std::unique_ptr<LogStream>> logs_;      // by pipe fd
  std::map<std::string, std::unique_ptr<Pool>> pools_;  // by agent type
  std::map<std::string, std::string> unserved_;         // instance -> agent, logged once
  bool stopping_ = false;
  bool force_killed_ = false;
  std::optional<absl::Time> drain_until_;
  std::optional<int> deploy_exit_code_;
  std::optional<int> stopped_by_signal_;  // The first SIGINT or SIGTERM; Run returns 128 + it.
};

}  // namespace perper::scaler
