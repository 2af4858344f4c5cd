// SPDX-License-Identifier: MIT
// What the scaler watches in the Fabric, each on its own thread, feeding a scaler (ScalerEvents:
// the process Supervisor, or the ComposeScaler):
//
// - RegistryWatcher: a FabricExecutions.Listen on agent `Registry` (every execution is a live
//   instance; its `instance` field is the agent type). The executions before start_of_stream
//   become one SetInstances snapshot; later ones AddInstance; `deleted` RemoveInstance. When the
//   call fails it reconnects with back-off and sends a fresh snapshot.
// - PoolMonitor: every `interval`, FabricIntrospection.ListExecutions for each pool agent type
//   (unfinished only), reported with SetPending.
//
// Thread model: each class owns one thread, started by the constructor and joined by Stop()
// (or the destructor); Stop may be called from any thread, once or more.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

#include "perper/scaler/supervisor.h"

namespace perper::scaler {

class RegistryWatcher {
 public:
  // Keeps `supervisor`, which must outlive this watcher.
  RegistryWatcher(std::shared_ptr<grpc::Channel> channel, ScalerEvents& supervisor);
  ~RegistryWatcher();
  void Stop();

 private:
  void Loop();

  std::shared_ptr<grpc::Channel> channel_;
  ScalerEvents& supervisor_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

class PoolMonitor {
 public:
  // Keeps `supervisor`, which must outlive this monitor.
  PoolMonitor(std::shared_ptr<grpc::Channel> channel, ScalerEvents& supervisor,
              std::vector<std::string> agents, int max_pending, absl::Duration interval);
  ~PoolMonitor();
  void Stop();

 private:
  void Loop();

  std::shared_ptr<grpc::Channel> channel_;
  ScalerEvents& supervisor_;
  std::vector<std::string> agents_;
  int max_pending_;
  absl::Duration interval_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace perper::scaler
