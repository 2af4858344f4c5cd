// SPDX-License-Identifier: MIT
#include "perper/scaler/compose.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include "perper/common/files.h"
#include "perper/common/health_check.h"
#include "perper/common/logging.h"
#include "perper/scaler/fabric_watchers.h"

extern char** environ;

namespace perper::scaler {
namespace {

namespace fs = std::filesystem;

constexpr char kFabricService[] = "fabric";
constexpr char kDefaultFabricImage[] = "localhost/perper-fabric";
constexpr int kFabricPort = 40400;

// A compose (YAML) double-quoted scalar; `$` doubled, as compose interpolates it.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '$') {
      out += "$$";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string ServiceName(std::string_view name) {
  std::string out = absl::AsciiStrToLower(std::string(name));
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') c = '-';
  }
  return out;
}

// FNV-1a: stable across runs and builds (std::hash is neither promised).
uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 1469598103934665603ull;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

absl::StatusOr<int> FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("finding a free port: ", strerror(errno)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string Seconds(absl::Duration d) {
  return absl::StrCat(std::max<int64_t>(0, absl::ToInt64Seconds(d)), "s");
}

}  // namespace

std::string InstanceServiceName(std::string_view agent, std::string_view instance) {
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(Fnv1a(instance)));
  return absl::StrCat(ServiceName(agent), "-", std::string(hash, 10));
}

ComposeScaler::ComposeScaler(const Manifest& manifest, ComposeOptions options)
    : manifest_(manifest), options_(std::move(options)) {}

ComposeScaler::~ComposeScaler() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

absl::Status ComposeScaler::WriteComposeFile() {
  const FabricSpec& fabric = manifest_.fabric;
  std::string out =
      "# Written by perper up --scaler compose; rewritten as instances come and go.\n"
      "version: \"2.4\"\nservices:\n";
  // The Fabric: the manifest's storage (memory unless it says otherwise, as `perper up`).
  std::vector<std::string> fabric_args = {"--storage", fabric.storage.value_or("memory")};
  auto flag = [&fabric_args](const char* name, const std::string& value) {
    fabric_args.push_back(name);
    fabric_args.push_back(value);
  };
  if (fabric.log_level) flag("--log-level", *fabric.log_level);
  if (fabric.max_value_size) flag("--max-value-size", absl::StrCat(*fabric.max_value_size));
  if (fabric.max_stream_retained_bytes) {
    flag("--max-stream-retained-bytes", absl::StrCat(*fabric.max_stream_retained_bytes));
  }
  if (fabric.stream_write_wait_ms) {
    flag("--stream-write-wait-ms", absl::StrCat(*fabric.stream_write_wait_ms));
  }
  if (fabric.sync) flag("--sync", *fabric.sync ? "true" : "false");
  std::vector<std::string> quoted;
  for (const std::string& a : fabric_args) quoted.push_back(Quote(a));
  bool durable = fabric_args[1] == "rocksdb";
  absl::StrAppend(&out, "  ", kFabricService,
                  ":\n    image: ", Quote(fabric.image.value_or(kDefaultFabricImage)),
                  "\n    command: [", absl::StrJoin(quoted, ", "),
                  "]\n    ports: [\"127.0.0.1:", fabric_port_, ":", kFabricPort,
                  "\"]\n    restart: \"unless-stopped\"\n");
  if (durable) absl::StrAppend(&out, "    volumes: [\"fabric-data:/data\"]\n");

  auto service = [&](const std::string& name, const AgentSpec& spec, const std::string& instance,
                     bool deploy) {
    absl::StrAppend(&out, "  ", name, ":\n    image: ", Quote(spec.image), "\n");
    if (!spec.argv.empty()) {
      std::vector<std::string> args;
      for (const std::string& a : spec.argv) args.push_back(Quote(a));
      absl::StrAppend(&out, "    command: [", absl::StrJoin(args, ", "), "]\n");
    }
    std::map<std::string, std::string> env = spec.env;
    env["PERPER_FABRIC_ENDPOINT"] = absl::StrCat(kFabricService, ":", kFabricPort);
    env["X_PERPER_AGENT"] = spec.name;
    if (!instance.empty()) env["X_PERPER_INSTANCE"] = instance;
    if (deploy && spec.env.count("X_PERPER_RECORD_DEPLOY") == 0) {
      env["X_PERPER_RECORD_DEPLOY"] = "1";
    }
    absl::StrAppend(&out, "    environment:\n");
    for (const auto& [key, value] : env) {
      absl::StrAppend(&out, "      ", Quote(key), ": ", Quote(value), "\n");
    }
    absl::StrAppend(&out, "    labels:\n      io.perper.agent: ", Quote(spec.name), "\n");
    if (!instance.empty()) {
      absl::StrAppend(&out, "      io.perper.instance: ", Quote(instance), "\n");
    }
    // Deploy's exit ends the application; any other container is wanted until removed.
    absl::StrAppend(&out, "    restart: ", deploy ? "\"no\"" : "\"always\"",
                    "\n    stop_grace_period: ", Quote(Seconds(spec.grace)), "\n");
  };
  if (!manifest_.deploy.empty()) {
    const AgentSpec& spec = *manifest_.Find(manifest_.deploy);
    service(ServiceName(spec.name), spec, "", /*deploy=*/true);
  }
  for (const auto& [name, info] : instances_) {
    service(name, *manifest_.Find(info.agent), info.id, /*deploy=*/false);
  }
  for (const auto& [agent, pool] : pools_) {
    service(ServiceName(agent), *manifest_.Find(agent), "", /*deploy=*/false);
  }
  if (durable) absl::StrAppend(&out, "volumes:\n  fabric-data: {}\n");
  return WriteFileAtomically(compose_file_, out);
}

