// SPDX-License-Identifier: MIT
#include "tests/scaler/process_helpers.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "perper/common/files.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/spawn.h"

namespace perper::testing {
namespace {

std::vector<pid_t> AllProcesses() {
  std::vector<pid_t> pids;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end != entry->d_name && *end == '\0') pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(dir);
  return pids;
}

// State and parent of a process from /proc/<pid>/stat; false if it is gone.
bool Stat(pid_t pid, char* state, pid_t* parent) {
  std::string stat = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 4 >= stat.size()) return false;
  *state = stat[close + 2];
  *parent = static_cast<pid_t>(std::strtol(stat.c_str() + close + 4, nullptr, 10));
  return true;
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> argv, std::vector<std::string> env,
                           const std::string& cwd) {
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) return;
  std::vector<std::string> env_strings = ChildEnvironment(env);
  std::vector<char*> envp, args;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (std::string& s : argv) args.push_back(s.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    close(out[1]);
    close(err[1]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  int out_fd = out[0], err_fd = err[0];
  out_thread_ = std::thread([this, out_fd] { Read(out_fd, false); });
  err_thread_ = std::thread([this, err_fd] { Read(err_fd, true); });
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
}

void ChildProcess::Read(int fd, bool err) {
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) {
    absl::MutexLock lock(&mu_);
    (err ? err_ : out_).append(buffer, static_cast<size_t>(n));
  }
  close(fd);
}

bool ChildProcess::WaitForOutput(const std::string& text, std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return out_.find(text) != std::string::npos || err_.find(text) != std::string::npos;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&found), absl::Milliseconds(timeout.count()));
}

void ChildProcess::Signal(int signal) {
  if (pid_ > 0 && !reaped_) kill(pid_, signal);
}

int ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  int status = 0;
  bool done = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
  if (!done) return -1;
  reaped_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // The pipes close once every holder of them has exited.
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
  return exit_code_;
}

std::string ChildProcess::Stdout() {
  absl::MutexLock lock(&mu_);
  return out_;
}

std::string ChildProcess::Stderr() {
  absl::MutexLock lock(&mu_);
  return err_;
}

int RunToCompletion(std::vector<std::string> argv, std::vector<std::string> env, std::string* out,
                    std::string* err, std::chrono::milliseconds timeout) {
  return RunIn("", std::move(argv), std::move(env), out, err, timeout);
}

int RunIn(const std::string& cwd, std::vector<std::string> argv, std::vector<std::string> env,
          std::string* out, std::string* err, std::chrono::milliseconds timeout) {
  ChildProcess child(std::move(argv), std::move(env), cwd);
  int code = child.Wait(timeout);
  if (code == -1) {
    child.Signal(SIGKILL);
    child.Wait(std::chrono::seconds(5));
  }
  *out = child.Stdout();
  *err = child.Stderr();
  return code;
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  for (pid_t pid : AllProcesses()) {
    char state = 0;
    pid_t ppid = 0;
    if (Stat(pid, &state, &ppid) && ppid == parent && state != 'Z') children.push_back(pid);
  }
  return children;
}

std::vector<pid_t> ProcessesWithEnv(const std::string& entry) {
  std::vector<pid_t> found;
  for (pid_t pid : AllProcesses()) {
    char state = 0;
    pid_t ppid = 0;
    if (!Stat(pid, &state, &ppid) || state == 'Z') continue;
    std::string environment = ReadWholeFile("/proc/" + std::to_string(pid) + "/environ");
    size_t start = 0;
    while (start < environment.size()) {
      size_t end = environment.find('\0', start);
      if (end == std::string::npos) end = environment.size();
      if (environment.compare(start, end - start, entry) == 0) {
        found.push_back(pid);
        break;
      }
      start = end + 1;
    }
  }
  return found;
}

std::string TestMarker() {
  std::random_device random;
  return "PERPER_TEST_MARKER=" + std::to_string(random()) + std::to_string(random());
}

}  // namespace perper::testing
