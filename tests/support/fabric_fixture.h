// SPDX-License-Identifier: MIT
// Test support: a real Fabric over real gRPC on 127.0.0.1 with a free port, on the memory
// backend or on the rocksdb backend in a temporary directory, plus value helpers and
// condition waits.
//
//   class MyTest : public perper::testing::FabricTest {};
//   TEST_P(MyTest, Works) { auto stub = Executions(); ... }
//   INSTANTIATE_TEST_SUITE_P(Backends, MyTest, perper::testing::AllBackends(),
//                            perper::testing::BackendName);
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include <google/protobuf/any.pb.h>
#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/fabric/fabric_server.h"
#include "perper/grpc2/descriptors.grpc.pb.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {

// An in-process Fabric. Restart() stops it and starts a new one on the same data directory
// (rocksdb), or the same Redis (redis, redis_cluster: tests/support/redis_backends.h, emptied when
// the first Fabric starts), and the same port.
class InProcessFabric {
 public:
  // kind: "memory", "rocksdb", "redis" or "redis_cluster".
  explicit InProcessFabric(std::string kind, fabric::FabricLimits limits = {});
  ~InProcessFabric();

  const std::string& address() const { return server_->address(); }
  fabric::FabricServer& server() { return *server_; }
  std::shared_ptr<grpc::Channel> NewChannel() const;
  void Restart();
  void Stop();

 private:
  void StartServer(const std::string& listen_address);

  std::string kind_;
  fabric::FabricLimits limits_;
  TempDir data_dir_;
  std::unique_ptr<fabric::FabricServer> server_;
};

// Value-parameterized fixture over storage backends; one Fabric per test.
class FabricTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  void TearDown() override;

  InProcessFabric& fabric() { return *fabric_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  // Stubs on the shared channel.
  std::unique_ptr<grpc2::FabricExecutions::Stub> Executions();
  std::unique_ptr<grpc2::FabricInstances::Stub> Instances();
  std::unique_ptr<grpc2::FabricStreams::Stub> Streams();
  std::unique_ptr<grpc2::FabricStatesDictionary::Stub> Dictionary();
  std::unique_ptr<grpc2::FabricStatesList::Stub> List();
  std::unique_ptr<grpc2::FabricProtobufDescriptors::Stub> Descriptors();
  std::unique_ptr<grpc2::FabricIntrospection::Stub> Introspection();
  // Reconnects the shared channel after fabric().Restart().
  void Reconnect();

 private:
  std::unique_ptr<InProcessFabric> fabric_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Every backend: memory, rocksdb, and redis on one server and on a 3-master cluster
// (tests/support/redis_backends.h).
inline ::testing::internal::ParamGenerator<std::string> AllBackends() {
  return ::testing::Values(std::string("memory"), std::string("rocksdb"), std::string("redis"),
                           std::string("redis_cluster"));
}
inline std::string BackendName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

// A client context with a deadline (default 10 s), so that a hung call fails the test.
std::unique_ptr<grpc::ClientContext> Context(
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Values as the SDKs pack them.
google::protobuf::Any Int64Value(int64_t v);
google::protobuf::Any Int32Value(int32_t v);
google::protobuf::Any StringValue(const std::string& v);
google::protobuf::Any BytesValue(const std::string& v);
// The int of an Int64Value or Int32Value Any; fails the test on another type.
int64_t IntOf(const google::protobuf::Any& any);
std::string StringOf(const google::protobuf::Any& any);

// The value of a call that must succeed: a failure fails the test and gives T(). By value, so a
// listing can be iterated directly (a range-for over StatusOr::value() of a temporary dangles).
template <class T>
T Ok(absl::StatusOr<T> result) {
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? std::move(result).value() : T();
}

// Polls `condition` until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace perper::testing