pid_t ComposeScaler::ComposeChild(const std::vector<std::string>& args, int output_fd) {
  std::vector<std::string> argv = {"docker-compose", "--ansi", "never",      "-p",
                                   options_.project, "-f",     compose_file_};
  argv.insert(argv.end(), args.begin(), args.end());
  return Child(std::move(argv), output_fd);
}

pid_t ComposeScaler::Child(std::vector<std::string> argv_strings, int output_fd) {
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Its own process group: a Ctrl-C reaches the scaler, which stops the children itself;
    // SIGTERM when the scaler dies lets docker-compose end its calls.
    if (!PrepareScalerChild(parent, SIGTERM, null_fd)) _exit(1);
    if (output_fd >= 0) {
      dup2(output_fd, 1);
      dup2(output_fd, 2);
    }
    execvp(argv[0], argv.data());
    _exit(127);
  }
  if (null_fd >= 0) close(null_fd);
  return pid;
}

absl::Status ComposeScaler::Compose(const std::vector<std::string>& args) {
  return ComposeOutput(args).status();
}

absl::StatusOr<std::string> ComposeScaler::ComposeOutput(const std::vector<std::string>& args) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  pid_t pid = ComposeChild(args, out[1]);
  close(out[1]);
  std::string output;
  char buffer[4096];
  ssize_t n;
  while ((n = read(out[0], buffer, sizeof(buffer))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buffer, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string command =
      absl::StrCat("docker-compose -p ", options_.project, " ", absl::StrJoin(args, " "));
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return absl::UnavailableError(absl::StrCat(
        command, " failed",
        WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (is docker-compose installed?)" : "",
        ": ", output));
  }
  PERPER_LOG_DEBUG(Logger::kScaler, "{}: {}", command, output);
  return output;
}

void ComposeScaler::AttachDeploy() {
  const std::string service = ServiceName(manifest_.deploy);
  ++deploy_attachments_;
  deploy_pid_ =
      ComposeChild({"up", "--no-deps", "--no-color", "--exit-code-from", service, service});
}

