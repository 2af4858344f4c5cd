// SPDX-License-Identifier: MIT
#include "tests/support/wrapped_store_fabric.h"

#include <cstdlib>
#include <utility>

#include <gtest/gtest.h>

#include "perper/storage/store_factory.h"
#include "tests/support/redis_backends.h"

namespace perper::testing {

WrappedStoreFabric::WrappedStoreFabric(const std::string& kind,
                                       const std::function<void(WrappedStore&)>& wrap) {
  fabric::FabricOptions options;
  options.listen_address = "127.0.0.1:0";
  absl::Status reset = IsRedisBackend(kind) ? ResetRedisBackend(kind) : absl::OkStatus();
  absl::StatusOr<storage::StoreOptions> store_options =
      reset.ok() ? BackendStoreOptions(kind, dir_.path() + "/data")
                 : absl::StatusOr<storage::StoreOptions>(reset);
  if (!store_options.ok()) {
    ADD_FAILURE() << "redis did not start: " << store_options.status();
    std::abort();
  }
  options.store = *std::move(store_options);
  auto inner = storage::OpenStore(options.store);
  if (!inner.ok()) {
    ADD_FAILURE() << inner.status();
    std::abort();
  }
  auto store = std::make_unique<WrappedStore>(std::move(inner).value());
  wrap(*store);
  auto server = fabric::FabricServer::Start(options, std::move(store));
  if (!server.ok()) {
    ADD_FAILURE() << server.status();
    std::abort();
  }
  server_ = std::move(server).value();
  channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
}

WrappedStoreFabric::~WrappedStoreFabric() { server_->Shutdown(absl::Seconds(1)); }

}  // namespace perper::testing
