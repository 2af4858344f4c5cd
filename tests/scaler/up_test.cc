// SPDX-License-Identifier: MIT
// `perper up` end to end: the real binary, real agent processes, a real Fabric (embedded, or a
// perper-fabric process for the tests that drive it directly).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/common/files.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "tests/integration/executions_helpers.h"
#include "tests/scaler/process_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

using std::chrono::seconds;

const std::string kApps = std::string(PERPER_SOURCE_DIR) + "/tests/scaler/apps/";

std::vector<std::string> Env(const std::string& marker) {
  return {marker, std::string("PERPER_TEST_AGENT=") + PERPER_TEST_AGENT,
          std::string("PERPER_BUILD_DIR=") + PERPER_BUILD_DIR};
}

// Lines of `text` that contain both `a` and `b`.
size_t CountLines(const std::string& text, const std::string& a, const std::string& b) {
  size_t count = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) ++count;
  }
  return count;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

TEST(UpTest, GreetingExamplePrintsTheGreetingAndExits) {
  std::string marker = TestMarker();
  TempDir dir;
  ChildProcess up(
      {PERPER_BINARY, "up", std::string(PERPER_SOURCE_DIR) + "/examples/apps/greeting.yaml",
       "--address-file", dir.path() + "/address"},
      Env(marker));
  ASSERT_EQ(up.Wait(seconds(20)), 0) << up.Output();
  std::string address = ReadWholeFile(dir.path() + "/address");
  EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;  // the embedded Fabric's
  EXPECT_NE(up.Stderr().find("listening on " + address.substr(0, address.size() - 1)),
            std::string::npos);
  EXPECT_NE(up.Stdout().find("[agent=Hello instance=deploy pid="), std::string::npos);
  EXPECT_NE(up.Stdout().find("] Hello, world!\n"), std::string::npos) << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

// The embedded Fabric logs warnings only, unless PERPER_LOG_LEVEL asks for more, as it does of
// every agent.
TEST(UpTest, PerperLogLevelSetsTheEmbeddedFabricsLevelToo) {
  for (bool debug : {false, true}) {
    std::string marker = TestMarker();
    std::vector<std::string> env = Env(marker);
    if (debug) env.push_back("PERPER_LOG_LEVEL=debug");
    ChildProcess up(
        {PERPER_BINARY, "up", std::string(PERPER_SOURCE_DIR) + "/examples/apps/greeting.yaml"},
        env);
    ASSERT_EQ(up.Wait(seconds(20)), 0) << up.Output();
    EXPECT_EQ(up.Stderr().find(" D fabric: [call=") != std::string::npos, debug) << up.Output();
    EXPECT_NE(up.Stdout().find("] Hello, world!\n"), std::string::npos) << up.Output();
  }
}

// Runs the hello application of `manifest` (examples/apps/) to its end and checks what each of
// its two agent processes printed.
void ExpectHelloApplication(const std::string& manifest, const std::string& delay) {
  std::string marker = TestMarker();
  std::vector<std::string> env = Env(marker);
  env.push_back(delay);
  ChildProcess up(
      {PERPER_BINARY, "up", std::string(PERPER_SOURCE_DIR) + "/examples/apps/" + manifest}, env);
  ASSERT_EQ(up.Wait(seconds(60)), 0) << up.Output();
  std::string out = up.Stdout();
  EXPECT_NE(out.find("[agent=MyFirstAgent instance=deploy pid="), std::string::npos) << out;
  EXPECT_NE(out.find("] Hello world from Deploy!\n"), std::string::npos) << out;
  EXPECT_NE(out.find("[agent=StreamPrinterAgent instance=Run-"), std::string::npos) << out;
  EXPECT_NE(out.find("] Hello world through stream!\n"), std::string::npos) << up.Output();
  EXPECT_NE(out.find("] StreamPrinter printed 27 characters\n"), std::string::npos) << out;
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

// The README's application: S2 across two processes, the printer's started for its instance.
TEST(UpTest, HelloExamplePrintsTheSentenceThroughAStreamAndExits) {
  ExpectHelloApplication("hello.yaml", "HELLO_DELAY_MS=5");
}

// The same application with Python agents: `perper up` puts the build's Python SDK on their
// PYTHONPATH, so they import perper from the checkout without an install or PYTHONPATH.
TEST(UpTest, PythonHelloExampleImportsTheBuildsSdk) {
  ExpectHelloApplication("python-hello.yaml", "HELLO_DELAY=0");
}

// The Python restart example on its durable Fabric: the second run finds the recorded Deploy and
// prints its result without running it again.
TEST(UpTest, PythonRestartExampleRunsDeployOncePerFabric) {
  TempDir dir;
  std::vector<std::string> env = Env(TestMarker());
  env.push_back("PERPER_DATA_DIR=" + dir.path() + "/data");
  std::string manifest = std::string(PERPER_SOURCE_DIR) + "/examples/apps/python-restart.yaml";
  for (int run = 0; run < 2; ++run) {
    ChildProcess up({PERPER_BINARY, "up", manifest}, env);
    ASSERT_EQ(up.Wait(seconds(60)), 0) << up.Output();
    EXPECT_NE(up.Stdout().find("] Average of 100 readings: 50.5\n"), std::string::npos)
        << up.Output();
    EXPECT_EQ(up.Stderr().find("Deploy already ran on this Fabric") != std::string::npos, run == 1)
        << up.Output();
  }
}

// S2 on a local cluster: three Fabric processes on a redis-server `perper up` starts; the agent
// processes are spread over them, so the stream crosses Fabric processes through Redis.
TEST(UpTest, HelloExampleRunsOnALocalClusterOfThreeFabricProcesses) {
  std::string marker = TestMarker();
  std::vector<std::string> env = Env(marker);
  env.push_back("HELLO_DELAY_MS=5");
  TempDir dir;
  ChildProcess up(
      {PERPER_BINARY, "up", std::string(PERPER_SOURCE_DIR) + "/examples/apps/hello-cluster.yaml",
       "--address-file", dir.path() + "/address"},
      env);
  ASSERT_EQ(up.Wait(seconds(60)), 0) << up.Output();
  std::string addresses = ReadWholeFile(dir.path() + "/address");
  EXPECT_EQ(std::count(addresses.begin(), addresses.end(), ','), 2) << addresses;
  EXPECT_NE(up.Stderr().find("redis-server started on 127.0.0.1:"), std::string::npos)
      << up.Output();
  EXPECT_NE(up.Stderr().find("3 Fabric processes (redis storage on 127.0.0.1:"), std::string::npos)
      << up.Output();
  std::string out = up.Stdout();
  EXPECT_NE(out.find("] Hello world through stream!\n"), std::string::npos) << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

// S5 with the SDK's examples: one process per instance, both stopped once destroyed.
TEST(UpTest, InstancesExampleRoutesCallsAndStopsBothInstanceProcesses) {
  std::string marker = TestMarker();
  ChildProcess up(
      {PERPER_BINARY, "up", std::string(PERPER_SOURCE_DIR) + "/examples/apps/instances.yaml"},
      Env(marker));
  ASSERT_EQ(up.Wait(seconds(30)), 0) << up.Output();
  std::string out = up.Stdout();
  EXPECT_NE(out.find("] Test passed!\n"), std::string::npos) << up.Output();
  EXPECT_NE(out.find("] Both agents destroyed!\n"), std::string::npos) << up.Output();
  std::string err = up.Stderr();
  EXPECT_EQ(CountLines(err, "[agent=container-sample instance=Run-", "] started "), 2u) << err;
  EXPECT_EQ(
      CountLines(err, "[agent=container-sample instance=Run-", "instance destroyed: stopping"), 2u)
      << err;
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST(UpTest, InstancesRunOneProcessEachAndStopWhenDestroyed) {
  std::string marker = TestMarker();
  TempDir logs;
  ChildProcess up({PERPER_BINARY, "up", kApps + "instances.yaml", "--log-dir", logs.path()},
                  Env(marker));
  ASSERT_EQ(up.Wait(seconds(25)), 0) << up.Output();
  std::string out = up.Stdout();
  EXPECT_NE(out.find("] Started both workers"), std::string::npos) << up.Output();
  EXPECT_NE(out.find("] Test passed"), std::string::npos) << up.Output();
  EXPECT_NE(out.find("] Both agents destroyed"), std::string::npos) << up.Output();
  EXPECT_NE(out.find("] Both worker processes stopped"), std::string::npos) << up.Output();
  // Two Worker processes, each for its own instance, each stopped after its destroy.
  std::string err = up.Stderr();
  EXPECT_EQ(CountLines(err, "[agent=Worker instance=Run-", "] started "), 2u) << err;
  EXPECT_EQ(CountLines(err, "[agent=Worker instance=Run-", "instance destroyed: stopping"), 2u)
      << err;
  EXPECT_EQ(CountLines(err, "[agent=Worker instance=Run-", "] stopped (exited with code 0)"), 2u)
      << err;
  EXPECT_NE(ReadWholeFile(logs.path() + "/Usage.deploy.log").find("Test passed\n"),
            std::string::npos);
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST(UpTest, AKilledAgentProcessIsRestartedAndTheApplicationCompletes) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "restart.yaml"}, Env(marker));
  ASSERT_TRUE(up.WaitForOutput("] worker pid ", seconds(20))) << up.Output();
  std::string out = up.Stdout();
  size_t at = out.find("] worker pid ") + std::string("] worker pid ").size();
  pid_t worker = static_cast<pid_t>(std::stol(out.substr(at)));
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  ASSERT_EQ(up.Wait(seconds(20)), 0) << up.Output();
  EXPECT_NE(up.Stdout().find("] worker restarted"), std::string::npos) << up.Output();
  EXPECT_NE(up.Stdout().find("] Test passed"), std::string::npos) << up.Output();
  EXPECT_NE(up.Stderr().find("pid=" + std::to_string(worker) +
                             "] was killed by signal 9 (SIGKILL) unexpectedly; restarting in"),
            std::string::npos)
      << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST(UpTest, ACrashLoopIsReported) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "crash.yaml"}, Env(marker));
  // The report names the exit code and quotes what the process said last on stderr.
  ASSERT_TRUE(up.WaitForOutput("crash loop: exited with code 3 (5 exits", seconds(15)))
      << up.Output();
  ASSERT_TRUE(up.WaitForOutput("; last stderr: crash.yaml: no setting 'speed'\n", seconds(5)))
      << up.Output();
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
  EXPECT_NE(up.Stdout().find("[agent=Crasher instance=pool-1 pid="), std::string::npos);
  EXPECT_GE(Count(up.Stdout(), "] crashing\n"), 5u) << up.Output();
}