bool ComposeScaler::HandleEvents() {
  std::vector<Event> events = TakeEvents();
  bool changed = false;
  auto add = [&](const InstanceInfo& instance) {
    const AgentSpec* spec = manifest_.Find(instance.agent);
    if (spec == nullptr || spec->mode != AgentMode::kInstance || spec->name == manifest_.deploy) {
      if (spec == nullptr && warned_.insert(instance.id).second) {
        PERPER_LOG_WARN(Logger::kScaler,
                        "[agent={} instance={}] no agent in the manifest serves this type",
                        instance.agent, instance.id);
      }
      return;  // served by the pool or the Deploy container, or by no one
    }
    std::string name = InstanceServiceName(instance.agent, instance.id);
    if (instances_.emplace(name, instance).second) {
      PERPER_LOG_INFO(Logger::kScaler, "[agent={} instance={} service={}] starting its container",
                      instance.agent, instance.id, name);
      changed = true;
    }
  };
  auto remove = [&](const std::string& name, const char* why) {
    auto it = instances_.find(name);
    if (it == instances_.end()) return;
    PERPER_LOG_INFO(Logger::kScaler, "[agent={} instance={} service={}] {}: removing its container",
                    it->second.agent, it->second.id, name, why);
    instances_.erase(it);
    changed = true;
  };
  for (Event& event : events) {
    switch (event.kind) {
      case Event::kSnapshot: {
        std::set<std::string> live;
        for (const InstanceInfo& instance : event.instances) {
          live.insert(InstanceServiceName(instance.agent, instance.id));
          add(instance);
        }
        std::vector<std::string> gone;
        for (const auto& [name, info] : instances_) {
          if (live.count(name) == 0) gone.push_back(name);
        }
        for (const std::string& name : gone) remove(name, "instance is gone");
        break;
      }
      case Event::kAdd:
        add(event.instances.front());
        break;
      case Event::kRemove: {
        warned_.erase(event.id);
        for (const auto& [name, info] : instances_) {
          if (info.id == event.id) {
            remove(std::string(name), "instance destroyed");
            break;
          }
        }
        break;
      }
      case Event::kPending: {
        auto it = pools_.find(event.id);
        if (it != pools_.end()) it->second.pending = event.pending;
        break;
      }
      case Event::kStop:
        break;
    }
  }
  return ReconcilePools() || changed;
}

bool ComposeScaler::ReconcilePools() {
  bool changed = false;
  for (auto& [agent, pool] : pools_) {
    int target = pool.policy.Target(pool.pending, pool.running, absl::Now());
    if (target == pool.running) continue;
    PERPER_LOG_INFO(Logger::kScaler, "[agent={}] scaling from {} to {} containers ({} pending)",
                    agent, pool.running, target, pool.pending);
    pool.running = target;
    changed = true;
  }
  return changed;
}

absl::Status ComposeScaler::Reconcile() {
  if (absl::Status s = WriteComposeFile(); !s.ok()) return s;
  // Named services only: Deploy is not started again once it has exited. --remove-orphans
  // removes the containers of instances that are gone from the file.
  std::vector<std::string> args = {"up", "-d", "--no-deps", "--remove-orphans"};
  for (const auto& [agent, pool] : pools_) {
    args.push_back("--scale");
    args.push_back(absl::StrCat(ServiceName(agent), "=", pool.running));
  }
  args.push_back(kFabricService);
  for (const auto& [name, info] : instances_) args.push_back(name);
  for (const auto& [agent, pool] : pools_) args.push_back(ServiceName(agent));
  absl::Status status = Compose(args);
  FollowLogs();
  return status;
}

