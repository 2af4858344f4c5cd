// SPDX-License-Identifier: MIT
#include "tests/support/fabric_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "perper/common/files.h"
#include "tests/support/spawn.h"

namespace perper::testing {
namespace {

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string FabricProcess::BinaryPath() {
  const char* path = std::getenv("PERPER_FABRIC_BINARY");
  return path != nullptr ? path : "perper-fabric";
}

FabricProcess::FabricProcess(std::vector<std::string> args, std::vector<std::string> env)
    : args_(std::move(args)), env_(std::move(env)) {}

FabricProcess::~FabricProcess() {
  if (pid_ > 0) {
    Kill(SIGKILL);
    Wait();
  }
}

bool FabricProcess::Start(std::chrono::milliseconds timeout) {
  std::string address_file = dir_.path() + "/address";
  std::remove(address_file.c_str());
  std::vector<std::string> argv = {BinaryPath(), "--address-file", address_file};
  bool listen_given = std::find(args_.begin(), args_.end(), "--listen") != args_.end() ||
                      std::find_if(env_.begin(), env_.end(), [](const std::string& kv) {
                        return kv.rfind("PERPER_LISTEN=", 0) == 0;
                      }) != env_.end();
  bool config_given = std::find(args_.begin(), args_.end(), "--config") != args_.end();
  if (!listen_given && !config_given) argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
  argv.insert(argv.end(), args_.begin(), args_.end());
  pid_ = SpawnWithLog(argv, env_, dir_.path() + "/log");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    // Written whole (renamed into place) once the Fabric listens.
    if (std::string address = ReadAddressFile(address_file); !address.empty()) {
      address_ = address;
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::shared_ptr<grpc::Channel> FabricProcess::NewChannel() const {
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
}

void FabricProcess::Kill(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

int FabricProcess::Wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return DecodeStatus(status);
}

std::string FabricProcess::Log() const { return ReadWholeFile(dir_.path() + "/log"); }

int RunFabricBinary(const std::vector<std::string>& args, std::string* output,
                    const std::vector<std::string>& env) {
  TempDir dir;
  std::vector<std::string> argv = {FabricProcess::BinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = SpawnWithLog(argv, env, dir.path() + "/log");
  int status = 0;
  waitpid(pid, &status, 0);
  *output = ReadWholeFile(dir.path() + "/log");
  return DecodeStatus(status);
}

}  // namespace perper::testing
