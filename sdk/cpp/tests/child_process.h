// SPDX-License-Identifier: MIT
// An SDK example binary (or a test binary re-run with a filter) as a child process, with extra
// environment and arguments, output to a file.
//
//   ChildProcess child(PERPER_CALCULATOR_BINARY, {"PERPER_FABRIC_ENDPOINT=" + address});
//   child.Kill(SIGTERM);
//   EXPECT_EQ(child.Wait(std::chrono::seconds(10)), 0);
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/fabric_fixture.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace perper::testing {

class ChildProcess {
 public:
  ChildProcess(const std::string& binary, const std::vector<std::string>& env,
               const std::vector<std::string>& args = {}) {
    log_path_ = dir_.path() + "/output.log";
    // Everything the child needs is built before fork: after fork only exec-safe calls.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      env_strings.emplace_back(*e);
    }
    env_strings.insert(env_strings.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& s : env_strings) {
      envp.push_back(s.data());
    }
    envp.push_back(nullptr);
    std::vector<std::string> arg_strings{binary};
    arg_strings.insert(arg_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : arg_strings) {
      argv.push_back(s.data());
    }
    argv.push_back(nullptr);
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(fd);
  }

  ~ChildProcess() {
    if (pid_ > 0 && !exit_code_.has_value()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void Kill(int signal) { kill(pid_, signal); }

  // The exit code (128 + signal when killed), or -1 when `timeout` passed first.
  int Wait(std::chrono::milliseconds timeout) {
    if (exit_code_.has_value()) {
      return *exit_code_;
    }
    int status = 0;
    bool exited = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
    if (!exited) {
      return -1;
    }
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return *exit_code_;
  }

  std::string Output() const {
    std::ifstream in(log_path_);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }

 private:
  TempDir dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace perper::testing