void ComposeScaler::WatchEvents() {
  std::string host = std::getenv("DOCKER_HOST");
  std::string filters = absl::StrCat("%7B%22label%22%3A%5B%22com.docker.compose.project%3D",
                                     options_.project, "%22%5D%7D");
  std::vector<std::string> argv = {"curl", "-sSN"};
  if (host.rfind("unix://", 0) == 0) {
    argv.insert(argv.end(), {"--unix-socket", host.substr(7),
                             absl::StrCat("http://localhost/v1.41/events?filters=", filters)});
  } else if (host.rfind("tcp://", 0) == 0) {
    argv.push_back(absl::StrCat("http://", host.substr(6), "/v1.41/events?filters=", filters));
  } else {
    PERPER_LOG_WARN(Logger::kScaler,
                    "DOCKER_HOST {}: not unix:// or tcp://, so containers "
                    "stopped by hand are not started again",
                    host);
    return;
  }
  int events_pipe[2];
  if (pipe2(events_pipe, O_CLOEXEC) != 0) return;
  events_pid_ = Child(argv, events_pipe[1]);
  close(events_pipe[1]);
  events_fd_ = events_pipe[0];
  fcntl(events_fd_, F_SETFL, fcntl(events_fd_, F_GETFL) | O_NONBLOCK);
}

void ComposeScaler::FollowLogs() {
  // One `logs -f` per service with containers; it ends when they are gone.
  std::vector<std::string> wanted;
  for (const auto& [name, info] : instances_) wanted.push_back(name);
  for (const auto& [agent, pool] : pools_) {
    if (pool.running > 0) wanted.push_back(ServiceName(agent));
  }
  for (const std::string& name : wanted) {
    if (followers_.count(name) != 0) continue;
    // A service followed before (its container restarted) shows only what is new.
    bool again = !followed_.insert(name).second;
    pid_t pid = ComposeChild({"logs", "-f", "--no-color", again ? "--tail=0" : "--tail=all", name});
    if (pid > 0) followers_[name] = pid;
  }
}

namespace {

// The first string value of "key" in one line of the engine's JSON events.
std::string JsonString(const std::string& line, const std::string& key) {
  std::string marker = absl::StrCat("\"", key, "\":\"");
  size_t start = line.find(marker);
  if (start == std::string::npos) return "";
  start += marker.size();
  size_t end = line.find('"', start);
  return end == std::string::npos ? "" : line.substr(start, end - start);
}

}  // namespace

void ComposeScaler::ReadEvents() {
  char buffer[8192];
  while (true) {
    ssize_t n = read(events_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      PERPER_LOG_WARN(Logger::kScaler,
                      "watching container events ended: a container "
                      "stopped by hand is no longer started again");
      close(events_fd_);
      events_fd_ = -1;
      break;
    }
    events_buffer_.append(buffer, static_cast<size_t>(n));
  }
  size_t start = 0, end;
  while ((end = events_buffer_.find('\n', start)) != std::string::npos) {
    std::string line = events_buffer_.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line[0] != '{') continue;  // an error of curl's
    OnContainerEvent(JsonString(line, "Action"), JsonString(line, "com.docker.compose.service"),
                     JsonString(line, "exitCode"));
  }
  events_buffer_.erase(0, start);
}

void ComposeScaler::OnContainerEvent(const std::string& action, const std::string& service,
                                     const std::string& exit_code) {
  absl::Time now = absl::Now();
  if (action == "start") {
    started_[service] = now;
    FollowLogs();
    return;
  }
  if (action != "die") return;
  std::string agent, instance;
  if (auto it = instances_.find(service); it != instances_.end()) {
    agent = it->second.agent;
    instance = it->second.id;
  } else {
    for (const auto& [name, pool] : pools_) {
      if (ServiceName(name) == service && pool.running > 0) agent = name;
    }
  }
  if (agent.empty()) return;  // removed on purpose, or not an agent of ours
  RestartPolicy& policy = restarts_.try_emplace(service).first->second;
  auto started = started_.find(service);
  absl::Duration ran = started == started_.end() ? absl::InfiniteDuration() : now - started->second;
  absl::Duration delay = policy.OnExit(now, ran);
  std::string what = absl::StrCat("[agent=", agent, instance.empty() ? "" : " instance=", instance,
                                  " service=", service, "] container exited with code ",
                                  exit_code.empty() ? "?" : exit_code);
  if (policy.in_crash_loop()) {
    PERPER_LOG_ERROR(Logger::kScaler,
                     "{}: crash loop ({} exits within 30s); ensuring it runs "
                     "in {}",
                     what, policy.recent_exits(), absl::FormatDuration(delay));
  } else {
    PERPER_LOG_WARN(Logger::kScaler, "{} unexpectedly; ensuring it runs in {}", what,
                    absl::FormatDuration(delay));
  }
  if (!restart_at_ || now + delay < *restart_at_) restart_at_ = now + delay;
}

