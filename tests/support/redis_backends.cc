// SPDX-License-Identifier: MIT
#include "tests/support/redis_backends.h"

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"

#include "perper/common/status_macros.h"
#include "perper/storage/redis/redis_connection.h"
#include "tests/support/redis_process.h"

namespace perper::testing {
namespace {

// The servers of this test binary, never destroyed: each redis-server is started to die with
// the binary (RedisProcess asks the kernel for SIGKILL when its parent ends), since ctest runs
// every test case as a process of its own and nothing else would stop them.
struct Deployments {
  absl::Mutex mu;
  std::unique_ptr<RedisProcess> standalone ABSL_GUARDED_BY(mu);
  std::unique_ptr<RedisCluster> cluster ABSL_GUARDED_BY(mu);
};

Deployments& deployments() {
  static Deployments* d = new Deployments();  // Never destroyed: lives as long as the binary.
  return *d;
}

// The addresses of the masters of `backend`, started when needed.
absl::StatusOr<std::vector<std::string>> Masters(const std::string& backend) {
  Deployments& d = deployments();
  absl::MutexLock lock(&d.mu);
  if (backend == "redis") {
    if (d.standalone == nullptr) {
      auto server = std::make_unique<RedisProcess>();
      PERPER_RETURN_IF_ERROR(server->Start());
      d.standalone = std::move(server);
    }
    return std::vector<std::string>{d.standalone->address()};
  }
  if (backend == "redis_cluster") {
    if (d.cluster == nullptr) {
      auto cluster = std::make_unique<RedisCluster>(3, 0);
      PERPER_RETURN_IF_ERROR(cluster->Start());
      d.cluster = std::move(cluster);
    }
    std::vector<std::string> masters;
    for (auto& node : d.cluster->nodes()) masters.push_back(node->address());
    return masters;
  }
  return absl::InvalidArgumentError("not a redis backend: " + backend);
}

}  // namespace

bool IsRedisBackend(const std::string& backend) {
  return backend == "redis" || backend == "redis_cluster";
}

absl::StatusOr<storage::StoreOptions> RedisBackendOptions(const std::string& backend) {
  PERPER_ASSIGN_OR_RETURN(std::vector<std::string> masters, Masters(backend));
  storage::StoreOptions options;
  options.kind = "redis";
  options.redis_addresses = std::move(masters);
  options.redis_cluster = backend == "redis" ? "no" : "yes";
  return options;
}

absl::StatusOr<storage::StoreOptions> BackendStoreOptions(const std::string& backend,
                                                          const std::string& data_dir) {
  if (IsRedisBackend(backend)) return RedisBackendOptions(backend);
  storage::StoreOptions options;
  options.kind = backend;
  options.data_dir = data_dir;
  return options;
}

absl::Status ResetRedisBackend(const std::string& backend) {
  PERPER_ASSIGN_OR_RETURN(std::vector<std::string> masters, Masters(backend));
  for (const std::string& address : masters) {
    size_t colon = address.rfind(':');
    PERPER_ASSIGN_OR_RETURN(auto connection,
                            storage::redis::RedisConnection::Connect(
                                address.substr(0, colon), std::stoi(address.substr(colon + 1))));
    PERPER_RETURN_IF_ERROR(connection->Run({"FLUSHALL"}).status());
  }
  return absl::OkStatus();
}

}  // namespace perper::testing
