// SPDX-License-Identifier: MIT
#include "perper/cli/local_redis.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "perper/common/files.h"
#include "perper/storage/redis/redis_connection.h"

namespace perper::cli {
namespace {

// A port nothing listens on now (the kernel's choice for port 0).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string ReadLog(const std::string& path) {
  std::string log = ReadWholeFile(path);
  if (log.size() > 2000) log = "..." + log.substr(log.size() - 2000);
  return log;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalRedis>> LocalRedis::Start() {
  std::string pattern = (std::filesystem::temp_directory_path() / "perper-redis-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError("cannot create a folder for redis-server under " +
                               std::filesystem::temp_directory_path().string());
  }
  std::string dir = pattern;
  std::string log = dir + "/redis.log";
  for (int attempt = 0; attempt < 5; ++attempt) {
    int port = FreePort();
    if (port == 0) return absl::UnavailableError("no free port for redis-server");
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     std::to_string(port),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir,
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "yes",
                                     "--appendfsync",
                                     "everysec",
                                     "--daemonize",
                                     "no"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      setpgid(0, 0);  // Ctrl-C in the terminal reaches `perper up`, which stops it in order.
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execvp("redis-server", argv.data());
      _exit(127);
    }
    if (pid < 0) return absl::InternalError("fork failed for redis-server");
    std::unique_ptr<LocalRedis> redis(new LocalRedis(dir, port, pid));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        redis->pid_ = -1;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
          return absl::FailedPreconditionError(
              "redis-server is not installed (apt install redis-server)");
        }
        break;  // most likely the port was taken meanwhile: try another
      }
      auto connection = storage::redis::RedisConnection::Connect("127.0.0.1", port);
      if (connection.ok() && (*connection)->Run({"PING"}).ok()) return redis;
      // Polling interval while the server starts; the loop ends on an answer, an exit or the
      // deadline.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (redis->pid_ > 0) {
      return absl::DeadlineExceededError("redis-server did not answer within 10 s: " +
                                         ReadLog(log));
    }
    redis->dir_.clear();  // keep the folder (and its log) for the next attempt
  }
  return absl::UnavailableError("redis-server did not start: " + ReadLog(log));
}

LocalRedis::~LocalRedis() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

}  // namespace perper::cli
