// SPDX-License-Identifier: MIT
#include "perper/scaler/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

#include "perper/common/logging.h"
#include "perper/scaler/python_path.h"

extern char** environ;

namespace perper::scaler {

struct Supervisor::Slot {
  std::string key;
  const AgentSpec* spec = nullptr;
  std::string label;     // shown as instance=...
  std::string instance;  // X_PERPER_INSTANCE, or empty
  bool deploy = false;
  pid_t pid = -1;
  absl::Time started;
  bool wanted = true;  // false once stopping: not restarted, removed when it exits
  std::optional<absl::Time> kill_at;
  std::optional<absl::Time> restart_at;
  RestartPolicy policy;
  // The last lines the current (or last) process wrote to stderr: why it exited, usually.
  std::deque<std::string> last_errors;
};

struct Supervisor::LogStream {
  std::string slot;  // the key of the slot whose process writes it
  bool err = false;  // its stderr
  std::string prefix;
  int out_fd = 1;  // where prefixed lines go (1 or 2)
  int file_fd = -1;
  std::string buffer;
};

struct Supervisor::Pool {
  explicit Pool(const AgentSpec& spec)
      : policy(spec.min, spec.max, spec.executions_per_process, spec.idle) {}
  PoolPolicy policy;
  int pending = 0;
  int next_index = 1;
  std::vector<std::string> slots;  // wanted slot keys, oldest first
};

namespace {

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string Describe(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return absl::StrCat("was killed by signal ", WTERMSIG(status),
                        name != nullptr ? absl::StrCat(" (SIG", name, ")") : "");
  }
  return "ended";
}

// How many of a process's last stderr lines a crash report quotes, and how much of each.
constexpr size_t kLastErrorLines = 3;
constexpr size_t kLastErrorLineBytes = 300;

// " (last stderr: a | b)" for a crash report, or "" when the process wrote nothing there.
std::string LastErrors(const std::deque<std::string>& lines) {
  if (lines.empty()) return "";
  std::string joined;
  for (const std::string& line : lines) absl::StrAppend(&joined, joined.empty() ? "" : " | ", line);
  return absl::StrCat("; last stderr: ", joined);
}

std::string FileSafe(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '/' || c == '\0') c = '_';
  }
  return out;
}

}  // namespace

void BlockSupervisorSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

bool PrepareScalerChild(pid_t parent, int death_signal, int null_fd) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, death_signal);
  if (getppid() != parent) return false;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (null_fd >= 0) dup2(null_fd, 0);
  return true;
}

Supervisor::Supervisor(const Manifest& manifest, SupervisorOptions options)
    : manifest_(manifest), options_(std::move(options)) {}

Supervisor::~Supervisor() {
  // Run() stops every process; if it was never run, nothing was started.
  for (auto& [fd, log] : logs_) {
    close(fd);
    if (log->file_fd >= 0) close(log->file_fd);
  }
  if (signal_fd_ >= 0) close(signal_fd_);
}

absl::Status Supervisor::Init() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD);
  signal_fd_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));
  if (absl::Status s = InitEvents(); !s.ok()) return s;
  if (!options_.log_dir.empty()) {
    mkdir(options_.log_dir.c_str(), 0755);
    struct stat info;
    if (stat(options_.log_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--log-dir ", options_.log_dir, " is not a directory"));
    }
  }
  return absl::OkStatus();
}

QueuedScalerEvents::~QueuedScalerEvents() {
  if (event_fd_ >= 0) close(event_fd_);
}

absl::Status QueuedScalerEvents::InitEvents() {
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  return absl::OkStatus();
}