// An agent whose program goes away after it started: each restart fails to run it, and the
// crash loop report quotes the OS's reason.
TEST(UpTest, ACrashLoopOfAProgramThatCannotRunNamesTheReason) {
  std::string marker = TestMarker();
  TempDir dir;
  const std::string program = dir.path() + "/vanishing";
  std::ofstream(program) << "#!/bin/sh\necho started\nrm -f \"$0\"\nexit 3\n";
  std::filesystem::permissions(program, std::filesystem::perms::owner_all);
  const std::string manifest = dir.path() + "/app.yaml";
  std::ofstream(manifest) << "agents:\n  Vanishing:\n    command: " << program
                          << "\n    mode: pool\n    min: 1\n    max: 1\n";
  ChildProcess up({PERPER_BINARY, "up", manifest}, Env(marker));
  ASSERT_TRUE(up.WaitForOutput("crash loop: exited with code 127 (5 exits", seconds(15)))
      << up.Output();
  ASSERT_TRUE(up.WaitForOutput(
      "; last stderr: perper: cannot run " + program + ": No such file or directory\n", seconds(5)))
      << up.Output();
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
  EXPECT_EQ(Count(up.Stdout(), "] started\n"), 1u) << up.Output();
}

class ExternalFabricTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fabric_.Start()) << fabric_.Log();
    channel_ = fabric_.NewChannel();
  }
  FabricProcess fabric_{{"--storage", "memory"}};
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ExternalFabricTest, DestroyingAnInstanceStopsItsProcess) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "per_instance.yaml", "--fabric", fabric_.address()},
                  Env(marker));
  ASSERT_TRUE(up.WaitForOutput("is up", seconds(10))) << up.Output();
  EXPECT_TRUE(ChildrenOf(up.pid()).empty());

  auto instances = grpc2::FabricInstances::NewStub(channel_);
  grpc2::InstancesCreateAndStartRequest create;
  create.mutable_instance()->set_instance("w-1");
  create.mutable_instance()->set_agent("Worker");
  grpc2::ExecutionsGetResultResponse response;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(15));
    ASSERT_TRUE(instances->CreateAndStart(&context, create, &response).ok());
  }
  std::vector<pid_t> children = ChildrenOf(up.pid());
  ASSERT_EQ(children.size(), 1u) << up.Output();
  EXPECT_EQ(ProcessesWithEnv("X_PERPER_INSTANCE=w-1"), children);  // it served Start: exec'd
  {
    grpc2::ExecutionsCreateRequest call;
    call.mutable_execution()->set_execution("WhoAmI-test-1");
    call.mutable_instance()->set_instance("w-1");
    call.mutable_instance()->set_agent("Worker");
    call.set_delegate("WhoAmI");
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    ASSERT_TRUE(instances->Call(&context, call, &response).ok());
    ASSERT_EQ(response.results_size(), 1);
    EXPECT_NE(response.results(0).value().find("w-1"), std::string::npos);
  }
  {
    grpc2::InstancesStopAndDeleteRequest destroy;
    *destroy.mutable_instance() = create.instance();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    ASSERT_TRUE(instances->StopAndDelete(&context, destroy, &response).ok());
  }
  EXPECT_TRUE(WaitFor([&] { return ChildrenOf(up.pid()).empty(); }, seconds(10))) << up.Output();
  EXPECT_TRUE(
      up.WaitForOutput("[agent=Worker instance=w-1] instance destroyed: stopping", seconds(1)));
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST_F(ExternalFabricTest, APoolScalesUpUnderLoadAndDownToZeroWhenIdle) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "pool.yaml", "--fabric", fabric_.address()},
                  Env(marker));
  ASSERT_TRUE(up.WaitForOutput("is up", seconds(10))) << up.Output();
  EXPECT_TRUE(ChildrenOf(up.pid()).empty());  // min 0

  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        CreateExecution(*executions, "Hold-" + std::to_string(i), "Sleeper", "sleepers", "Hold")
            .ok());
  }
  // Five pending executions, one per process, at most three processes.
  EXPECT_TRUE(WaitFor([&] { return ChildrenOf(up.pid()).size() == 3; }, seconds(10)))
      << up.Output();
  EXPECT_TRUE(up.WaitForOutput(" to 3 processes (", seconds(1))) << up.Output();
  // Each is an agent process of this test (the environment is set once it has exec'd).
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(marker).size() == 3 + 1; }, seconds(5)))
      << "perper up and three agents";

  for (int i = 0; i < 5; ++i) {
    grpc2::ExecutionsDeleteRequest remove;
    remove.mutable_execution()->set_execution("Hold-" + std::to_string(i));
    google::protobuf::Empty empty;
    grpc::ClientContext context;
    ASSERT_TRUE(executions->Delete(&context, remove, &empty).ok());
  }
  EXPECT_TRUE(WaitFor([&] { return ChildrenOf(up.pid()).empty(); }, seconds(10))) << up.Output();
  EXPECT_TRUE(up.WaitForOutput("[agent=Sleeper] scaling from 3 to 0 processes", seconds(1)))
      << up.Output();
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
}

