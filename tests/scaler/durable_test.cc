// SPDX-License-Identifier: MIT
// Restarts and durability with `perper up`: the Deploy process is told to record Deploy, a
// restart on the same rocksdb data finds Deploy finished and does not run it again, `--reset`
// starts over, and `perper destroy` / `perper delete` leave nothing behind.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "tests/integration/executions_helpers.h"
#include "tests/scaler/process_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"
#include <nlohmann/json.hpp>

namespace perper::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

const std::string kApps = std::string(PERPER_SOURCE_DIR) + "/tests/scaler/apps/";

std::vector<std::string> Env(const std::string& marker) {
  return {marker, std::string("PERPER_TEST_AGENT=") + PERPER_TEST_AGENT};
}

size_t Count(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

// `perper ARGS --fabric ADDRESS`: the exit code; stdout in *out (stderr appended on failure).
int Cli(std::vector<std::string> args, const std::string& address, std::string* out) {
  std::vector<std::string> argv = {PERPER_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--fabric", address});
  std::string err;
  int code = RunToCompletion(argv, {}, out, &err);
  if (code != 0) *out += err;
  return code;
}

// `perper ARGS --json --fabric ADDRESS`, parsed; null when the command fails.
json CliJson(std::vector<std::string> args, const std::string& address) {
  args.push_back("--json");
  std::string out;
  if (Cli(args, address, &out) != 0) {
    ADD_FAILURE() << "perper " << args[0] << ": " << out;
    return nullptr;
  }
  return json::parse(out);
}

std::set<std::string> InstancesOf(const std::string& address, const std::string& agent) {
  std::set<std::string> ids;
  json rows = CliJson({"instances", "--agent", agent}, address);
  for (const json& row : rows) ids.insert(row["instance"].get<std::string>());
  return ids;
}

std::string ReadAddress(const std::string& path) {
  std::string address;
  WaitFor(
      [&] {
        std::ifstream in(path);
        return std::getline(in, address) && !address.empty();
      },
      seconds(20));
  return address;
}

TEST(DurableUpTest, OnlyTheDeployProcessIsToldToRecordDeploy) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "record_env.yaml"}, Env(marker));
  ASSERT_TRUE(up.WaitForOutput("deploy record=", seconds(15))) << up.Output();
  ASSERT_TRUE(up.WaitForOutput("pool record=", seconds(15))) << up.Output();
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(15)), 128 + SIGTERM) << up.Output();
  EXPECT_NE(up.Stdout().find("] deploy record=1.\n"), std::string::npos) << up.Output();
  EXPECT_NE(up.Stdout().find("] pool record=.\n"), std::string::npos) << up.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST(DurableUpTest, ResetNeedsADeployAgent) {
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", kApps + "pool.yaml", "--reset"},
                            Env(TestMarker()), &out, &err),
            2);
  EXPECT_NE(err.find("--reset starts Deploy over, but " + kApps + "pool.yaml names no deploy:"),
            std::string::npos)
      << err;
}

// What an earlier recorded Deploy of agent Usage leaves in a Fabric, written directly: the
// Deploy execution, an instance it started (listed in its children), its state.
class ResetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fabric_.Start()) << fabric_.Log();
    auto channel = fabric_.NewChannel();
    auto executions = grpc2::FabricExecutions::NewStub(channel);
    ASSERT_TRUE(CreateExecution(*executions, "Usage-deploy-deploy", "perper.Deploy", "Usage-deploy",
                                "Deploy")
                    .ok());
    ASSERT_TRUE(CompleteExecution(*executions, "Usage-deploy-deploy").ok());
    ASSERT_TRUE(CreateExecution(*executions, "Run-old", "Registry", "Worker", "Run").ok());
    grpc2::model::PerperInstance child;
    child.set_instance("Run-old");
    child.set_agent("Worker");
    grpc2::StatesListOperateRequest append;
    append.mutable_list()->set_list("Usage-deploy-children");
    append.set_at_back(true);
    append.add_insert_values()->PackFrom(child);
    grpc2::StatesListOperateResponse appended;
    grpc::ClientContext append_context;
    ASSERT_TRUE(grpc2::FabricStatesList::NewStub(channel)
                    ->Operate(&append_context, append, &appended)
                    .ok());
    grpc2::StatesDictionaryOperateRequest set;
    set.mutable_dictionary()->set_dictionary("Usage-deploy-");
    *set.mutable_key() = StringValue("deploy_runs");
    set.set_set_new_value(true);
    *set.mutable_new_value() = Int64Value(1);
    grpc2::StatesDictionaryOperateResponse response;
    grpc::ClientContext set_context;
    ASSERT_TRUE(grpc2::FabricStatesDictionary::NewStub(channel)
                    ->Operate(&set_context, set, &response)
                    .ok());
  }

  FabricProcess fabric_{{"--storage", "memory"}};
};