void QueuedScalerEvents::Post(Event event) {
  {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  uint64_t one = 1;
  (void)!write(event_fd_, &one, sizeof(one));
}

std::vector<QueuedScalerEvents::Event> QueuedScalerEvents::TakeEvents() {
  uint64_t count;
  (void)!read(event_fd_, &count, sizeof(count));
  std::vector<Event> events;
  absl::MutexLock lock(&mu_);
  events.swap(events_);
  return events;
}

void QueuedScalerEvents::SetInstances(std::vector<InstanceInfo> instances) {
  Post(Event{Event::kSnapshot, std::move(instances), "", 0});
}
void QueuedScalerEvents::AddInstance(InstanceInfo instance) {
  Post(Event{Event::kAdd, {std::move(instance)}, "", 0});
}
void QueuedScalerEvents::RemoveInstance(std::string id) {
  Post(Event{Event::kRemove, {}, std::move(id), 0});
}
void QueuedScalerEvents::SetPending(std::string agent, int pending) {
  Post(Event{Event::kPending, {}, std::move(agent), pending});
}
void Supervisor::RequestStop() { Post(Event{Event::kStop, {}, "", 0}); }

int Supervisor::Run() {
  if (!manifest_.deploy.empty()) {
    const AgentSpec* deploy = manifest_.Find(manifest_.deploy);
    AddSlot("deploy", *deploy, "deploy", "", /*deploy=*/true);
  }
  for (const AgentSpec& agent : manifest_.agents) {
    if (agent.mode != AgentMode::kPool) continue;
    pools_[agent.name] = std::make_unique<Pool>(agent);
    ReconcilePool(agent.name);
  }
  while (true) {
    if (stopping_ && pids_.empty()) {
      if (logs_.empty()) break;
      absl::Time now = absl::Now();
      if (!drain_until_.has_value()) drain_until_ = now + absl::Milliseconds(500);
      if (now >= *drain_until_) break;
    }
    std::vector<pollfd> fds;
    fds.push_back({signal_fd_, POLLIN, 0});
    fds.push_back({event_fd(), POLLIN, 0});
    for (const auto& [fd, log] : logs_) fds.push_back({fd, POLLIN, 0});
    int timeout_ms = -1;
    if (auto deadline = NextDeadline(); deadline.has_value()) {
      absl::Duration wait = *deadline - absl::Now();
      timeout_ms =
          static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(wait) + 1, 0, 60'000));
    }
    int ready = poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      PERPER_LOG_ERROR(Logger::kScaler, "poll failed: {}", strerror(errno));
      BeginShutdown();
    }
    if (ready > 0) {
      if (fds[0].revents != 0) HandleSignals();
      if (fds[1].revents != 0) HandleEvents();
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents != 0) ReadLog(fds[i].fd);
      }
    }
    OnTimers();
  }
  for (auto it = logs_.begin(); it != logs_.end();) CloseLog((it++)->first);
  // Stopped by a signal: 128 + its number, as a shell reports a process the signal ended, so
  // that a script sees the application was interrupted.
  if (stopped_by_signal_.has_value()) return 128 + *stopped_by_signal_;
  return deploy_exit_code_.value_or(0);
}

std::optional<absl::Time> Supervisor::NextDeadline() const {
  std::optional<absl::Time> next;
  auto consider = [&next](std::optional<absl::Time> t) {
    if (t.has_value() && (!next.has_value() || *t < *next)) next = t;
  };
  for (const auto& [key, slot] : slots_) {
    consider(slot->kill_at);
    consider(slot->restart_at);
  }
  // Pools re-evaluate their target while they run more than their minimum (idle scale-down).
  for (const auto& [agent, pool] : pools_) {
    if (static_cast<int>(pool->slots.size()) > pool->policy.min()) {
      consider(absl::Now() + absl::Milliseconds(200));
    }
  }
  if (stopping_ && pids_.empty()) consider(drain_until_.value_or(absl::Now()));
  return next;
}

void Supervisor::HandleSignals() {
  signalfd_siginfo info;
  bool child = false;
  while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
    if (info.ssi_signo == SIGCHLD) {
      child = true;
    } else if (!stopping_) {
      PERPER_LOG_INFO(Logger::kScaler, "received {}, stopping the application",
                      info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
      stopped_by_signal_ = static_cast<int>(info.ssi_signo);
      BeginShutdown();
    } else if (!force_killed_) {
      PERPER_LOG_WARN(Logger::kScaler, "second signal: killing every agent process now");
      force_killed_ = true;
      for (const auto& [pid, key] : pids_) kill(-pid, SIGKILL);
    }
  }
  if (child) {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) Reaped(pid, status);
  }
}

