// SPDX-License-Identifier: MIT
// What a malformed, oversized or silent client gets, at once, and that it costs nobody else:
// bidirectional calls whose first message is missing, does not parse, or never comes; IDs and
// error texts over their limits; status messages bounded whatever the client sent; a stream's
// long error delivered without breaking its listeners' connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/support/byte_buffer.h>

#include "perper/common/status_macros.h"
#include "perper/common/text.h"
#include "tests/integration/executions_helpers.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Le;
using ::testing::SizeIs;
using Clock = std::chrono::steady_clock;

constexpr auto kFirstMessageTimeout = std::chrono::milliseconds(500);

fabric::FabricLimits TestLimits() {
  fabric::FabricLimits limits;
  limits.first_message_timeout = absl::FromChrono(kFirstMessageTimeout);
  return limits;
}

class BadInputTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<InProcessFabric>(GetParam(), TestLimits());
    channel_ = fabric_->NewChannel();
  }

  // A bidirectional call of `method` ("/perper.grpc2.Service/Method") in raw bytes.
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> RawBidi(
      grpc::ClientContext* context, const std::string& method) {
    method_name_ = method;
    grpc::internal::RpcMethod rpc(method_name_.c_str(), grpc::internal::RpcMethod::BIDI_STREAMING,
                                  channel_);
    return std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>(
        grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
            channel_.get(), rpc, context));
  }

  std::unique_ptr<InProcessFabric> fabric_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string method_name_;
};

std::string ListenAndReserveMethod() {
  return std::string("/") + grpc2::FabricExecutions::service_full_name() + "/ListenAndReserve";
}
std::string ListenItemsAndMoveMethod() {
  return std::string("/") + grpc2::FabricStreams::service_full_name() + "/ListenItemsAndMove";
}

// Bytes that are not a protobuf message: field 1, length-delimited, with a varint length of
// eleven continuation bytes.
grpc::ByteBuffer Unparsable() {
  static const char kBytes[] = "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
  grpc::Slice slice(kBytes, sizeof(kBytes) - 1);
  return grpc::ByteBuffer(&slice, 1);
}

// Reads until the call ends and returns its status, with how long that took.
grpc::Status EndOf(grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>& stream,
                   Clock::duration* took = nullptr) {
  Clock::time_point start = Clock::now();
  grpc::ByteBuffer ignored;
  while (stream.Read(&ignored)) {
  }
  grpc::Status status = stream.Finish();
  if (took != nullptr) *took = Clock::now() - start;
  return status;
}

TEST_P(BadInputTest, BidiCallsWithoutAFirstMessageEndAtOnce) {
  for (const std::string& method : {ListenAndReserveMethod(), ListenItemsAndMoveMethod()}) {
    auto context = Context();
    auto stream = RawBidi(context.get(), method);
    ASSERT_TRUE(stream->WritesDone());
    Clock::duration took;
    grpc::Status status = EndOf(*stream, &took);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("first message")) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("is missing or could not be parsed")) << method;
    // At once: well before the silent-client timeout could have ended it.
    EXPECT_LT(took, kFirstMessageTimeout) << method;
  }
}

TEST_P(BadInputTest, BidiCallsWhoseFirstMessageDoesNotParseEndAtOnce) {
  for (const std::string& method : {ListenAndReserveMethod(), ListenItemsAndMoveMethod()}) {
    auto context = Context();
    auto stream = RawBidi(context.get(), method);
    (void)stream->Write(Unparsable());
    Clock::duration took;
    grpc::Status status = EndOf(*stream, &took);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("could not be parsed")) << method;
    EXPECT_LT(took, kFirstMessageTimeout) << method;
  }
}

TEST_P(BadInputTest, BidiCallsOfASilentClientEndAfterTheFirstMessageTimeout) {
  for (const std::string& method : {ListenAndReserveMethod(), ListenItemsAndMoveMethod()}) {
    auto context = Context();
    auto stream = RawBidi(context.get(), method);
    Clock::duration took;
    grpc::Status status = EndOf(*stream, &took);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("no first message within 500ms")) << method;
    EXPECT_GE(took, kFirstMessageTimeout - std::chrono::milliseconds(50)) << method;
    EXPECT_LT(took, std::chrono::seconds(5)) << method;
  }
}