void ComposeScaler::ReapChildren() {
  int status = 0;
  if (deploy_pid_ > 0 && waitpid(deploy_pid_, &status, WNOHANG) == deploy_pid_) {
    deploy_pid_ = -1;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    // docker-compose's attached log printer can fail on its own (1.29 raises when a container
    // of the project goes away as it looks): its exit is Deploy's only if Deploy stopped.
    absl::StatusOr<std::string> running =
        code == 0 ? absl::StatusOr<std::string>("")
                  : ComposeOutput({"ps", "--services", "--filter", "status=running"});
    const std::string service = ServiceName(manifest_.deploy);
    bool still_running = false;
    if (running.ok()) {
      for (absl::string_view line : absl::StrSplit(*running, '\n')) {
        still_running = still_running || line == service;
      }
    }
    if (still_running && deploy_attachments_ < 5) {
      PERPER_LOG_WARN(Logger::kScaler,
                      "docker-compose attached to Deploy ended with code {} while Deploy runs: "
                      "attaching again",
                      code);
      AttachDeploy();
    } else {
      deploy_exit_code_ = code;
    }
  }
  bool follow_again = false;
  for (auto it = followers_.begin(); it != followers_.end();) {
    if (waitpid(it->second, &status, WNOHANG) == it->second) {
      // `logs -f` ends with 0 when its containers are gone. docker-compose 1.29's log printer
      // can also raise on its own while they run; then the service's output would go unseen,
      // so it is followed again (from the lines that come next) a few times.
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
          ++follower_failures_[it->first] <= 5) {
        PERPER_LOG_WARN(Logger::kScaler,
                        "[service={}] docker-compose logs -f ended with code {}: "
                        "following its output again",
                        it->first,
                        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        follow_again = true;
      }
      it = followers_.erase(it);
    } else {
      ++it;
    }
  }
  if (follow_again && !stopped_by_signal_) FollowLogs();
}

void ComposeScaler::Shutdown() {
  if (events_pid_ > 0) kill(events_pid_, SIGTERM);
  for (const auto& [name, pid] : followers_) kill(pid, SIGTERM);
  if (deploy_pid_ > 0) kill(deploy_pid_, SIGTERM);
  int grace = 1;
  for (const AgentSpec& agent : manifest_.agents) {
    grace = std::max<int>(grace, static_cast<int>(absl::ToInt64Seconds(agent.grace)));
  }
  PERPER_LOG_INFO(Logger::kScaler,
                  "docker-compose -p {} down: stopping and removing every "
                  "container",
                  options_.project);
  if (absl::Status s = Compose({"down", "--remove-orphans", "-t", absl::StrCat(grace)}); !s.ok()) {
    PERPER_LOG_ERROR(Logger::kScaler, "{}; the compose file stays in {}", std::string(s.message()),
                     options_.dir);
  } else {
    // The generated file is all the folder holds; kept only when `down` failed.
    std::error_code ignored;
    fs::remove_all(options_.dir, ignored);
  }
  for (const auto& [name, pid] : followers_) waitpid(pid, nullptr, 0);
  followers_.clear();
  if (deploy_pid_ > 0) waitpid(deploy_pid_, nullptr, 0);
  deploy_pid_ = -1;
  if (events_pid_ > 0) waitpid(events_pid_, nullptr, 0);
  events_pid_ = -1;
  if (events_fd_ >= 0) close(events_fd_);
  events_fd_ = -1;
}

