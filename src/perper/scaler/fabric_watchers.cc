// SPDX-License-Identifier: MIT
#include "perper/scaler/fabric_watchers.h"

#include <algorithm>
#include <chrono>

#include "perper/common/logging.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"

namespace perper::scaler {

RegistryWatcher::RegistryWatcher(std::shared_ptr<grpc::Channel> channel, ScalerEvents& supervisor)
    : channel_(std::move(channel)), supervisor_(supervisor), thread_([this] { Loop(); }) {}

RegistryWatcher::~RegistryWatcher() { Stop(); }

void RegistryWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (call_ != nullptr) call_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void RegistryWatcher::Loop() {
  auto stub = grpc2::FabricExecutions::NewStub(channel_);
  absl::Duration backoff = absl::Milliseconds(100);
  bool warned = false;
  while (true) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      call_ = &context;
    }
    grpc2::ExecutionsListenRequest request;
    request.mutable_instance_filter()->set_agent("Registry");
    auto reader = stub->Listen(&context, request);
    std::vector<InstanceInfo> initial;
    bool live = false;
    grpc2::ExecutionsListenResponse message;
    while (reader->Read(&message)) {
      if (message.start_of_stream()) {
        live = true;
        supervisor_.SetInstances(std::move(initial));
        initial.clear();
        backoff = absl::Milliseconds(100);
        warned = false;
        continue;
      }
      InstanceInfo instance{message.execution().execution(), message.instance().instance()};
      if (message.deleted()) {
        if (live) supervisor_.RemoveInstance(instance.id);
      } else if (live) {
        supervisor_.AddInstance(std::move(instance));
      } else {
        initial.push_back(std::move(instance));
      }
    }
    grpc::Status status = reader->Finish();
    absl::MutexLock lock(&mu_);
    call_ = nullptr;
    if (stopping_) return;
    if (!warned) {
      PERPER_LOG_WARN(Logger::kScaler, "watching Registry failed ({}); reconnecting",
                      status.error_message());
      warned = true;
    }
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

PoolMonitor::PoolMonitor(std::shared_ptr<grpc::Channel> channel, ScalerEvents& supervisor,
                         std::vector<std::string> agents, int max_pending, absl::Duration interval)
    : channel_(std::move(channel)),
      supervisor_(supervisor),
      agents_(std::move(agents)),
      max_pending_(max_pending),
      interval_(interval),
      thread_([this] { Loop(); }) {}

PoolMonitor::~PoolMonitor() { Stop(); }

void PoolMonitor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void PoolMonitor::Loop() {
  auto stub = grpc2::FabricIntrospection::NewStub(channel_);
  while (true) {
    for (const std::string& agent : agents_) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      grpc2::IntrospectionListExecutionsRequest request;
      request.set_agent(agent);
      request.set_limit(static_cast<uint32_t>(std::clamp(max_pending_, 1, 100000)));
      grpc2::IntrospectionListExecutionsResponse response;
      grpc::Status status = stub->ListExecutions(&context, request, &response);
      if (status.ok()) {
        supervisor_.SetPending(agent, response.executions_size());
      } else {
        PERPER_LOG_DEBUG(Logger::kScaler, "[agent={}] listing executions failed: {}", agent,
                         status.error_message());
      }
    }
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) return;
  }
}

}  // namespace perper::scaler
