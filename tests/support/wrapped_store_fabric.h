// SPDX-License-Identifier: MIT
// Test support for cost tests: a Fabric in this process (127.0.0.1, a free port) on a backend
// whose execution or stream store the test sees through its own wrapper (counting calls,
// holding writes), so a test can observe how the services use the store.
//
//   class CountingFabric {
//    public:
//     explicit CountingFabric(const std::string& kind)
//         : fabric_(kind, [this](WrappedStore& store) {
//             streams_ = std::make_unique<CountingStreams>(store.inner().streams());
//             store.set_streams(streams_.get());
//           }) {}
//    private:
//     std::unique_ptr<CountingStreams> streams_;  // Declared first: outlives the server.
//     WrappedStoreFabric fabric_;
//   };
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "perper/fabric/fabric_server.h"
#include "perper/storage/store.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {

// A Store that forwards to a backend's, except for the parts a test replaced.
// Not thread-safe to configure; configure before the server starts.
class WrappedStore final : public storage::Store {
 public:
  explicit WrappedStore(std::unique_ptr<storage::Store> inner) : inner_(std::move(inner)) {}

  storage::Store& inner() { return *inner_; }
  // The wrapper to use instead of the backend's; it must outlive the server.
  void set_executions(storage::ExecutionStore* executions) { executions_ = executions; }
  void set_streams(storage::StreamStore* streams) { streams_ = streams; }

  storage::ExecutionStore& executions() override {
    return executions_ != nullptr ? *executions_ : inner_->executions();
  }
  storage::StreamStore& streams() override {
    return streams_ != nullptr ? *streams_ : inner_->streams();
  }
  storage::StateStore& states() override { return inner_->states(); }
  storage::DescriptorStore& descriptors() override { return inner_->descriptors(); }
  void SetObserver(storage::ChangeObserver* observer) override { inner_->SetObserver(observer); }
  absl::StatusOr<storage::StepResult> Step(const storage::StepRequest& request) override {
    return inner_->Step(request);
  }
  bool WritesWait() const override { return inner_->WritesWait(); }
  bool ReadsWait() const override { return inner_->ReadsWait(); }

 private:
  std::unique_ptr<storage::Store> inner_;
  storage::ExecutionStore* executions_ = nullptr;
  storage::StreamStore* streams_ = nullptr;
};

// The Fabric: `wrap` installs the test's wrappers on the store before the server starts.
// Aborts the test program when the backend or the server cannot start.
class WrappedStoreFabric {
 public:
  WrappedStoreFabric(const std::string& kind, const std::function<void(WrappedStore&)>& wrap);
  ~WrappedStoreFabric();
  WrappedStoreFabric(const WrappedStoreFabric&) = delete;
  WrappedStoreFabric& operator=(const WrappedStoreFabric&) = delete;

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  TempDir dir_;
  std::unique_ptr<fabric::FabricServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace perper::testing
