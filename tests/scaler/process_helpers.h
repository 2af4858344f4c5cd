// SPDX-License-Identifier: MIT
// Test helpers for running the `perper` binary and agent programs as real processes.
//
//   ChildProcess up({PERPER_BINARY, "up", manifest}, {"PERPER_BUILD_DIR=..."});
//   ASSERT_TRUE(up.WaitForOutput("Test passed", std::chrono::seconds(20))) << up.Output();
//   EXPECT_EQ(up.Wait(std::chrono::seconds(10)), 0);
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace perper::testing {

// A child process with its stdout and stderr captured (each read by a thread). Killed with
// SIGKILL when destroyed if still running. Thread-safe accessors.
class ChildProcess {
 public:
  // Starts argv[0] (a path) with the test's environment plus `env` ("NAME=value"; a bare
  // "NAME" removes NAME), in the folder `cwd` (empty: the test's).
  ChildProcess(std::vector<std::string> argv, std::vector<std::string> env = {},
               const std::string& cwd = "");
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Waits until stdout or stderr contains `text`; false on timeout.
  bool WaitForOutput(const std::string& text, std::chrono::milliseconds timeout);
  void Signal(int signal);
  // Waits for the exit; returns the exit code, 128 + signal, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  std::string Stdout();
  std::string Stderr();
  std::string Output() { return "--- stdout:\n" + Stdout() + "--- stderr:\n" + Stderr(); }

 private:
  void Read(int fd, bool err);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string err_ ABSL_GUARDED_BY(mu_);
  std::thread out_thread_, err_thread_;
};

// Runs argv to completion (killed after `timeout`); returns the exit code and fills out/err.
int RunToCompletion(std::vector<std::string> argv, std::vector<std::string> env, std::string* out,
                    std::string* err, std::chrono::milliseconds timeout = std::chrono::seconds(30));
// The same in the folder `cwd`.
int RunIn(const std::string& cwd, std::vector<std::string> argv, std::vector<std::string> env,
          std::string* out, std::string* err,
          std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Live (not zombie) processes whose parent is `parent`.
std::vector<pid_t> ChildrenOf(pid_t parent);
// Live processes whose environment contains `entry` ("NAME=value").
std::vector<pid_t> ProcessesWithEnv(const std::string& entry);
// "PERPER_TEST_MARKER=<random>": given to `perper up`, it marks every process it starts (for
// ProcessesWithEnv).
std::string TestMarker();

}  // namespace perper::testing