TEST(UpTest, SigtermStopsEveryProcess) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "pool_min2.yaml"}, Env(marker));
  ASSERT_TRUE(WaitFor([&] { return ChildrenOf(up.pid()).size() == 2; }, seconds(10)))
      << up.Output();
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
  EXPECT_EQ(Count(up.Stderr(), "] stopped ("), 2u) << up.Output();
}

TEST(UpTest, AgentProcessesDoNotOutliveAKilledPerperUp) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "pool_min2.yaml"}, Env(marker));
  ASSERT_TRUE(WaitFor([&] { return ChildrenOf(up.pid()).size() == 2; }, seconds(10)))
      << up.Output();
  up.Signal(SIGKILL);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(marker).empty(); }, seconds(5)));
}

TEST(UpTest, AProcessIgnoringSigtermIsKilledAfterItsGracePeriod) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "stubborn.yaml"}, Env(marker));
  ASSERT_TRUE(up.WaitForOutput("] ready", seconds(10))) << up.Output();
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
  EXPECT_NE(up.Stderr().find("still running after 500ms: SIGKILL"), std::string::npos)
      << up.Output();
  EXPECT_NE(up.Stderr().find("] stopped (was killed by signal 9 (SIGKILL))"), std::string::npos)
      << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST(UpTest, ASecondSignalKillsAtOnce) {
  std::string marker = TestMarker();
  std::vector<std::string> env = Env(marker);
  env.push_back("STUBBORN_GRACE=60");
  ChildProcess up({PERPER_BINARY, "up", kApps + "stubborn.yaml"}, env);
  ASSERT_TRUE(up.WaitForOutput("] ready", seconds(10))) << up.Output();
  up.Signal(SIGINT);
  ASSERT_TRUE(up.WaitForOutput("received SIGINT, stopping", seconds(5))) << up.Output();
  up.Signal(SIGINT);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGINT) << up.Output();
  EXPECT_NE(up.Stderr().find("second signal: killing every agent process now"), std::string::npos)
      << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