TEST_F(ResetTest, ResetRemovesThePreviousDeployBeforeDeployStarts) {
  std::string marker = TestMarker();
  std::string manifest = kApps + "reset.yaml";
  ChildProcess up({PERPER_BINARY, "up", manifest, "--fabric", fabric_.address(), "--reset"},
                  Env(marker));
  ASSERT_TRUE(up.WaitForOutput("] deploy started", seconds(30))) << up.Output();
  EXPECT_NE(up.Stderr().find("reset: destroyed Usage-deploy"), std::string::npos) << up.Output();
  // Run-old was destroyed before the scaler looked at the instances: no process ever served it.
  EXPECT_EQ(Count(up.Stderr(), "instance=Run-old"), 0u) << up.Output();
  const std::string& address = fabric_.address();
  EXPECT_EQ(CliJson({"instances"}, address), json::array());
  EXPECT_EQ(CliJson({"executions"}, address), json::array());
  EXPECT_EQ(CliJson({"states"}, address), json::array());
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(15)), 128 + SIGTERM) << up.Output();

  // Nothing left to reset: said so, and Deploy starts all the same.
  ChildProcess again({PERPER_BINARY, "up", manifest, "--fabric", address, "--reset"}, Env(marker));
  ASSERT_TRUE(again.WaitForOutput("] deploy started", seconds(30))) << again.Output();
  EXPECT_NE(again.Stderr().find("reset: no earlier Deploy of Usage on this Fabric"),
            std::string::npos)
      << again.Output();
  again.Signal(SIGTERM);
  EXPECT_EQ(again.Wait(seconds(15)), 128 + SIGTERM) << again.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

TEST_F(ResetTest, WithoutResetTheEarlierInstancesAreServed) {
  std::string marker = TestMarker();
  ChildProcess up({PERPER_BINARY, "up", kApps + "reset.yaml", "--fabric", fabric_.address()},
                  Env(marker));
  ASSERT_TRUE(up.WaitForOutput("] deploy started", seconds(30))) << up.Output();
  EXPECT_TRUE(up.WaitForOutput("[agent=Worker instance=Run-old pid=", seconds(15))) << up.Output();
  EXPECT_EQ(InstancesOf(fabric_.address(), "Worker"), std::set<std::string>{"Run-old"});
  up.Signal(SIGTERM);
  EXPECT_EQ(up.Wait(seconds(15)), 128 + SIGTERM) << up.Output();
}

