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
  if (IsRedisBackend(kind)) {
    absl::Status reset = ResetRedisBackend(kind);
    absl::StatusOr<storage::StoreOptions> redis =
        reset.ok() ? RedisBackendOptions(kind) : absl::StatusOr<storage::StoreOptions>(reset);
    if (!redis.ok()) {
      ADD_FAILURE() << "redis did not start: " << redis.status();
      std::abort();
    }
    options.store = *std::move(redis);
  } else {
    options.store.kind = kind;
    options.store.data_dir = dir_.path() + "/data";
  }
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
