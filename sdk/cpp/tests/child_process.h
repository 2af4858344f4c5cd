// SPDX-License-Identifier: MIT
// An SDK example binary (or a test binary re-run with a filter) as a child process, with extra
// environment and arguments, output to a file (started by SpawnWithLog, tests/support/spawn.h).
//
//   ChildProcess child(PERPER_CALCULATOR_BINARY, {"PERPER_FABRIC_ENDPOINT=" + address});
//   child.Kill(SIGTERM);
//   EXPECT_EQ(child.Wait(std::chrono::seconds(10)), 0);
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "perper/common/files.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/spawn.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {

class ChildProcess {
 public:
  ChildProcess(const std::string& binary, const std::vector<std::string>& env,
               const std::vector<std::string>& args = {}) {
    log_path_ = dir_.path() + "/output.log";
    std::vector<std::string> argv{binary};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = SpawnWithLog(argv, env, log_path_);
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

  std::string Output() const { return ReadWholeFile(log_path_); }

 private:
  TempDir dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace perper::testing
