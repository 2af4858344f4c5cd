// SPDX-License-Identifier: MIT
// The perper-fabric binary: command line, configuration precedence, health, reflection and
// graceful shutdown.
#include <signal.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include "perper/common/health_check.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "tests/integration/executions_helpers.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

// A free port: bind an in-process Fabric to port 0, note the port, stop it.
int FreePort() {
  InProcessFabric probe("memory");
  int port = PortOf(probe.address());
  probe.Stop();
  return port;
}

// The debug lines of the Fabric that mention `id`, without their time stamps.
std::vector<std::string> LinesAbout(const std::string& log, const std::string& id) {
  std::vector<std::string> lines;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(id) != std::string::npos) lines.push_back(line.substr(line.find(' ') + 1));
  }
  return lines;
}

// At debug, the Fabric logs each event of a call (the listen call of the agent that serves it,
// the call, creation, reservation, completion, deletion, the end of the listen call) as one
// line, IDs first; at info, none of them.
TEST(FabricBinaryTest, DebugLogsEveryEventOfACallIdsFirstAndInfoNone) {
  for (const std::string level : {"debug", "info"}) {
    FabricProcess fabric({"--storage", "memory", "--log-level", level});
    ASSERT_TRUE(fabric.Start()) << fabric.Log();
    auto channel = fabric.NewChannel();
    auto agent = std::make_unique<TestAgent>(channel, "Logged", [](const auto&) {
      return TestAgent::Outcome{{Int64Value(7)}, ""};
    });
    auto instances = grpc2::FabricInstances::NewStub(channel);
    grpc2::ExecutionsGetResultResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc2::ExecutionsCreateRequest call =
        CreateRequest("Add-logged-1", "Logged", "l-1", "Add", {Int64Value(3), Int64Value(4)});
    ASSERT_TRUE(instances->Call(&context, call, &response).ok());
    ASSERT_EQ(response.results_size(), 1);
    agent.reset();  // Its listen call ends.

    if (level == "info") {
      EXPECT_THAT(fabric.Log(), Not(HasSubstr(" D fabric:")));
      EXPECT_THAT(fabric.Log(), Not(HasSubstr("Add-logged-1")));
      continue;
    }
    // The end of the listen call is logged once the Fabric sees the cancellation.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (fabric.Log().find("listen call ended") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::string log = fabric.Log();
    const std::regex opened(R"(D fabric: \[call=(listen-[0-9a-f]+-[0-9]+) agent=Logged\] )"
                            R"(ListenAndReserve opened \(workgroup ''\))");
    std::smatch match;
    ASSERT_TRUE(std::regex_search(log, match, opened)) << log;
    const std::string listen = match[1];
    EXPECT_THAT(
        LinesAbout(log, "Add-logged-1"),
        ::testing::ElementsAre("D fabric: [exec=Add-logged-1] call: Logged.Add on instance l-1",
                               "D fabric: [exec=Add-logged-1] created: Logged.Add on instance l-1",
                               "D fabric: [exec=Add-logged-1 call=" + listen +
                                   "] reserved: Logged.Add on instance l-1",
                               "D fabric: [exec=Add-logged-1] completed",
                               "D fabric: [exec=Add-logged-1] deleted",
                               "D fabric: [exec=Add-logged-1] call answered: 1 result"))
        << log;
    // What the call's attempts came to ends the line; whether the creation's hint also came
    // after the reservation (then "1 finished or gone") is a race.
    EXPECT_THAT(log, HasSubstr("D fabric: [call=" + listen +
                               " agent=Logged] listen call ended: CANCELLED: cancelled by the "
                               "client, or its connection was lost; 0 reservations released; "
                               "tried: 1 reserved, 0 held by another, "));
    // Every debug line of the Fabric: a time stamp, D, the logger, then the IDs in brackets.
    const std::regex format(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} D fabric: \[[a-z]+=.*)");
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(" D ") != std::string::npos) {
        EXPECT_TRUE(std::regex_match(line, format)) << line;
      }
    }
  }
}