int ComposeScaler::Run() {
  auto fail = [](const std::string& message, int code) {
    std::fprintf(stderr, "perper up --scaler compose: %s\n", message.c_str());
    return code;
  };
  // What the manifest asks that containers cannot give.
  if (!manifest_.fabric.address.empty()) {
    return fail("fabric.address: the compose scaler runs its own Fabric container", 2);
  }
  if (manifest_.fabric.config_file || manifest_.fabric.data_dir || manifest_.fabric.listen ||
      manifest_.fabric.redis || manifest_.fabric.processes > 1) {
    return fail(
        "fabric: config, data_dir, listen, redis and processes apply to the local "
        "scaler; in containers the Fabric keeps its data in the volume fabric-data",
        2);
  }
  for (const AgentSpec& agent : manifest_.agents) {
    if (agent.image.empty()) {
      return fail(absl::StrCat(manifest_.path, ":", agent.line, ": agents.", agent.name,
                               ": no image: (each agent runs in a container of its image)"),
                  2);
    }
  }
  if (std::getenv("DOCKER_HOST") == nullptr) {
    return fail(
        "DOCKER_HOST is not set: start podman's Docker API first, e.g. "
        "export DOCKER_HOST=$(scripts/podman-service.sh start)",
        1);
  }
  // docker-compose is Python: unbuffered, its events and forwarded lines arrive when they
  // happen, not when a pipe buffer fills. Set before any thread or child starts.
  setenv("PYTHONUNBUFFERED", "1", 1);
  if (options_.project.empty()) {
    std::string name = manifest_.name;
    if (name.empty()) name = fs::path(manifest_.path).stem().string();
    options_.project = ServiceName(name);
  }
  if (options_.dir.empty()) {
    options_.dir = absl::StrCat(manifest_.dir, "/.perper/compose/", options_.project);
  }
  std::error_code error;
  fs::create_directories(options_.dir, error);
  if (error) return fail(absl::StrCat("cannot create ", options_.dir, ": ", error.message()), 1);
  compose_file_ = absl::StrCat(options_.dir, "/docker-compose.yml");
  auto port = FreeLoopbackPort();
  if (!port.ok()) return fail(std::string(port.status().message()), 1);
  fabric_port_ = *port;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD);
  signal_fd_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return fail(absl::StrCat("signalfd: ", strerror(errno)), 1);
  if (absl::Status s = InitEvents(); !s.ok()) return fail(std::string(s.message()), 1);
  for (const AgentSpec& agent : manifest_.agents) {
    if (agent.mode == AgentMode::kPool) pools_.emplace(agent.name, Pool(agent));
  }
  ReconcilePools();  // the pools' minimum

  // The Fabric first; everything else needs it.
  if (absl::Status s = WriteComposeFile(); !s.ok()) return fail(std::string(s.message()), 1);
  PERPER_LOG_INFO(Logger::kScaler, "project {} ({}): starting the Fabric container",
                  options_.project, compose_file_);
  if (absl::Status s = Compose({"up", "-d", "--no-deps", "--remove-orphans", kFabricService});
      !s.ok()) {
    fail(std::string(s.message()), 1);
    Shutdown();
    return 1;
  }
  std::string address = absl::StrCat("127.0.0.1:", fabric_port_);
  grpc::ChannelArguments channel_args;
  channel_args.SetInt("grpc.use_local_subchannel_pool", 1);
  auto channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), channel_args);
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  int serving = kHealthUnknown;
  while (true) {
    grpc::Status s =
        CheckHealth(channel, std::chrono::system_clock::now() + std::chrono::seconds(1), &serving);
    if (s.ok() && serving == kHealthServing) break;
    if (absl::Now() >= deadline) {
      fail(absl::StrCat("the Fabric container did not answer on ", address, " within 30 s (",
                        s.ok() ? HealthStatusName(serving) : s.error_message(),
                        "); see docker-compose -p ", options_.project, " logs fabric"),
           1);
      Shutdown();
      return 1;
    }
    // The published port refuses at once while the container starts: wait a little.
    absl::SleepFor(absl::Milliseconds(100));
  }
  PERPER_LOG_INFO(Logger::kScaler, "Fabric container (service fabric) answers on {}", address);
  if (options_.on_fabric_ready) options_.on_fabric_ready(address);
  if (options_.before_deploy) {
    if (absl::Status s = options_.before_deploy(channel); !s.ok()) {
      fail(std::string(s.message()), 1);
      Shutdown();
      return 1;
    }
  }
  WatchEvents();
  if (!manifest_.deploy.empty()) {
    AttachDeploy();
  }
  if (absl::Status s = Reconcile(); !s.ok()) {
    PERPER_LOG_ERROR(Logger::kScaler, "{}", std::string(s.message()));
  }

  RegistryWatcher registry(channel, *this);
  std::unique_ptr<PoolMonitor> monitor;
  std::vector<std::string> pool_agents;
  int max_pending = 1;
  for (const AgentSpec& agent : manifest_.agents) {
    if (agent.mode != AgentMode::kPool) continue;
    pool_agents.push_back(agent.name);
    max_pending = std::max(max_pending, agent.max * agent.executions_per_process + 1);
  }
  if (!pool_agents.empty()) {
    monitor = std::make_unique<PoolMonitor>(channel, *this, pool_agents, max_pending,
                                            absl::Milliseconds(200));
  }
  PERPER_LOG_INFO(Logger::kScaler, "application {} is up in containers (project {})",
                  manifest_.name.empty() ? manifest_.path : manifest_.name, options_.project);
  while (!stopped_by_signal_ && !deploy_exit_code_) {
    pollfd fds[3] = {{signal_fd_, POLLIN, 0}, {event_fd(), POLLIN, 0}, {events_fd_, POLLIN, 0}};
    // Pools re-evaluate their target while above their minimum (idle scale-down).
    int timeout_ms = pools_.empty() ? -1 : 200;
    if (restart_at_) {
      int64_t wait = absl::ToInt64Milliseconds(*restart_at_ - absl::Now()) + 1;
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait, 0, timeout_ms < 0 ? 60'000 : 200));
    }
    int ready = poll(fds, events_fd_ >= 0 ? 3 : 2, timeout_ms);
    bool changed = false;
    if (ready > 0 && fds[0].revents != 0) {
      signalfd_siginfo info;
      while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo != SIGCHLD && !stopped_by_signal_) {
          PERPER_LOG_INFO(Logger::kScaler, "received {}, stopping the application",
                          info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
          stopped_by_signal_ = static_cast<int>(info.ssi_signo);
        }
      }
      ReapChildren();
    }
    if (stopped_by_signal_ || deploy_exit_code_) break;
    if (ready > 0 && fds[1].revents != 0) changed = HandleEvents();
    if (ready > 0 && events_fd_ >= 0 && fds[2].revents != 0) ReadEvents();
    if (restart_at_ && absl::Now() >= *restart_at_) {
      restart_at_.reset();
      changed = true;  // `up -d` starts the died containers of the wanted services again
    }
    changed = ReconcilePools() || changed;
    if (changed) {
      if (absl::Status s = Reconcile(); !s.ok()) {
        PERPER_LOG_ERROR(Logger::kScaler, "{}", std::string(s.message()));
      }
    }
  }
  if (deploy_exit_code_) {
    PERPER_LOG_INFO(Logger::kScaler, "Deploy exited with code {}: stopping the application",
                    *deploy_exit_code_);
  }
  registry.Stop();
  if (monitor) monitor->Stop();
  // What the watchers reported last (instances destroyed just before Deploy ended) is logged;
  // `down` removes their containers with the rest.
  HandleEvents();
  Shutdown();
  if (stopped_by_signal_) return 128 + *stopped_by_signal_;
  return deploy_exit_code_.value_or(0);
}

}  // namespace perper::scaler
