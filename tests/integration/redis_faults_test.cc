// SPDX-License-Identifier: MIT
// A Fabric on Redis when Redis fails: answers are UNAVAILABLE or RESOURCE_EXHAUSTED, never a
// false acknowledgement, and a listen call ends UNAVAILABLE (its client reconnects) instead of
// waiting or claiming the stream was deleted. Each test owns its redis-server, so it can kill it.
#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "perper/fabric/fabric_server.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/redis_process.h"

namespace perper::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class RedisFaultsTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> redis_options = {}) {
    redis_ = std::make_unique<RedisProcess>(false, std::move(redis_options));
    ASSERT_TRUE(redis_->Start().ok());
    fabric::FabricOptions options;
    options.listen_address = "127.0.0.1:0";
    options.store.kind = "redis";
    options.store.redis_addresses = {redis_->address()};
    // Commands to a dead server fail fast; the client's own retries are bounded by this.
    auto server = fabric::FabricServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    channel_ =
        grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args);
    streams_ = grpc2::FabricStreams::NewStub(channel_);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
  }

  std::unique_ptr<RedisProcess> redis_;
  std::unique_ptr<fabric::FabricServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc2::FabricStreams::Stub> streams_;
};

TEST_F(RedisFaultsTest, WritesAfterRedisDiesAreUnavailableNotAcknowledged) {
  Start();
  ASSERT_TRUE(CreateStream(*streams_, "s", /*ephemeral=*/false).ok());
  ASSERT_TRUE(WriteKeys(*streams_, "s", {1}).ok());
  redis_->Kill();
  grpc::Status written = WriteKeys(*streams_, "s", {2});
  EXPECT_EQ(written.error_code(), grpc::StatusCode::UNAVAILABLE) << written.error_message();
  EXPECT_NE(written.error_message().find(redis_->address()), std::string::npos)
      << written.error_message();
}

TEST_F(RedisFaultsTest, AnOpenListenCallEndsUnavailableWhenRedisDies) {
  Start();
  ASSERT_TRUE(CreateStream(*streams_, "s", /*ephemeral=*/false).ok());
  ASSERT_TRUE(WriteKeys(*streams_, "s", {1}).ok());
  Listen listen(*streams_, ListenRequest("s"), seconds(30));
  ASSERT_EQ(listen.NextKey(), 1);
  auto killed = std::chrono::steady_clock::now();
  redis_->Kill();
  grpc::Status ended = listen.Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE) << ended.error_message();
  // The bus notices the lost server within its ping interval and makes every call re-read.
  EXPECT_LT(std::chrono::steady_clock::now() - killed, seconds(15));
}

TEST_F(RedisFaultsTest, AFullRedisAnswersResourceExhausted) {
  Start({"--maxmemory", "4mb", "--maxmemory-policy", "noeviction"});
  ASSERT_TRUE(CreateStream(*streams_, "s", /*ephemeral=*/false).ok());
  grpc::Status status;
  int64_t key = 0;
  std::string big(64 << 10, 'x');
  while (status.ok() && key < 1000) {
    status = WriteItem(*streams_, "s", ++key, StringValue(big));
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  // What was acknowledged is there (read without listening: a listen call registers a
  // listener, which is a write, and a full Redis refuses writes).
  auto introspection = grpc2::FabricIntrospection::NewStub(channel_);
  grpc2::IntrospectionListStreamsRequest request;
  request.set_stream_prefix("s");
  grpc2::IntrospectionListStreamsResponse response;
  ASSERT_TRUE(introspection->ListStreams(Context().get(), request, &response).ok());
  ASSERT_EQ(response.streams_size(), 1);
  EXPECT_EQ(response.streams(0).item_count(), static_cast<uint64_t>(key - 1));
}

}  // namespace
}  // namespace perper::testing