TEST_P(BadInputTest, AFirstMessageInTimeDisarmsTheTimeout) {
  auto stub = grpc2::FabricExecutions::NewStub(channel_);
  ReserveCall call(*stub, "ag", 1);
  call.ExpectStart();
  // Well past the timeout, the call is still open and delivers.
  std::this_thread::sleep_for(kFirstMessageTimeout * 2);  // Waiting for nothing to happen.
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  EXPECT_EQ(call.NextExecution(), "e1");
}

TEST_P(BadInputTest, AnIdOverTheLimitIsInvalidArgumentWithABoundedMessage) {
  const std::string long_id(8000, 'x');
  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  auto streams = grpc2::FabricStreams::NewStub(channel_);
  auto dictionary = grpc2::FabricStatesDictionary::NewStub(channel_);

  std::vector<std::pair<std::string, grpc::Status>> answers;
  answers.emplace_back("execution.execution",
                       CreateExecution(*executions, long_id, "ag", "in", "Do"));
  answers.emplace_back("instance.agent", CreateExecution(*executions, "e", long_id, "in", "Do"));
  {
    grpc2::ExecutionsGetResultRequest request;
    request.mutable_execution()->set_execution(long_id);
    grpc2::ExecutionsGetResultResponse response;
    answers.emplace_back("execution.execution",
                         executions->GetResult(Context().get(), request, &response));
  }
  {
    grpc2::StreamsCreateRequest request;
    request.mutable_stream()->set_stream(long_id);
    google::protobuf::Empty empty;
    answers.emplace_back("stream.stream", streams->Create(Context().get(), request, &empty));
  }
  {
    grpc2::StatesDictionaryOperateRequest request;
    request.mutable_dictionary()->set_dictionary(long_id);
    *request.mutable_key() = StringValue("k");
    grpc2::StatesDictionaryOperateResponse response;
    answers.emplace_back("dictionary.dictionary",
                         dictionary->Operate(Context().get(), request, &response));
  }
  {
    grpc2::StreamsListenItemsRequest request;
    request.mutable_stream()->set_stream("s");
    request.set_listener_name(long_id);
    auto context = Context();
    auto reader = streams->ListenItems(context.get(), request);
    grpc2::StreamsListenItemsResponse response;
    EXPECT_FALSE(reader->Read(&response));
    answers.emplace_back("listener_name", reader->Finish());
  }
  for (const auto& [field, status] : answers) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_THAT(status.error_message(),
                HasSubstr(field + " is 8000 bytes, over the limit of 1024 bytes"));
    EXPECT_THAT(status.error_message(), HasSubstr("…(8000 bytes)")) << field;
    EXPECT_THAT(status.error_message(), SizeIs(Le(kMaxStatusMessageBytes))) << field;
  }
}