// A Python agent whose program serves another name than the manifest's (sensor for Sensor) is
// refused at start and each exit is reported with the reason; the Python Deploy waiting for it
// logs that no process serves Sensor instead of hanging silently. Ctrl-C then cancels that
// Deploy at once (no SIGKILL after the grace period), and perper up exits 130.
TEST(UpTest, APythonAgentServingAnotherNameIsReportedAndCtrlCEndsTheWaitingDeploy) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "wrong_name.yaml"}, Env(marker));
  // The scaler's report of the exit quotes the refusal.
  const std::string refusal =
      "ValueError: perper: X_PERPER_AGENT is Sensor but this process serves agent sensor";
  ASSERT_TRUE(WaitFor(
      [&] { return CountLines(up.Stderr(), "] exited with code 1 unexpectedly", refusal) > 0; },
      seconds(30)))
      << up.Output();
  EXPECT_EQ(CountLines(up.Stderr(), "W scaler: [agent=Sensor instance=Run-", refusal),
            CountLines(up.Stderr(), "] exited with code 1 unexpectedly", refusal))
      << up.Output();
  ASSERT_TRUE(up.WaitForOutput("waiting for Sensor: no process serves agent Sensor", seconds(20)))
      << up.Output();
  EXPECT_EQ(CountLines(up.Stderr(),
                       "[agent=Caller instance=deploy pid=", "no process serves agent Sensor"),
            1u)
      << up.Output();

  up.Signal(SIGINT);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGINT) << up.Output();
  EXPECT_NE(up.Stderr().find("[agent=Caller] stop requested while Deploy runs: cancelling Deploy"),
            std::string::npos)
      << up.Output();
  EXPECT_EQ(CountLines(up.Stderr(),
                       "[agent=Caller instance=deploy pid=", "] stopped (exited with code 0)"),
            1u)
      << up.Output();
  EXPECT_EQ(up.Stderr().find("SIGKILL"), std::string::npos) << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

