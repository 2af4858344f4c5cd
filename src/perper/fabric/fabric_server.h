// SPDX-License-Identifier: MIT
// FabricServer: the gRPC server of the Fabric. It owns the store, the change hub and every
// service, and serves them on one address.
//
//   FabricOptions options;
//   options.listen_address = "127.0.0.1:0";
//   options.store.kind = "memory";
//   auto server = FabricServer::Start(options);   // StatusOr<unique_ptr<FabricServer>>
//   std::string address = (*server)->address();   // "127.0.0.1:40517"
//   (*server)->Shutdown(absl::Seconds(5));
//
// Thread safety: Start, Shutdown and the accessors may be called from any thread; Shutdown is
// idempotent.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <grpcpp/server.h>

#include "perper/fabric/change_hub.h"
#include "perper/fabric/service_context.h"
#include "perper/fabric/write_pool.h"
#include "perper/storage/store.h"
#include "perper/storage/store_factory.h"

namespace perper::fabric {

struct FabricOptions {
  std::string listen_address = "127.0.0.1:40400";
  storage::StoreOptions store;
  FabricLimits limits;
  // Threads that run store writes when the store's writes wait (Store::WritesWait: rocksdb with
  // synced writes, redis; write_pool.h): how many writes can wait together, sharing one fsync.
  // 0: inline.
  size_t write_threads = 64;
};

class FabricServer {
 public:
  // Opens the store and starts serving. Errors: the store cannot be opened, or the address
  // cannot be bound (UNAVAILABLE, naming the address).
  static absl::StatusOr<std::unique_ptr<FabricServer>> Start(const FabricOptions& options);

  // Starts serving an already opened store (tests use this to share a store across restarts).
  static absl::StatusOr<std::unique_ptr<FabricServer>> Start(const FabricOptions& options,
                                                             std::unique_ptr<storage::Store> store);

  ~FabricServer();

  // The bound address, with the port the system chose when the options asked for port 0.
  const std::string& address() const { return address_; }
  storage::Store& store() { return *store_; }
  ChangeHub& hub() { return hub_; }
  // How many long-lived calls are open now (open_calls.h).
  size_t open_calls() const { return open_calls_->open(); }

  // Stops accepting calls, lets in-flight calls finish until `grace` has passed, cancels the
  // rest, then closes the store.
  void Shutdown(absl::Duration grace);

  // Blocks until Shutdown has completed.
  void Wait();

 private:
  FabricServer() = default;
  struct Services;

  std::unique_ptr<storage::Store> store_;
  ChangeHub hub_;
  std::unique_ptr<WritePool> writes_;  // Null unless the store's writes wait.
  std::unique_ptr<OpenCalls> open_calls_;
  AgentListeners listeners_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace perper::fabric