// At debug, a stream's life is logged too, stream ID first: created, a listener moved,
// completed, deleted (docs/configuration.md's table).
TEST(FabricBinaryTest, DebugLogsAStreamsEventsAndListenerMoves) {
  FabricProcess fabric({"--storage", "memory", "--log-level", "debug"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();
  auto streams = grpc2::FabricStreams::NewStub(fabric.NewChannel());
  ASSERT_TRUE(CreateStream(*streams, "logged-numbers", /*ephemeral=*/false).ok());
  ASSERT_TRUE(WriteKeys(*streams, "logged-numbers", {1, 2}).ok());
  ASSERT_TRUE(MoveListener(*streams, "logged-numbers", "reader", 1).ok());
  ASSERT_TRUE(Complete(*streams, "logged-numbers").ok());
  ASSERT_TRUE(DeleteStream(*streams, "logged-numbers").ok());
  // The change hub may log from its own thread: wait for the last line.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fabric.Log().find("[stream=logged-numbers] deleted") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_THAT(LinesAbout(fabric.Log(), "stream=logged-numbers"),
              ::testing::UnorderedElementsAre(
                  "D fabric: [stream=logged-numbers] created",
                  "D fabric: [stream=logged-numbers listener=reader] moved to 1",
                  "D fabric: [stream=logged-numbers] completed",
                  "D fabric: [stream=logged-numbers] deleted"))
      << fabric.Log();
}

TEST(FabricBinaryTest, HelpListsEveryOption) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--help"}, &output), 0);
  for (const char* option :
       {"--listen", "--storage", "--data-dir", "--log-level", "--config", "--address-file",
        "--max-value-size", "--max-stream-retained-bytes", "--stream-write-wait-ms", "--sync"}) {
    EXPECT_THAT(output, HasSubstr(option));
  }
  EXPECT_THAT(output, HasSubstr("127.0.0.1:40400"));
}

TEST(FabricBinaryTest, UnknownStorageExitsWithCodeTwoAndSaysWhy) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "floppy"}, &output), 2);
  EXPECT_THAT(output, HasSubstr("unknown backend 'floppy'"));
}

TEST(FabricBinaryTest, BadLogLevelIsRejected) {
  TempDir dir;
  std::string output;
  EXPECT_EQ(
      RunFabricBinary({"--storage", "memory", "--listen", "127.0.0.1:0", "--log-level", "chatty"},
                      &output),
      2);
  EXPECT_THAT(output, HasSubstr("unknown log level 'chatty'"));
}

TEST(FabricBinaryTest, BadRetentionSettingsAreRejected) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "memory", "--listen", "127.0.0.1:0",
                             "--max-stream-retained-bytes", "0"},
                            &output),
            2);
  EXPECT_THAT(output, HasSubstr("max_stream_retained_bytes"));
  EXPECT_EQ(RunFabricBinary({"--storage", "memory", "--listen", "127.0.0.1:0"}, &output,
                            {"PERPER_STREAM_WRITE_WAIT_MS=soon"}),
            2);
  EXPECT_THAT(output, HasSubstr("PERPER_STREAM_WRITE_WAIT_MS"));
}

TEST(FabricBinaryTest, ConfigFileErrorNamesFileLineAndKey) {
  TempDir dir;
  std::string path = dir.path() + "/fabric.yaml";
  std::ofstream(path) << "storage: memory\nlisten_adress: 127.0.0.1:0\n";
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--config", path}, &output), 2);
  EXPECT_THAT(output, HasSubstr(path + ":2: listen_adress: unknown key"));
}

// Starts the binary with a config file naming `file_port`, plus `env` and `flags`, and returns
// the port it bound.
int BoundPort(int file_port, std::vector<std::string> env, std::vector<std::string> flags) {
  TempDir dir;
  std::string path = dir.path() + "/fabric.yaml";
  std::ofstream(path) << "storage: memory\nlisten: 127.0.0.1:" << file_port << "\n";
  flags.insert(flags.begin(), {"--config", path});
  FabricProcess fabric(flags, env);
  if (!fabric.Start()) {
    ADD_FAILURE() << fabric.Log();
    return -1;
  }
  return PortOf(fabric.address());
}

// A second Fabric on a port another one serves must not start beside it (gRPC's SO_REUSEPORT
// would let it, and clients would be split between the two).
TEST(FabricBinaryTest, ABusyPortExitsWithCodeOneSayingItIsInUse) {
  FabricProcess first({"--storage", "memory"});
  ASSERT_TRUE(first.Start()) << first.Log();
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "memory", "--listen", first.address()}, &output), 1);
  EXPECT_THAT(output,
              HasSubstr("cannot listen on " + first.address() + ": address already in use"));
  // The first one still answers.
  auto executions = grpc2::FabricExecutions::NewStub(first.NewChannel());
  grpc2::ExecutionsCompleteRequest request;
  request.mutable_execution()->set_execution("nobody");
  google::protobuf::Empty empty;
  EXPECT_EQ(executions->Complete(Context().get(), request, &empty).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST(FabricBinaryTest, ADataDirectoryInUseIsNamedAsSuch) {
  TempDir dir;
  const std::string data = dir.path() + "/db";
  FabricProcess first({"--storage", "rocksdb", "--data-dir", data});
  ASSERT_TRUE(first.Start()) << first.Log();
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "rocksdb", "--data-dir", data, "--listen", "127.0.0.1:0"},
                            &output),
            1);
  EXPECT_THAT(output,
              HasSubstr("the data directory " + data + " is in use by another Fabric process"));
}