void Supervisor::HandleEvents() {
  for (Event& event : TakeEvents()) {
    if (event.kind == Event::kStop) {
      if (!stopping_) PERPER_LOG_INFO(Logger::kScaler, "stop requested");
      BeginShutdown();
    }
    if (stopping_) continue;
    switch (event.kind) {
      case Event::kSnapshot: {
        std::set<std::string> live;
        for (const InstanceInfo& instance : event.instances) {
          live.insert("instance:" + instance.id);
          EnsureInstance(instance);
        }
        for (auto& [key, slot] : slots_) {
          if (key.rfind("instance:", 0) == 0 && slot->wanted && live.count(key) == 0) {
            PERPER_LOG_INFO(Logger::kScaler, "[agent={} instance={}] instance is gone: stopping",
                            slot->spec->name, slot->label);
            StopSlot(*slot);
          }
        }
        break;
      }
      case Event::kAdd:
        EnsureInstance(event.instances.front());
        break;
      case Event::kRemove: {
        unserved_.erase(event.id);
        auto it = slots_.find("instance:" + event.id);
        if (it != slots_.end() && it->second->wanted) {
          PERPER_LOG_INFO(Logger::kScaler, "[agent={} instance={}] instance destroyed: stopping",
                          it->second->spec->name, event.id);
          StopSlot(*it->second);
        }
        break;
      }
      case Event::kPending: {
        auto it = pools_.find(event.id);
        if (it != pools_.end()) {
          it->second->pending = event.pending;
          ReconcilePool(event.id);
        }
        break;
      }
      case Event::kStop:
        break;
    }
  }
  // Slots stopped while they had no process (waiting for a restart) are removed at once.
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (!it->second->wanted && it->second->pid < 0) {
      it = slots_.erase(it);
    } else {
      ++it;
    }
  }
}

void Supervisor::EnsureInstance(const InstanceInfo& instance) {
  const AgentSpec* spec = manifest_.Find(instance.agent);
  if (spec == nullptr || spec->mode != AgentMode::kInstance || spec->name == manifest_.deploy) {
    if (spec == nullptr && unserved_.emplace(instance.id, instance.agent).second) {
      PERPER_LOG_WARN(Logger::kScaler,
                      "[agent={} instance={}] no agent in the manifest serves this type",
                      instance.agent, instance.id);
    }
    return;  // served by the pool or by the Deploy process, or by no one
  }
  std::string key = "instance:" + instance.id;
  auto it = slots_.find(key);
  if (it != slots_.end()) {
    if (it->second->wanted) return;
    // Destroyed and created again while its old process is still stopping: start another one
    // under a fresh key once this one is gone. Rare; the old slot keeps its key until reaped.
    it->second->key = key + "#old";
    auto old = std::move(it->second);
    slots_.erase(it);
    if (old->pid > 0) pids_[old->pid] = old->key;
    slots_[old->key] = std::move(old);
  }
  AddSlot(key, *spec, instance.id, instance.id, /*deploy=*/false);
}

void Supervisor::ReconcilePool(const std::string& agent) {
  Pool& pool = *pools_.at(agent);
  const AgentSpec& spec = *manifest_.Find(agent);
  int running = static_cast<int>(pool.slots.size());
  int target = pool.policy.Target(pool.pending, running, absl::Now());
  if (target == running) return;
  PERPER_LOG_INFO(Logger::kScaler, "[agent={}] scaling from {} to {} processes ({} pending)", agent,
                  running, target, pool.pending);
  while (static_cast<int>(pool.slots.size()) < target) {
    std::string label = absl::StrCat("pool-", pool.next_index++);
    std::string key = absl::StrCat("pool:", agent, ":", label);
    pool.slots.push_back(key);
    AddSlot(key, spec, label, "", /*deploy=*/false);
  }
  while (static_cast<int>(pool.slots.size()) > target) {
    std::string key = pool.slots.back();
    pool.slots.pop_back();
    auto it = slots_.find(key);
    if (it != slots_.end()) StopSlot(*it->second);
  }
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (!it->second->wanted && it->second->pid < 0) {
      it = slots_.erase(it);
    } else {
      ++it;
    }
  }
}

void Supervisor::AddSlot(std::string key, const AgentSpec& spec, std::string label,
                         std::string instance, bool deploy) {
  auto slot = std::make_unique<Slot>();
  slot->key = key;
  slot->spec = &spec;
  slot->label = std::move(label);
  slot->instance = std::move(instance);
  slot->deploy = deploy;
  slot->policy = RestartPolicy(options_.restart);
  Slot& ref = *slot;
  slots_[key] = std::move(slot);
  Spawn(ref);
}

void Supervisor::StopSlot(Slot& slot) {
  slot.wanted = false;
  slot.restart_at.reset();
  if (slot.pid > 0 && !slot.kill_at.has_value()) {
    kill(-slot.pid, SIGTERM);
    slot.kill_at = absl::Now() + slot.spec->grace;
  }
}

void Supervisor::BeginShutdown() {
  if (stopping_) return;
  stopping_ = true;
  for (auto it = slots_.begin(); it != slots_.end();) {
    Slot& slot = *it->second;
    if (slot.pid > 0) {
      StopSlot(slot);
      ++it;
    } else {
      it = slots_.erase(it);
    }
  }
}

