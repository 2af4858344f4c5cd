// SPDX-License-Identifier: MIT
#include "tests/support/redis_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "perper/common/files.h"
#include "perper/common/status_macros.h"
#include "perper/storage/redis/redis_connection.h"
#include "tests/support/spawn.h"

namespace perper::testing {
namespace {

using Clock = std::chrono::steady_clock;
using storage::redis::RedisConnection;

// Binds 127.0.0.1:`port` (0: any) and returns the bound port, or 0 when it is taken.
int BindPort(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int bound = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    bound = ntohs(addr.sin_port);
  }
  close(fd);
  return bound;
}

int FreePort(bool cluster_node) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int port = BindPort(0);
    if (port == 0) continue;
    if (!cluster_node) return port;
    if (port <= 55535 && BindPort(port + 10000) != 0) return port;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::string> RedisCli(const std::vector<std::string>& args) {
  TempDir dir;
  std::string out = dir.path() + "/out";
  std::vector<std::string> argv = {"redis-cli"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = SpawnWithLog(argv, {}, out);
  int status = 0;
  waitpid(pid, &status, 0);
  std::string output = ReadWholeFile(out);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("redis-cli failed: ", output));
  }
  return output;
}

RedisProcess::RedisProcess(bool cluster_node, std::vector<std::string> extra)
    : cluster_node_(cluster_node), extra_(std::move(extra)) {}

RedisProcess::~RedisProcess() { Kill(); }

absl::Status RedisProcess::Start(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  // A port found free can be taken by another process before redis-server binds it: then the
  // server exits and the next attempt takes another port.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort(cluster_node_);
    if (port_ == 0) return absl::UnavailableError("no free port for redis-server");
    std::vector<std::string> argv = {"redis-server",
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir_.path(),
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--daemonize",
                                     "no"};
    if (cluster_node_) {
      argv.insert(argv.end(),
                  {"--cluster-enabled", "yes", "--cluster-config-file", dir_.path() + "/nodes.conf",
                   "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"});
    }
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    // A server outlives no test binary, even one that crashed or never destroyed it.
    pid_ = SpawnWithLog(argv, {}, dir_.path() + "/log", /*die_with_parent=*/true);
    // The answer must come from this process, not from whoever else holds the port.
    const std::string own_pid = "process_id:" + std::to_string(pid_) + "\r\n";
    bool exited = false;
    while (!exited && Clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exited = true;
        break;
      }
      auto connection = RedisConnection::Connect("127.0.0.1", port_);
      if (connection.ok()) {
        auto info = (*connection)->Run({"INFO", "server"});
        if (info.ok() && absl::StrContains(info->str, own_pid)) return absl::OkStatus();
      }
      // Polling interval, not synchronisation: the loop ends on an answer, an exit or the deadline.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!exited) break;
    std::string log = ReadWholeFile(dir_.path() + "/log");
    if (!absl::StrContains(log, "Address already in use")) {
      return absl::InternalError(absl::StrCat("redis-server exited: ", log));
    }
  }
  Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("redis-server on ", address(), " did not answer"));
}

void RedisProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

RedisCluster::RedisCluster(int masters, int replicas_per_master)
    : masters_(masters), replicas_(replicas_per_master) {}

RedisProcess* RedisCluster::NodeByPort(int port) {
  for (auto& node : nodes_) {
    if (node->port() == port) return node.get();
  }
  return nullptr;
}

absl::Status RedisCluster::Start(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  int count = masters_ * (1 + replicas_);
  std::vector<std::string> args = {"--cluster", "create"};
  for (int i = 0; i < count; ++i) {
    nodes_.push_back(std::make_unique<RedisProcess>(true));
    PERPER_RETURN_IF_ERROR(nodes_.back()->Start());
    args.push_back(nodes_.back()->address());
  }
  if (replicas_ > 0) args.insert(args.end(), {"--cluster-replicas", std::to_string(replicas_)});
  args.push_back("--cluster-yes");
  PERPER_RETURN_IF_ERROR(RedisCli(args).status());
  return WaitUntilOk(
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

absl::Status RedisCluster::WaitUntilOk(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool all_ok = true;
    for (auto& node : nodes_) {
      if (!node->running()) continue;
      auto connection = RedisConnection::Connect("127.0.0.1", node->port());
      if (!connection.ok()) {
        all_ok = false;
        break;
      }
      auto info = (*connection)->Run({"CLUSTER", "INFO"});
      if (!info.ok() || !absl::StrContains(info->str, "cluster_state:ok")) {
        all_ok = false;
        break;
      }
      // A replica counts once its initial sync is done, so a write can be WAITed for.
      auto replication = (*connection)->Run({"INFO", "replication"});
      if (!replication.ok() || (absl::StrContains(replication->str, "role:slave") &&
                                !absl::StrContains(replication->str, "master_link_status:up"))) {
        all_ok = false;
        break;
      }
    }
    if (all_ok) return absl::OkStatus();
    // Polling interval; the loop ends when every node agrees or at the deadline.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError("redis cluster did not reach cluster_state:ok");
}

}  // namespace perper::testing