TEST(FabricBinaryTest, APortPast65535IsRefusedNotWrapped) {
  std::string output;
  EXPECT_EQ(RunFabricBinary({"--storage", "memory", "--listen", "127.0.0.1:99999"}, &output), 2);
  EXPECT_THAT(output, HasSubstr("port from 0 (any free port) to 65535, got '127.0.0.1:99999'"));
  EXPECT_EQ(RunFabricBinary({"--storage", "memory", "--listen", "127.0.0.1:http"}, &output), 2);
  EXPECT_THAT(output, HasSubstr("got '127.0.0.1:http'"));
}

TEST(FabricBinaryTest, ConfigFileSetsTheAddress) {
  int file_port = FreePort();
  EXPECT_EQ(BoundPort(file_port, {}, {}), file_port);
}

TEST(FabricBinaryTest, EnvironmentBeatsConfigFile) {
  int file_port = FreePort();
  int env_port = FreePort();
  EXPECT_EQ(BoundPort(file_port, {"PERPER_LISTEN=127.0.0.1:" + std::to_string(env_port)}, {}),
            env_port);
}

TEST(FabricBinaryTest, FlagBeatsEnvironmentAndConfigFile) {
  int file_port = FreePort();
  int env_port = FreePort();
  int flag_port = FreePort();
  EXPECT_EQ(BoundPort(file_port, {"PERPER_LISTEN=127.0.0.1:" + std::to_string(env_port)},
                      {"--listen", "127.0.0.1:" + std::to_string(flag_port)}),
            flag_port);
}

TEST(FabricBinaryTest, ServesHealthAndStopsCleanlyOnSigterm) {
  FabricProcess fabric({"--storage", "memory"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();
  auto channel = fabric.NewChannel();

  // grpc.health.v1.Health/Check with an empty request answers SERVING.
  int serving = kHealthUnknown;
  grpc::Status status =
      CheckHealth(channel, std::chrono::system_clock::now() + std::chrono::seconds(10), &serving);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(serving, kHealthServing);

  fabric.Kill(SIGTERM);
  EXPECT_EQ(fabric.Wait(), 0);
  EXPECT_THAT(fabric.Log(), HasSubstr("received SIGTERM"));
  EXPECT_THAT(fabric.Log(), HasSubstr("stopped"));
}

// Server reflection lists the protocol's services (a raw ServerReflectionRequest with
// list_services = "", field 7; the reply names each service).
TEST(FabricBinaryTest, ServerReflectionListsTheProtocolServices) {
  FabricProcess fabric({"--storage", "memory"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();
  grpc::GenericStub generic(fabric.NewChannel());
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = generic.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](void* expected) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, expected);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(reinterpret_cast<void*>(1)));
  grpc::Slice request_bytes(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&request_bytes, 1);
  call->WriteLast(request, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(reinterpret_cast<void*>(2)));
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(reinterpret_cast<void*>(3)));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  for (const char* service :
       {"perper.grpc2.FabricExecutions", "perper.grpc2.FabricInstances",
        "perper.grpc2.FabricStreams", "perper.grpc2.FabricStatesDictionary",
        "perper.grpc2.FabricStatesList", "perper.grpc2.FabricProtobufDescriptors",
        "perper.grpc2.FabricIntrospection", "grpc.health.v1.Health"}) {
    EXPECT_THAT(bytes, HasSubstr(service));
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  step(reinterpret_cast<void*>(4));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST(FabricBinaryTest, SigintEndsOpenListenCallsAndExits) {
  FabricProcess fabric({"--storage", "memory"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();
  auto stub = grpc2::FabricExecutions::NewStub(fabric.NewChannel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc2::ExecutionsListenRequest request;
  request.mutable_instance_filter()->set_agent("Agent");
  auto reader = stub->Listen(&context, request);
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(reader->Read(&response));  // start_of_stream: the call is live.
  EXPECT_TRUE(response.start_of_stream());

  fabric.Kill(SIGINT);
  while (reader->Read(&response)) {
  }
  grpc::Status status = reader->Finish();
  EXPECT_FALSE(status.ok());  // Ended by the server, not by the deadline.
  EXPECT_NE(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(fabric.Wait(), 0);
}

}  // namespace
}  // namespace perper::testing