void Supervisor::Spawn(Slot& slot) {
  const AgentSpec& spec = *slot.spec;
  slot.restart_at.reset();
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are made.
  std::vector<std::string> env_strings;
  std::set<std::string> overridden;
  auto add = [&](const std::string& name, const std::string& value) {
    overridden.insert(name);
    env_strings.push_back(name + "=" + value);
  };
  add("PERPER_FABRIC_ENDPOINT", options_.fabric_address);
  add("X_PERPER_AGENT", spec.name);
  if (!slot.instance.empty()) add("X_PERPER_INSTANCE", slot.instance);
  if (!options_.python_path.empty()) {
    auto own = spec.env.find("PYTHONPATH");
    const char* inherited = std::getenv("PYTHONPATH");
    add("PYTHONPATH", AgentPythonPath(own != spec.env.end()  ? own->second
                                      : inherited != nullptr ? inherited
                                                             : "",
                                      options_.python_path));
  }
  for (const auto& [name, value] : spec.env) {
    if (overridden.count(name) == 0) add(name, value);
  }
  // The SDK records Deploy as an execution, so a finished Deploy is not run again after a
  // restart on durable storage (the manifest's env may turn it off with "0").
  if (slot.deploy && overridden.count("X_PERPER_RECORD_DEPLOY") == 0) {
    add("X_PERPER_RECORD_DEPLOY", "1");
  }
  if (slot.instance.empty()) overridden.insert("X_PERPER_INSTANCE");
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::string name(entry.substr(0, entry.find('=')));
    if (overridden.count(name) == 0) env_strings.emplace_back(entry);
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  // The reason is looked up in the child (errno is known only there); strerrordesc_np reads a
  // constant table, unlike strerror, so it is safe between fork and exec.
  std::string exec_error = absl::StrCat("perper: cannot run ", spec.argv[0], ": ");
  std::string chdir_error = absl::StrCat("perper: cannot enter ", spec.workdir, ": ");

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    PERPER_LOG_ERROR(Logger::kScaler, "[agent={} instance={}] pipe: {}", spec.name, slot.label,
                     strerror(errno));
    slot.restart_at = absl::Now() + absl::Seconds(1);
    return;
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    if (!PrepareScalerChild(parent, SIGKILL, null_fd)) _exit(1);
    dup2(out[1], 1);
    dup2(err[1], 2);
    auto fail = [](const std::string& what) {
      const char* reason = strerrordesc_np(errno);
      (void)!write(2, what.data(), what.size());
      if (reason != nullptr) (void)!write(2, reason, strlen(reason));
      (void)!write(2, "\n", 1);
      _exit(127);
    };
    if (chdir(spec.workdir.c_str()) != 0) fail(chdir_error);
    execve(argv[0], argv.data(), envp.data());
    fail(exec_error);
  }
  if (null_fd >= 0) close(null_fd);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    PERPER_LOG_ERROR(Logger::kScaler, "[agent={} instance={}] fork: {}", spec.name, slot.label,
                     strerror(errno));
    close(out[0]);
    close(err[0]);
    slot.restart_at = absl::Now() + absl::Seconds(1);
    return;
  }
  setpgid(pid, pid);
  slot.pid = pid;
  slot.started = absl::Now();
  slot.kill_at.reset();
  slot.last_errors.clear();
  pids_[pid] = slot.key;
  std::string prefix =
      absl::StrCat("[agent=", spec.name, " instance=", slot.label, " pid=", pid, "] ");
  int file_fd = -1;
  if (!options_.log_dir.empty()) {
    std::string path =
        absl::StrCat(options_.log_dir, "/", FileSafe(spec.name), ".", FileSafe(slot.label), ".log");
    file_fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  for (int i = 0; i < 2; ++i) {
    int fd = i == 0 ? out[0] : err[0];
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    auto log = std::make_unique<LogStream>();
    log->slot = slot.key;
    log->err = i == 1;
    log->prefix = prefix;
    log->out_fd = i == 0 ? 1 : 2;
    log->file_fd = (i == 0 || file_fd < 0) ? file_fd : dup(file_fd);
    logs_[fd] = std::move(log);
  }
  PERPER_LOG_INFO(Logger::kScaler, "[agent={} instance={} pid={}] started {}", spec.name,
                  slot.label, pid, spec.argv[0]);
}

void Supervisor::ReadLog(int fd) {
  // Closed already when a reaped process's pipes were drained (Reaped) in this round of poll.
  auto it = logs_.find(fd);
  if (it == logs_.end()) return;
  LogStream& log = *it->second;
  char buffer[8192];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      CloseLog(fd);
      return;
    }
    log.buffer.append(buffer, static_cast<size_t>(n));
    size_t start = 0, end;
    while ((end = log.buffer.find('\n', start)) != std::string::npos) {
      std::string line = log.buffer.substr(start, end - start + 1);
      WriteAll(log.out_fd, absl::StrCat(log.prefix, line));
      if (log.file_fd >= 0) WriteAll(log.file_fd, line);
      NoteError(log, line);
      start = end + 1;
    }
    log.buffer.erase(0, start);
  }
}

