// SPDX-License-Identifier: MIT
#include "perper/fabric/fabric_server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include "perper/common/logging.h"
#include "perper/common/status_macros.h"
#include "perper/fabric/descriptors_service.h"
#include "perper/fabric/executions_service.h"
#include "perper/fabric/instances_service.h"
#include "perper/fabric/introspection_service.h"
#include "perper/fabric/keda_service.h"
#include "perper/fabric/states_service.h"
#include "perper/fabric/streams_service.h"

namespace perper::fabric {

struct FabricServer::Services {
  explicit Services(const ServiceContext& context)
      : executions(context),
        instances(context),
        streams(context),
        dictionary(context),
        list(context),
        descriptors(context),
        introspection(context),
        keda(context) {}
  ExecutionsService executions;
  InstancesService instances;
  StreamsService streams;
  StatesDictionaryService dictionary;
  StatesListService list;
  DescriptorsService descriptors;
  IntrospectionService introspection;
  KedaService keda;  // KEDA's external scaler, for Kubernetes.
};

absl::StatusOr<std::unique_ptr<FabricServer>> FabricServer::Start(const FabricOptions& options) {
  PERPER_ASSIGN_OR_RETURN(auto store, storage::OpenStore(options.store));
  return Start(options, std::move(store));
}

namespace {

// Why gRPC could not listen on `address` (it does not say): the system's answer to binding a
// TCP socket there ourselves, such as "address already in use".
std::string WhyCannotBind(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "*") host = "0.0.0.0";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int error = getaddrinfo(host.c_str(), address.substr(colon + 1).c_str(), &hints, &found);
      error != 0) {
    return gai_strerror(error);
  }
  std::string reason = "gRPC could not bind it";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      reason = std::strerror(errno);
      for (char& c : reason) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    close(fd);
  }
  freeaddrinfo(found);
  return reason;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FabricServer>> FabricServer::Start(
    const FabricOptions& options, std::unique_ptr<storage::Store> store) {
  std::unique_ptr<FabricServer> server(new FabricServer());
  server->store_ = std::move(store);
  server->store_->SetObserver(&server->hub_);

  server->open_calls_ = std::make_unique<OpenCalls>(options.limits.max_open_calls);
  ServiceContext context{server->store_.get(), &server->hub_, options.limits};
  context.open_calls = server->open_calls_.get();
  context.listeners = &server->listeners_;
  // Writes that wait (an fsync, a round trip to Redis) run on a pool of their own, so they do
  // not hold gRPC's callback threads (RunWrite in unary.h).
  if (server->store_->WritesWait() && options.write_threads > 0) {
    server->writes_ = std::make_unique<WritePool>(options.write_threads);
    context.writes = server->writes_.get();
  }
  // Subscribers re-read the store on a hint; when each read is a round trip, hints are
  // delivered on the hub's own thread rather than on the writer's, which would otherwise wait
  // for every local listener to re-read before its write is answered.
  if (server->store_->ReadsWait()) server->hub_.StartDispatcher();
  server->services_ = std::make_unique<Services>(context);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), &port);
  // gRPC sets SO_REUSEPORT by default: a second Fabric on a busy port would then start too and
  // take half the connections. A busy port must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // gRPC's own limit leaves room for framing and for batches of values; each value is checked
  // against limits.max_value_bytes by the services.
  size_t max_message = options.limits.max_value_bytes * 4 + (4 << 20);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(max_message, INT32_MAX)));
  builder.SetMaxSendMessageSize(static_cast<int>(std::min<size_t>(max_message, INT32_MAX)));
  // A client that vanished without closing its connection (its host died, the network broke)
  // is noticed by pings: its calls end, and what they held (reservations, transient listeners)
  // is released, within keepalive time + timeout. Clients may ping as often as every 10 s.
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.limits.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.limits.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  // A listen call with nothing to send must still be pinged.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  Services& s = *server->services_;
  builder.RegisterService(&s.executions);
  builder.RegisterService(&s.instances);
  builder.RegisterService(&s.streams);
  builder.RegisterService(&s.dictionary);
  builder.RegisterService(&s.list);
  builder.RegisterService(&s.descriptors);
  builder.RegisterService(&s.introspection);
  builder.RegisterService(&s.keda);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError("cannot listen on " + options.listen_address + ": " +
                                  WhyCannotBind(options.listen_address));
  }
  std::string host = options.listen_address.substr(0, options.listen_address.rfind(':'));
  server->address_ = host + ":" + std::to_string(port);
  PERPER_LOG_INFO(Logger::kFabric, "listening on {} (storage {})", server->address_,
                  options.store.kind);
  return server;
}

void FabricServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ == nullptr) return;  // It never started (Start failed).
  PERPER_LOG_INFO(Logger::kFabric, "shutting down");
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  server_->Wait();
  PERPER_LOG_INFO(Logger::kFabric, "stopped");
}

void FabricServer::Wait() { server_->Wait(); }

FabricServer::~FabricServer() {
  Shutdown(absl::ZeroDuration());
  server_.reset();
  writes_.reset();  // Every call has finished, so every write it posted has run.
  hub_.StopDispatcher();
  // The services first: what they still hold (the KEDA service's metric streams) holds open
  // call slots, which must go back before the counter of open calls goes.
  services_.reset();
  open_calls_.reset();
  store_->SetObserver(nullptr);
}

}  // namespace perper::fabric