// The whole story on durable storage with the C++ SDK: Deploy starts two instances; a second
// `perper up` finds Deploy finished and serves the same two; `--reset` runs Deploy anew (same
// derived IDs, no duplicates); destroy and delete leave an empty Fabric.
TEST(DurableUpTest, AFinishedDeployIsNotRunAgainAndResetStartsOver) {
  std::string marker = TestMarker();
  TempDir dir;
  std::vector<std::string> env = Env(marker);
  env.push_back("DURABLE_DATA_DIR=" + dir.path() + "/fabric");
  std::string manifest = kApps + "durable.yaml";
  auto start = [&](std::vector<std::string> extra, const std::string& name) {
    std::vector<std::string> argv = {PERPER_BINARY, "up", manifest, "--address-file",
                                     dir.path() + "/" + name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(argv, env);
  };
  auto worker_processes = [](ChildProcess& up) {
    std::string err = up.Stderr();
    size_t count = 0;
    std::istringstream lines(err);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("[agent=Worker instance=Run-") != std::string::npos &&
          line.find("] started ") != std::string::npos) {
        ++count;
      }
    }
    return count;
  };

  // 1. Deploy runs: counts one run, starts two Workers.
  auto first = start({}, "address-1");
  ASSERT_TRUE(first->WaitForOutput("] Deployed\n", seconds(30))) << first->Output();
  std::string address = ReadAddress(dir.path() + "/address-1");
  std::set<std::string> workers = InstancesOf(address, "Worker");
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_TRUE(WaitFor([&] { return worker_processes(*first) == 2; }, seconds(15)))
      << first->Output();
  EXPECT_NE(first->Stdout().find("] Deploy run 1\n"), std::string::npos) << first->Output();
  first->Signal(SIGTERM);
  ASSERT_EQ(first->Wait(seconds(20)), 128 + SIGTERM) << first->Output();

  // 2. Same data: Deploy is finished, not run again; the same two instances are served.
  auto second = start({}, "address-2");
  ASSERT_TRUE(second->WaitForOutput(
      "Deploy already ran on this Fabric (execution Usage-deploy-deploy); `perper up --reset` "
      "runs it anew",
      seconds(30)))
      << second->Output();
  address = ReadAddress(dir.path() + "/address-2");
  EXPECT_EQ(InstancesOf(address, "Worker"), workers);
  EXPECT_TRUE(WaitFor([&] { return worker_processes(*second) == 2; }, seconds(15)))
      << second->Output();
  std::string out;
  EXPECT_EQ(Cli({"state", "get", "Usage-deploy-", "deploy_runs"}, address, &out), 0) << out;
  EXPECT_EQ(out, "1\n");
  second->Signal(SIGTERM);
  ASSERT_EQ(second->Wait(seconds(20)), 128 + SIGTERM) << second->Output();
  EXPECT_EQ(Count(second->Stdout(), "] Deploy run "), 0u) << second->Output();

  // 3. --reset: the old instances and Deploy's state go, Deploy runs anew and, with IDs derived
  // from its execution, starts the same two instances again (not two more).
  auto third = start({"--reset"}, "address-3");
  ASSERT_TRUE(third->WaitForOutput("] Deployed\n", seconds(30))) << third->Output();
  address = ReadAddress(dir.path() + "/address-3");
  EXPECT_NE(third->Stderr().find("reset: destroyed Usage-deploy"), std::string::npos)
      << third->Output();
  EXPECT_NE(third->Stdout().find("] Deploy run 1\n"), std::string::npos) << third->Output();
  EXPECT_EQ(InstancesOf(address, "Worker"), workers);
  EXPECT_TRUE(WaitFor([&] { return worker_processes(*third) == 2; }, seconds(15)))
      << third->Output();

  // 4. Destroy each instance (Stop is served by its process), delete what Deploy recorded.
  for (const std::string& worker : workers) {
    EXPECT_EQ(Cli({"destroy", worker}, address, &out), 0) << out;
  }
  // The destroyed instances took their executions and state; what Deploy recorded remains.
  json executions = CliJson({"executions"}, address);
  ASSERT_EQ(executions.size(), 1u) << executions.dump();
  EXPECT_EQ(executions[0]["execution"], "Usage-deploy-deploy");
  EXPECT_EQ(executions[0]["state"], "finished");
  EXPECT_EQ(Cli({"delete", "execution", "Usage-deploy-deploy"}, address, &out), 0) << out;
  std::set<std::string> states;
  for (const json& state : CliJson({"states"}, address)) {
    std::string name = state["name"];
    states.insert(name);
    std::vector<std::string> args = {"delete", "state", name};
    if (state["kind"] == "list") args.push_back("--list");
    EXPECT_EQ(Cli(args, address, &out), 0) << out;
  }
  EXPECT_EQ(states.count("Usage-deploy-"), 1u);  // the run counter
  for (const std::string& name : states) {
    EXPECT_TRUE(name == "Usage-deploy-" || name == "Usage-deploy-children") << name;
  }
  EXPECT_EQ(CliJson({"instances"}, address), json::array());
  EXPECT_EQ(CliJson({"executions"}, address), json::array());
  EXPECT_EQ(CliJson({"streams"}, address), json::array());
  EXPECT_EQ(CliJson({"states"}, address), json::array());
  EXPECT_TRUE(third->WaitForOutput("instance destroyed: stopping", seconds(10)));
  third->Signal(SIGTERM);
  EXPECT_EQ(third->Wait(seconds(20)), 128 + SIGTERM) << third->Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

// A Deploy killed halfway is not finished: the next `perper up` runs it again, and its derived
// IDs make the instance it had started the same one, not a second.
TEST(DurableUpTest, AnInterruptedDeployRunsAgainAndStartsTheSameInstances) {
  std::string marker = TestMarker();
  TempDir dir;
  std::vector<std::string> env = Env(marker);
  env.push_back("DURABLE_DATA_DIR=" + dir.path() + "/fabric");
  std::string manifest = kApps + "durable.yaml";
  std::vector<std::string> held = env;
  held.push_back("DURABLE_HOLD_AFTER_FIRST=1");
  ChildProcess first({PERPER_BINARY, "up", manifest, "--address-file", dir.path() + "/address-1"},
                     held);
  ASSERT_TRUE(first.WaitForOutput("] Holding after the first worker", seconds(30)))
      << first.Output();
  std::set<std::string> started = InstancesOf(ReadAddress(dir.path() + "/address-1"), "Worker");
  ASSERT_EQ(started.size(), 1u);
  first.Signal(SIGKILL);  // the embedded Fabric goes too; its agents follow (parent-death signal)
  EXPECT_EQ(first.Wait(seconds(10)), 128 + SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return ProcessesWithEnv(marker).empty(); }, seconds(10)));

  ChildProcess second({PERPER_BINARY, "up", manifest, "--address-file", dir.path() + "/address-2"},
                      env);
  ASSERT_TRUE(second.WaitForOutput("] Deployed\n", seconds(30))) << second.Output();
  EXPECT_NE(second.Stdout().find("] Deploy run 2\n"), std::string::npos) << second.Output();
  std::set<std::string> workers = InstancesOf(ReadAddress(dir.path() + "/address-2"), "Worker");
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers.count(*started.begin()), 1u);
  second.Signal(SIGTERM);
  EXPECT_EQ(second.Wait(seconds(20)), 128 + SIGTERM) << second.Output();
  EXPECT_TRUE(ProcessesWithEnv(marker).empty());
}

}  // namespace
}  // namespace perper::testing
