// SPDX-License-Identifier: MIT
// Running a Fabric as a program: signals, the allocator's settings, the address file.
#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

#include "perper/common/files.h"
#include "perper/common/logging.h"
#include "perper/common/memory.h"
#include "perper/fabric/fabric_config.h"
#include "perper/storage/store_factory.h"

namespace perper::fabric {

void BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int RunFabricUntilSignalled(const FabricConfig& config) {
  if (absl::Status s = SetLogLevel(config.log_level); !s.ok()) {
    std::fprintf(stderr, "perper-fabric: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (config.options.store.kind == "redis" && config.options.store.redis_addresses.empty()) {
    std::fprintf(stderr,
                 "perper-fabric: redis: storage redis needs the Redis address, "
                 "host:port[,host:port...] (--redis, PERPER_REDIS or the redis key of the "
                 "config file)\n");
    return 2;
  }
  // Debian's abseil is built with mutex deadlock detection on: every lock and unlock updates a
  // global lock-order graph (about 5 % of the Fabric's CPU under load). It is a debugging aid;
  // the tests, which start Fabrics in their own processes through FabricServer, keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // No glibc fastbins: the Fabric frees many small blocks (stream items, protobuf strings) and
  // allocates large ones (packed listen responses, request buffers); every large allocation
  // first consolidated the fastbins (malloc_consolidate: 7-9 % of the Fabric's CPU pushing
  // streams). Small blocks still come from the per-thread caches.
  mallopt(M_MXFAST, 0);
  auto store = storage::OpenStore(config.options.store);
  if (!store.ok()) {
    std::string message(store.status().message());
    // An unreachable Redis must be recognisable from the message alone.
    if (config.options.store.kind == "redis") {
      message = "cannot open storage redis at " +
                absl::StrJoin(config.options.store.redis_addresses, ",") + ": " + message;
    }
    std::fprintf(stderr, "perper-fabric: %s\n", message.c_str());
    return 1;
  }
  auto server = FabricServer::Start(config.options, std::move(store).value());
  if (!server.ok()) {
    std::fprintf(stderr, "perper-fabric: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("perper-fabric listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  if (!config.address_file.empty()) {
    if (absl::Status s = WriteAddressFile(config.address_file, (*server)->address()); !s.ok()) {
      PERPER_LOG_ERROR(Logger::kFabric, "{}", std::string(s.message()));
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  int signal = 0;
  // SIGUSR1 logs glibc's heap statistics (what is in use against what is only kept free),
  // trims the heap and logs them again: that tells a leak from fragmentation in a running
  // Fabric (benchmarks/chaos_main.cc uses it).
  while (sigwait(&signals, &signal) == 0 && signal == SIGUSR1) {
    PERPER_LOG_INFO(Logger::kFabric, "{}", HeapStats());
    malloc_trim(0);
    PERPER_LOG_INFO(Logger::kFabric, "after malloc_trim, {}", HeapStats());
  }
  PERPER_LOG_INFO(Logger::kFabric, "received {}, stopping",
                  signal == SIGINT ? "SIGINT" : "SIGTERM");
  // Listen calls never end on their own, so the grace period only serves calls that are about
  // to answer; the rest are cancelled when it ends and their clients reconnect.
  (*server)->Shutdown(absl::Seconds(1));
  server->reset();  // Closes the store.
  return 0;
}

}  // namespace perper::fabric