// A stale Fabric on the port the manifest names: perper up must not start a second Fabric beside
// it (gRPC's SO_REUSEPORT would let it, and its agents would be split between the two).
TEST(UpTest, AStaleFabricOnTheManifestsPortStopsPerperUpBeforeAnyAgentStarts) {
  FabricProcess stale({"--storage", "memory"});
  ASSERT_TRUE(stale.Start()) << stale.Log();
  TempDir dir;
  std::ofstream(dir.path() + "/app.yaml")
      << "fabric:\n  listen: " << stale.address() << "\nagents:\n  Foo:\n    command: /bin/true\n";
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", dir.path() + "/app.yaml"}, {}, &out, &err), 1);
  EXPECT_NE(err.find("perper up: cannot start the Fabric: cannot listen on " + stale.address() +
                     ": address already in use\n"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("started"), std::string::npos) << err;
}

// A command that cannot run is found before the Fabric or any process starts, with the OS's
// reason, instead of as a process that keeps failing to start.
TEST(UpTest, ACommandThatCannotRunIsReportedBeforeAnythingStarts) {
  TempDir dir;
  std::string path = dir.path() + "/app.yaml";
  std::ofstream(dir.path() + "/not-executable") << "#!/bin/sh\n";
  struct Case {
    std::string command, message;
  };
  for (const Case& c :
       {Case{"./bar", "perper up: agent Foo: command ./bar: No such file or directory\n"},
        Case{"./not-executable",
             "perper up: agent Foo: command ./not-executable: Permission denied\n"},
        Case{dir.path(), "perper up: agent Foo: command " + dir.path() + ": Is a directory\n"}}) {
    std::ofstream(path) << "deploy: Foo\nagents:\n  Foo:\n    command: " << c.command << "\n";
    std::string out, err;
    EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", path}, {}, &out, &err), 1) << err;
    EXPECT_EQ(err, c.message);
  }
  std::ofstream(path) << "agents:\n  Foo:\n    command: /bin/true\n    workdir: ./nowhere\n";
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", path}, {}, &out, &err), 1) << err;
  EXPECT_EQ(
      err, "perper up: agent Foo: workdir " + dir.path() + "/nowhere: No such file or directory\n");
}

// `perper up` leaves the Fabric's address in .perper/fabric.address next to the manifest while
// it runs; the inspection commands run in that folder, or below it, find the Fabric there.
TEST(UpTest, TheInspectionCommandsFindTheFabricOfAPerperUpInTheirFolder) {
  std::string marker = TestMarker();
  TempDir app;
  std::ofstream(app.path() + "/app.yaml") << ReadWholeFile(kApps + "per_instance.yaml");
  const std::string below = app.path() + "/src/deeper";
  std::filesystem::create_directories(below);
  const std::string address_file = app.path() + "/.perper/fabric.address";
  ChildProcess up({PERPER_BINARY, "up", app.path() + "/app.yaml"}, Env(marker));
  ASSERT_TRUE(up.WaitForOutput("is up", seconds(10))) << up.Output();
  std::string address = ReadWholeFile(address_file);
  ASSERT_FALSE(address.empty());
  address.pop_back();  // the newline
  EXPECT_NE(up.Stderr().find("listening on " + address + "\n"), std::string::npos) << address;

  // Something only this Fabric holds.
  auto executions = grpc2::FabricExecutions::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(CreateExecution(*executions, "Probe-found-1", "Prober", "nobody", "Probe").ok());

  for (const std::string& dir : {app.path(), below}) {
    std::string out, err;
    EXPECT_EQ(RunIn(dir, {PERPER_BINARY, "executions", "--agent", "Prober"},
                    {"PERPER_FABRIC_ENDPOINT"}, &out, &err),
              0)
        << err;
    EXPECT_NE(out.find("Probe-found-1"), std::string::npos) << dir << ": " << out;
  }
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(10)), 128 + SIGTERM) << up.Output();
  EXPECT_FALSE(std::filesystem::exists(address_file));

  // A file left by a perper up that was killed: the message says where the address came from.
  std::filesystem::create_directories(app.path() + "/.perper");
  std::ofstream(address_file) << "127.0.0.1:1\n";
  std::string out, err;
  EXPECT_EQ(RunIn(below, {PERPER_BINARY, "instances", "--timeout", "5"}, {"PERPER_FABRIC_ENDPOINT"},
                  &out, &err),
            1);
  EXPECT_NE(err.find("perper: cannot reach the Fabric at 127.0.0.1:1 ("), std::string::npos) << err;
  EXPECT_NE(err.find("(the address is from " + address_file +
                     ", which perper up writes while it runs; a perper up that was killed "
                     "leaves it behind)\n"),
            std::string::npos)
      << err;
  // --fabric and $PERPER_FABRIC_ENDPOINT come first.
  EXPECT_EQ(RunIn(below, {PERPER_BINARY, "instances", "--fabric", "127.0.0.1:2", "--timeout", "5"},
                  {}, &out, &err),
            1);
  EXPECT_NE(err.find("cannot reach the Fabric at 127.0.0.1:2 ("), std::string::npos) << err;
  EXPECT_EQ(err.find("the address is from"), std::string::npos) << err;
}

