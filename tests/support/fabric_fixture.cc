// SPDX-License-Identifier: MIT
#include "tests/support/fabric_fixture.h"

#include "tests/support/redis_backends.h"

namespace perper::testing {

InProcessFabric::InProcessFabric(std::string kind, fabric::FabricLimits limits)
    : kind_(std::move(kind)), limits_(limits) {
  if (IsRedisBackend(kind_)) {
    absl::Status reset = ResetRedisBackend(kind_);
    if (!reset.ok()) {
      ADD_FAILURE() << "redis did not start: " << reset;
      std::abort();
    }
  }
  StartServer("127.0.0.1:0");
}

InProcessFabric::~InProcessFabric() { Stop(); }

void InProcessFabric::StartServer(const std::string& listen_address) {
  fabric::FabricOptions options;
  options.listen_address = listen_address;
  absl::StatusOr<storage::StoreOptions> store =
      BackendStoreOptions(kind_, data_dir_.path() + "/data");
  if (!store.ok()) {
    ADD_FAILURE() << "redis did not start: " << store.status();
    std::abort();
  }
  options.store = *std::move(store);
  options.limits = limits_;
  auto server = fabric::FabricServer::Start(options);
  if (!server.ok()) {
    ADD_FAILURE() << "fabric did not start: " << server.status();
    std::abort();
  }
  server_ = std::move(server).value();
}

void InProcessFabric::Stop() {
  if (server_ != nullptr) {
    server_->Shutdown(absl::Seconds(1));
    server_.reset();
  }
}

void InProcessFabric::Restart() {
  std::string address = server_->address();
  Stop();
  StartServer(address);
}

std::shared_ptr<grpc::Channel> InProcessFabric::NewChannel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // A private subchannel per channel, so tests do not share connections by accident.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
}

void FabricTest::SetUp() {
  fabric_ = std::make_unique<InProcessFabric>(GetParam());
  channel_ = fabric_->NewChannel();
}

void FabricTest::TearDown() {
  channel_.reset();
  fabric_.reset();
}

void FabricTest::Reconnect() { channel_ = fabric_->NewChannel(); }

std::unique_ptr<grpc2::FabricExecutions::Stub> FabricTest::Executions() {
  return grpc2::FabricExecutions::NewStub(channel_);
}
std::unique_ptr<grpc2::FabricInstances::Stub> FabricTest::Instances() {
  return grpc2::FabricInstances::NewStub(channel_);
}
std::unique_ptr<grpc2::FabricStreams::Stub> FabricTest::Streams() {
  return grpc2::FabricStreams::NewStub(channel_);
}
std::unique_ptr<grpc2::FabricStatesDictionary::Stub> FabricTest::Dictionary() {
  return grpc2::FabricStatesDictionary::NewStub(channel_);
}
std::unique_ptr<grpc2::FabricStatesList::Stub> FabricTest::List() {
  return grpc2::FabricStatesList::NewStub(channel_);
}
std::unique_ptr<grpc2::FabricProtobufDescriptors::Stub> FabricTest::Descriptors() {
  return grpc2::FabricProtobufDescriptors::NewStub(channel_);
}
std::unique_ptr<grpc2::FabricIntrospection::Stub> FabricTest::Introspection() {
  return grpc2::FabricIntrospection::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Context(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

google::protobuf::Any Int64Value(int64_t v) {
  google::protobuf::Int64Value value;
  value.set_value(v);
  google::protobuf::Any any;
  any.PackFrom(value);
  return any;
}

google::protobuf::Any Int32Value(int32_t v) {
  google::protobuf::Int32Value value;
  value.set_value(v);
  google::protobuf::Any any;
  any.PackFrom(value);
  return any;
}

google::protobuf::Any StringValue(const std::string& v) {
  google::protobuf::StringValue value;
  value.set_value(v);
  google::protobuf::Any any;
  any.PackFrom(value);
  return any;
}

google::protobuf::Any BytesValue(const std::string& v) {
  google::protobuf::BytesValue value;
  value.set_value(v);
  google::protobuf::Any any;
  any.PackFrom(value);
  return any;
}

int64_t IntOf(const google::protobuf::Any& any) {
  google::protobuf::Int64Value v64;
  if (any.UnpackTo(&v64)) return v64.value();
  google::protobuf::Int32Value v32;
  if (any.UnpackTo(&v32)) return v32.value();
  ADD_FAILURE() << "not an integer value: " << any.type_url();
  return -1;
}

std::string StringOf(const google::protobuf::Any& any) {
  google::protobuf::StringValue value;
  if (!any.UnpackTo(&value)) {
    ADD_FAILURE() << "not a string value: " << any.type_url();
    return {};
  }
  return value.value();
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace perper::testing
