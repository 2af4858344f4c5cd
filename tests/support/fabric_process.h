// SPDX-License-Identifier: MIT
// Runs the perper-fabric binary as a child process (path from $PERPER_FABRIC_BINARY, set by
// ctest), on a free port, and waits for the address it reports.
//
//   FabricProcess fabric({"--storage", "rocksdb", "--data-dir", dir});
//   ASSERT_TRUE(fabric.Start()) << fabric.Log();
//   auto channel = fabric.NewChannel();
//   fabric.Kill(SIGKILL);
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "tests/support/temp_dir.h"

namespace perper::testing {

class FabricProcess {
 public:
  // `args` are passed after --address-file <file>, and after --listen 127.0.0.1:0 unless `args`
  // give --listen or --config or `env` gives PERPER_LISTEN.
  explicit FabricProcess(std::vector<std::string> args, std::vector<std::string> env = {});
  ~FabricProcess();

  // Starts the process and waits up to `timeout` for its address. False on exit or timeout.
  bool Start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  const std::string& address() const { return address_; }
  std::shared_ptr<grpc::Channel> NewChannel() const;

  // Sends `signal`; Wait() returns the exit status: the exit code, or 128 + signal number.
  void Kill(int signal);
  int Wait();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // What the process wrote to stdout and stderr so far.
  std::string Log() const;

  static std::string BinaryPath();

 private:
  std::vector<std::string> args_;
  std::vector<std::string> env_;
  TempDir dir_;
  pid_t pid_ = -1;
  std::string address_;
};

// Runs the binary to completion with `args`; returns the exit status and fills `output` with
// stdout and stderr.
int RunFabricBinary(const std::vector<std::string>& args, std::string* output,
                    const std::vector<std::string>& env = {});

}  // namespace perper::testing
