// SPDX-License-Identifier: MIT
// A private redis-server for `perper up` on a local cluster (manifest `fabric: {storage: redis,
// redis: start}`): a free loopback port, a temporary data folder, gone when `perper up` ends.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace perper::cli {

// Owned by `perper up`; not thread-safe.
class LocalRedis {
 public:
  // Starts redis-server (from PATH) with an append-only file fsync'd every second, and waits
  // until it answers PING. The server dies with this process (PR_SET_PDEATHSIG).
  static absl::StatusOr<std::unique_ptr<LocalRedis>> Start();
  ~LocalRedis();  // SIGTERM, wait, remove the folder
  LocalRedis(const LocalRedis&) = delete;
  LocalRedis& operator=(const LocalRedis&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  LocalRedis(std::string dir, int port, pid_t pid) : dir_(std::move(dir)), port_(port), pid_(pid) {}

  std::string dir_;
  int port_;
  pid_t pid_;
};

}  // namespace perper::cli