// Nothing names a Fabric: the message says what was looked for before the default address.
TEST(UpTest, WithoutAnyAddressTheMessageSaysWhatWasTried) {
  TempDir dir;
  std::string out, err;
  int code = RunIn(dir.path(), {PERPER_BINARY, "instances", "--timeout", "5"},
                   {"PERPER_FABRIC_ENDPOINT"}, &out, &err);
  if (code == 0) GTEST_SKIP() << "a Fabric serves the default address 127.0.0.1:40400";
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("cannot reach the Fabric at 127.0.0.1:40400 ("), std::string::npos) << err;
  EXPECT_NE(err.find("(no --fabric, no $PERPER_FABRIC_ENDPOINT and no .perper/fabric.address in " +
                     dir.path() + " or its parents, so the default)\n"),
            std::string::npos)
      << err;
}

TEST(UpTest, ABadManifestExitsWithTwoAndNamesTheLine) {
  TempDir dir;
  std::string path = dir.path() + "/bad.yaml";
  std::ofstream(path) << "agents:\n  A:\n    command: /bin/true\n    mode: sometimes\n";
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", path}, {}, &out, &err), 2);
  EXPECT_NE(err.find("bad.yaml:4: agents.A.mode: expected instance or pool, got 'sometimes'"),
            std::string::npos)
      << err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", dir.path() + "/missing.yaml"}, {}, &out, &err),
            2);
  EXPECT_NE(err.find("cannot read manifest"), std::string::npos) << err;
}

TEST(UpTest, HelpDescribesUp) {
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", "--help"}, {}, &out, &err), 0);
  EXPECT_NE(out.find("--log-dir"), std::string::npos) << out;
  EXPECT_NE(out.find("--fabric"), std::string::npos) << out;
  // What the tests of signals check (SigtermStopsEveryProcess, ASecondSignalKillsAtOnce).
  EXPECT_NE(out.find("Exits with Deploy's exit code, or after a signal with 128 + its number "
                     "(130 after Ctrl-C, 143 after SIGTERM)."),
            std::string::npos)
      << out;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up"}, {}, &out, &err), 2);  // APP is required
}

}  // namespace
}  // namespace perper::testing