TEST_P(BadInputTest, LongIdsCostOtherCallsOnTheSameConnectionNothing) {
  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  ASSERT_TRUE(CreateExecution(*executions, "known", "ag", "in", "Do").ok());
  ASSERT_TRUE(CompleteExecution(*executions, "known", {StringValue("r")}).ok());
  std::atomic<int> ok_calls{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i) {
        grpc2::ExecutionsGetResultRequest request;
        // Every other call asks with an ID far over the limit.
        const bool bad = (i + t) % 2 == 0;
        request.mutable_execution()->set_execution(bad ? std::string(20000, 'b') : "known");
        grpc2::ExecutionsGetResultResponse response;
        grpc::Status status = executions->GetResult(Context().get(), request, &response);
        if (bad && status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          ++refused;
        } else if (!bad && status.ok() && response.results_size() == 1) {
          ++ok_calls;
        } else {
          ++other;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(refused.load(), 500);
  EXPECT_EQ(ok_calls.load(), 500);
  EXPECT_EQ(other.load(), 0);
  EXPECT_TRUE(CreateExecution(*executions, "after", "ag", "in", "Do").ok());
}

TEST_P(BadInputTest, AnUnknownLongIdIsQuotedShortenedWithItsLength) {
  const std::string id(1000, 'q');  // Within the ID limit, too long to quote whole.
  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  grpc::Status status = CompleteExecution(*executions, id, {StringValue("r")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr(std::string(64, 'q') + "…(1000 bytes) not found"));
  EXPECT_THAT(status.error_message(), SizeIs(Le(200u)));
}

TEST_P(BadInputTest, ErrorTextsOverTheLimitAreResourceExhausted) {
  const std::string long_error(100 * 1024, 'e');
  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  auto streams = grpc2::FabricStreams::NewStub(channel_);
  ASSERT_TRUE(CreateExecution(*executions, "e1", "ag", "in", "Do").ok());
  grpc::Status status = CompleteExecution(*executions, "e1", {}, long_error);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("error.message is 102400 bytes, over the limit of 65536 bytes"));

  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("s1");
  google::protobuf::Empty empty;
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  grpc2::StreamsCompleteRequest complete;
  complete.mutable_stream()->set_stream("s1");
  complete.mutable_error()->set_message(long_error);
  status = streams->Complete(Context().get(), complete, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("error.message is 102400 bytes, over the limit of 65536 bytes"));
  // Neither was applied.
  grpc2::ExecutionsGetResultRequest get;
  get.mutable_execution()->set_execution("e1");
  grpc2::ExecutionsGetResultResponse result;
  EXPECT_EQ(executions->GetResult(Context(std::chrono::milliseconds(200)).get(), get, &result)
                .error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_P(BadInputTest, AStreamsLongErrorReachesItsListenersCutAndTheConnectionStaysUp) {
  // Within the error limit, far over what a status message may carry.
  std::string error;
  while (error.size() < 60000) error += "é line " + std::to_string(error.size()) + "; ";
  auto streams = grpc2::FabricStreams::NewStub(channel_);
  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("failing");
  google::protobuf::Empty empty;
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());

  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<grpc2::StreamsListenItemsResponse>>> readers;
  for (int i = 0; i < 3; ++i) {
    grpc2::StreamsListenItemsRequest listen;
    listen.mutable_stream()->set_stream("failing");
    contexts.push_back(Context());
    readers.push_back(streams->ListenItems(contexts.back().get(), listen));
  }
  ASSERT_TRUE(WaitFor([&] {
    auto listeners = fabric_->server().store().streams().ListListeners("failing");
    return listeners.ok() && listeners->size() == 3;
  }));
  grpc2::StreamsCompleteRequest complete;
  complete.mutable_stream()->set_stream("failing");
  complete.mutable_error()->set_message(error);
  ASSERT_TRUE(streams->Complete(Context().get(), complete, &empty).ok());

  for (auto& reader : readers) {
    grpc2::StreamsListenItemsResponse response;
    EXPECT_FALSE(reader->Read(&response));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
    EXPECT_THAT(status.error_message(),
                HasSubstr("stream failing completed with an error: é line 0; "));
    EXPECT_THAT(status.error_message(), HasSubstr("bytes in all]"));
    EXPECT_THAT(status.error_message(), SizeIs(Le(kMaxStatusMessageBytes)));
  }
  // The connection the listeners shared is still up for everything else.
  create.mutable_stream()->set_stream("after");
  EXPECT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  // And the whole text is kept: a listener that comes later gets the same cut message.
  auto context = Context();
  grpc2::StreamsListenItemsRequest listen;
  listen.mutable_stream()->set_stream("failing");
  auto late = streams->ListenItems(context.get(), listen);
  grpc2::StreamsListenItemsResponse response;
  EXPECT_FALSE(late->Read(&response));
  EXPECT_EQ(late->Finish().error_code(), grpc::StatusCode::UNKNOWN);
}

TEST_P(BadInputTest, CompletedExecutionsHoldNoReservation) {
  auto stub = grpc2::FabricExecutions::NewStub(channel_);
  auto& executions = fabric_->server().store().executions();
  ReserveCall call(*stub, "ag", 2, "w");
  call.ExpectStart();
  ASSERT_TRUE(CreateExecution(*stub, "on-call", "ag", "in", "Do").ok());
  ASSERT_TRUE(CreateExecution(*stub, "unary", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "on-call");
  ASSERT_EQ(call.NextExecution(), "unary");
  ASSERT_THAT(executions.ListReservations("w", 10).value(), SizeIs(2));

  // Completed on the reservation call, and by the unary Complete: both release while the call
  // is still open.
  grpc2::ExecutionsListenAndReserveRequest request;
  request.add_completions()->mutable_execution()->set_execution("on-call");
  ASSERT_TRUE(call.Write(request));
  ASSERT_TRUE(CompleteExecution(*stub, "unary", {StringValue("done")}).ok());
  EXPECT_TRUE(WaitFor([&] { return executions.ListReservations("w", 10).value().empty(); }));
  // Nothing is offered again to another member.
  ReserveCall other(*stub, "ag", 2, "w");
  other.ExpectStart();
  ASSERT_TRUE(CreateExecution(*stub, "next", "ag", "in", "Do").ok());
  std::string next = other.NextExecution();
  EXPECT_EQ(next, "next");
}

INSTANTIATE_TEST_SUITE_P(Backends, BadInputTest, AllBackends(), BackendName);

// ---------------------------------------------------------------------------------------------
// The bound on long-lived calls.

class OpenCallsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fabric::FabricLimits limits;
    limits.max_open_calls = 3;
    fabric_ = std::make_unique<InProcessFabric>(GetParam(), limits);
    channel_ = fabric_->NewChannel();
  }
  std::unique_ptr<InProcessFabric> fabric_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_P(OpenCallsTest, ACallPastTheLimitIsRefusedAndASlotIsGivenBackWhenACallEnds) {
  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  auto streams = grpc2::FabricStreams::NewStub(channel_);
  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("s");
  google::protobuf::Empty empty;
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());

  auto first = std::make_unique<ReserveCall>(*executions, "ag", 1);
  first->ExpectStart();
  ListenCall second(*executions, "ag");
  EXPECT_TRUE(second.ReadInitial().empty());
  grpc2::StreamsListenItemsRequest listen;
  listen.mutable_stream()->set_stream("s");
  auto third_context = Context();
  auto third = streams->ListenItems(third_context.get(), listen);
  ASSERT_TRUE(WaitFor([&] { return fabric_->server().open_calls() == 3; }));

  // Every kind of long-lived call is refused now; unary calls are not counted.
  {
    ReserveCall refused(*executions, "ag", 1);
    grpc2::ExecutionsListenResponse response;
    EXPECT_FALSE(refused.Read(&response));
    grpc::Status status = refused.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(status.error_message(),
                HasSubstr("ListenAndReserve refused: the Fabric holds 3 open calls, its limit "
                          "(--max-open-calls)"));
  }
  {
    auto context = Context();
    auto refused = streams->ListenItems(context.get(), listen);
    grpc2::StreamsListenItemsResponse response;
    EXPECT_FALSE(refused->Read(&response));
    EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {
    grpc2::ExecutionsGetResultRequest request;
    request.mutable_execution()->set_execution("e");
    grpc2::ExecutionsGetResultResponse response;
    grpc::Status status = executions->GetResult(Context().get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(status.error_message(), HasSubstr("GetResult refused"));
  }
  EXPECT_TRUE(CreateExecution(*executions, "e1", "ag", "in", "Do").ok());

  // The calls already open go on, and a slot comes back when one ends.
  EXPECT_EQ(first->NextExecution(), "e1");
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return fabric_->server().open_calls() == 2; }));
  ReserveCall again(*executions, "ag", 1);
  EXPECT_EQ(again.NextExecution(), "e1");  // Released when `first` ended: at-least-once.
  third_context->TryCancel();
  grpc2::StreamsListenItemsResponse ignored;
  while (third->Read(&ignored)) {
  }
  (void)third->Finish();
}

INSTANTIATE_TEST_SUITE_P(Backends, OpenCallsTest, AllBackends(), BackendName);

// ---------------------------------------------------------------------------------------------
// A client that vanishes without closing its connection.

// A TCP proxy for one connection between a test's channel and the Fabric, which can go silent:
// it stops forwarding but keeps both sockets open, as when the client's host dies or its
// network breaks (no FIN, no RST reaches the Fabric).
//
// Thread safety: Freeze from any thread; the forwarding runs on the proxy's own thread.
class FreezableProxy {
 public:
  explicit FreezableProxy(const std::string& target) : target_(target) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    PERPER_CHECK(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    PERPER_CHECK(listen(listener_, 1) == 0);
    socklen_t length = sizeof(address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~FreezableProxy() {
    stop_ = true;
    thread_.join();
    for (int fd : {listener_, client_, server_}) {
      if (fd >= 0) close(fd);
    }
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void Freeze() { frozen_ = true; }

 private:
  void Run() {
    pollfd accept_poll{listener_, POLLIN, 0};
    while (!stop_ && poll(&accept_poll, 1, 50) <= 0) {
    }
    if (stop_) return;
    client_ = accept(listener_, nullptr, nullptr);
    const size_t colon = target_.rfind(':');
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(std::stoi(target_.substr(colon + 1))));
    server_ = socket(AF_INET, SOCK_STREAM, 0);
    PERPER_CHECK(connect(server_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    char buffer[64 * 1024];
    while (!stop_ && !frozen_) {
      pollfd fds[2] = {{client_, POLLIN, 0}, {server_, POLLIN, 0}};
      if (poll(fds, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
        if (n <= 0) return;
        int to = i == 0 ? server_ : client_;
        for (ssize_t sent = 0; sent < n;) {
          ssize_t w = write(to, buffer + sent, static_cast<size_t>(n - sent));
          if (w <= 0) return;
          sent += w;
        }
      }
    }
  }

  const std::string target_;
  int listener_ = -1, client_ = -1, server_ = -1;
  int port_ = 0;
  std::atomic<bool> frozen_{false}, stop_{false};
  std::thread thread_;
};

class VanishedClientTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fabric::FabricLimits limits;
    limits.keepalive_time = absl::Milliseconds(300);
    limits.keepalive_timeout = absl::Milliseconds(300);
    fabric_ = std::make_unique<InProcessFabric>(GetParam(), limits);
  }
  std::unique_ptr<InProcessFabric> fabric_;
};

TEST_P(VanishedClientTest, TheReservationsOfAClientThatWentSilentGoToAnotherMember) {
  FreezableProxy proxy(fabric_->address());
  auto silent_stub = grpc2::FabricExecutions::NewStub(
      grpc::CreateChannel(proxy.address(), grpc::InsecureChannelCredentials()));
  auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
  auto silent = std::make_unique<ReserveCall>(*silent_stub, "ag", 1, "w");
  silent->ExpectStart();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(silent->NextExecution(), "e1");
  ReserveCall other(*stub, "ag", 1, "w");
  other.ExpectStart();

  proxy.Freeze();
  Clock::time_point frozen = Clock::now();
  // The Fabric's ping goes unanswered: it drops the connection, the call ends, and e1 goes to
  // the other member.
  EXPECT_EQ(other.NextExecution(), "e1");
  EXPECT_LT(Clock::now() - frozen, std::chrono::seconds(5));
  EXPECT_TRUE(WaitFor([&] { return fabric_->server().open_calls() == 1; }));
  silent->TryCancel();
}

INSTANTIATE_TEST_SUITE_P(Backends, VanishedClientTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