void Supervisor::NoteError(const LogStream& log, std::string_view line) {
  if (!log.err) return;
  auto it = slots_.find(log.slot);
  if (it == slots_.end()) return;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.empty()) return;
  std::deque<std::string>& lines = it->second->last_errors;
  lines.emplace_back(line.substr(0, kLastErrorLineBytes));
  if (lines.size() > kLastErrorLines) lines.pop_front();
}

void Supervisor::CloseLog(int fd) {
  auto it = logs_.find(fd);
  if (it == logs_.end()) return;
  LogStream& log = *it->second;
  if (!log.buffer.empty()) {
    WriteAll(log.out_fd, absl::StrCat(log.prefix, log.buffer, "\n"));
    if (log.file_fd >= 0) WriteAll(log.file_fd, log.buffer + "\n");
    NoteError(log, log.buffer);
  }
  if (log.file_fd >= 0) close(log.file_fd);
  close(fd);
  logs_.erase(it);
}

void Supervisor::Reaped(pid_t pid, int status) {
  auto pit = pids_.find(pid);
  if (pit == pids_.end()) return;
  std::string key = pit->second;
  pids_.erase(pit);
  auto it = slots_.find(key);
  if (it == slots_.end()) return;
  // What the process wrote last is in its pipes already (it has exited): read it before the
  // exit is reported, so the report can quote it.
  std::vector<int> fds;
  for (const auto& [fd, log] : logs_) {
    if (log->slot == key) fds.push_back(fd);
  }
  for (int fd : fds) ReadLog(fd);
  Slot& slot = *it->second;
  absl::Time now = absl::Now();
  slot.pid = -1;
  slot.kill_at.reset();
  const std::string& agent = slot.spec->name;
  if (slot.deploy && !stopping_) {
    deploy_exit_code_ = ExitCode(status);
    PERPER_LOG_INFO(Logger::kScaler,
                    "[agent={} instance={} pid={}] Deploy {}: stopping the "
                    "application",
                    agent, slot.label, pid, Describe(status));
    slots_.erase(it);
    BeginShutdown();
    return;
  }
  if (stopping_ || !slot.wanted) {
    PERPER_LOG_INFO(Logger::kScaler, "[agent={} instance={} pid={}] stopped ({})", agent,
                    slot.label, pid, Describe(status));
    slots_.erase(it);
    return;
  }
  absl::Duration delay = slot.policy.OnExit(now, now - slot.started);
  slot.restart_at = now + delay;
  if (slot.policy.in_crash_loop()) {
    PERPER_LOG_ERROR(Logger::kScaler,
                     "[agent={} instance={} pid={}] crash loop: {} ({} exits in a row within "
                     "{}); restarting in {}{}",
                     agent, slot.label, pid, Describe(status), slot.policy.recent_exits(),
                     absl::FormatDuration(options_.restart.crash_window),
                     absl::FormatDuration(delay), LastErrors(slot.last_errors));
  } else {
    PERPER_LOG_WARN(Logger::kScaler,
                    "[agent={} instance={} pid={}] {} unexpectedly; "
                    "restarting in {}{}",
                    agent, slot.label, pid, Describe(status), absl::FormatDuration(delay),
                    LastErrors(slot.last_errors));
  }
}

void Supervisor::OnTimers() {
  absl::Time now = absl::Now();
  for (auto& [key, slot] : slots_) {
    if (slot->kill_at.has_value() && now >= *slot->kill_at && slot->pid > 0) {
      PERPER_LOG_WARN(Logger::kScaler,
                      "[agent={} instance={} pid={}] still running after {}: "
                      "SIGKILL",
                      slot->spec->name, slot->label, slot->pid,
                      absl::FormatDuration(slot->spec->grace));
      kill(-slot->pid, SIGKILL);
      slot->kill_at.reset();
    }
    if (!stopping_ && slot->restart_at.has_value() && now >= *slot->restart_at) {
      Spawn(*slot);
    }
  }
  if (!stopping_) {
    for (auto& [agent, pool] : pools_) {
      if (static_cast<int>(pool->slots.size()) > pool->policy.min()) ReconcilePool(agent);
    }
  }
}

}  // namespace perper::scaler
