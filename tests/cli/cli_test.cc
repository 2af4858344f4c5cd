// SPDX-License-Identifier: MIT
// The `perper` inspection commands against a real Fabric process holding known data, and
// `perper fabric`.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_split.h"
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
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

struct Result {
  int code;
  std::string out, err;
};

// The whitespace-separated cells of the table line whose first cell is `first`.
std::vector<std::string> Row(const std::string& table, const std::string& first) {
  for (absl::string_view line : absl::StrSplit(table, '\n')) {
    std::vector<std::string> cells = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (!cells.empty() && cells[0] == first) return cells;
  }
  return {};
}

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fabric_ = new FabricProcess({"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
    Populate(fabric_->NewChannel());
  }
  static void TearDownTestSuite() {
    delete fabric_;
    fabric_ = nullptr;
  }

  static void Populate(std::shared_ptr<grpc::Channel> channel) {
    auto executions = grpc2::FabricExecutions::NewStub(channel);
    auto create = [&](const std::string& id, const std::string& agent, const std::string& instance,
                      const std::string& delegate, std::vector<google::protobuf::Any> args) {
      grpc2::ExecutionsCreateRequest request;
      request.mutable_execution()->set_execution(id);
      request.mutable_instance()->set_agent(agent);
      request.mutable_instance()->set_instance(instance);
      request.set_delegate(delegate);
      for (auto& a : args) *request.add_arguments() = a;
      google::protobuf::Empty empty;
      grpc::ClientContext context;
      ASSERT_TRUE(executions->Create(&context, request, &empty).ok()) << id;
    };
    auto complete = [&](const std::string& id, const std::string& error) {
      grpc2::ExecutionsCompleteRequest request;
      request.mutable_execution()->set_execution(id);
      if (error.empty()) {
        *request.add_results() = StringValue("ok");
      } else {
        request.mutable_error()->set_message(error);
      }
      google::protobuf::Empty empty;
      grpc::ClientContext context;
      ASSERT_TRUE(executions->Complete(&context, request, &empty).ok()) << id;
    };
    create("calc-1", "Registry", "Calculator", "Run", {});
    create("Add-1", "Calc", "c-1", "Add", {Int64Value(1), Int64Value(2)});
    create("Done-1", "Calc", "c-1", "Done", {});
    complete("Done-1", "");
    create("Fail-1", "Calc", "c-2", "Fail", {StringValue("x")});
    complete("Fail-1", "boom");

    auto streams = grpc2::FabricStreams::NewStub(channel);
    for (const char* id : {"numbers", "open-stream"}) {
      grpc2::StreamsCreateRequest request;
      request.mutable_stream()->set_stream(id);
      request.set_ephemeral(false);
      google::protobuf::Empty empty;
      grpc::ClientContext context;
      ASSERT_TRUE(streams->Create(&context, request, &empty).ok());
      const char* words[] = {"one", "two", "three"};
      for (int key = 1; key <= 3; ++key) {
        grpc2::StreamsWriteItemRequest write;
        write.mutable_stream()->set_stream(id);
        write.set_key(key);
        *write.mutable_value() = StringValue(words[key - 1]);
        grpc::ClientContext write_context;
        ASSERT_TRUE(streams->WriteItem(&write_context, write, &empty).ok());
      }
    }
    {
      grpc2::StreamsMoveListenerRequest move;
      move.mutable_stream()->set_stream("numbers");
      move.set_listener_name("reader");
      move.set_reached_key(2);
      google::protobuf::Empty empty;
      grpc::ClientContext context;
      ASSERT_TRUE(streams->MoveListener(&context, move, &empty).ok());
    }
    {
      grpc2::StreamsCompleteRequest request;
      request.mutable_stream()->set_stream("numbers");
      google::protobuf::Empty empty;
      grpc::ClientContext context;
      ASSERT_TRUE(streams->Complete(&context, request, &empty).ok());
    }

    auto states = grpc2::FabricStatesDictionary::NewStub(channel);
    for (auto [key, value] :
         {std::pair{"counter", Int64Value(3)}, std::pair{"name", StringValue("perper")}}) {
      grpc2::StatesDictionaryOperateRequest request;
      request.mutable_dictionary()->set_dictionary("stats");
      *request.mutable_key() = StringValue(key);
      request.set_set_new_value(true);
      *request.mutable_new_value() = value;
      grpc2::StatesDictionaryOperateResponse response;
      grpc::ClientContext context;
      ASSERT_TRUE(states->Operate(&context, request, &response).ok());
    }
  }

  static void CreateExecution(const std::string& id, const std::string& agent,
                              const std::string& instance, const std::string& delegate) {
    auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
    ASSERT_TRUE(perper::testing::CreateExecution(*stub, id, agent, instance, delegate).ok()) << id;
  }

  // The Registry record of a live instance `id` of agent type `agent` (no process serves it).
  static void CreateInstance(const std::string& id, const std::string& agent) {
    CreateExecution(id, "Registry", agent, "Run");
  }

  static void SetEntry(const std::string& dictionary, const std::string& key,
                       google::protobuf::Any value) {
    auto stub = grpc2::FabricStatesDictionary::NewStub(fabric_->NewChannel());
    grpc2::StatesDictionaryOperateRequest request;
    request.mutable_dictionary()->set_dictionary(dictionary);
    *request.mutable_key() = StringValue(key);
    request.set_set_new_value(true);
    *request.mutable_new_value() = std::move(value);
    grpc2::StatesDictionaryOperateResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Operate(&context, request, &response).ok());
  }

  static void Append(const std::string& list, google::protobuf::Any value) {
    auto stub = grpc2::FabricStatesList::NewStub(fabric_->NewChannel());
    grpc2::StatesListOperateRequest request;
    request.mutable_list()->set_list(list);
    request.set_at_back(true);
    *request.add_insert_values() = std::move(value);
    grpc2::StatesListOperateResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Operate(&context, request, &response).ok());
  }

  // Lists instance `child` of type `agent` in "<parent>-children", as CreateAndStart does.
  static void AddChild(const std::string& parent, const std::string& child,
                       const std::string& agent) {
    grpc2::model::PerperInstance model;
    model.set_instance(child);
    model.set_agent(agent);
    google::protobuf::Any packed;
    packed.PackFrom(model);
    Append(parent + "-children", packed);
  }

  static void WriteItem(const std::string& stream, int64_t key, google::protobuf::Any value) {
    auto stub = grpc2::FabricStreams::NewStub(fabric_->NewChannel());
    grpc2::StreamsWriteItemRequest write;
    write.mutable_stream()->set_stream(stream);
    write.set_key(key);
    *write.mutable_value() = std::move(value);
    google::protobuf::Empty empty;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->WriteItem(&context, write, &empty).ok());
  }

  static void CreateStream(const std::string& stream) {
    auto stub = grpc2::FabricStreams::NewStub(fabric_->NewChannel());
    grpc2::StreamsCreateRequest request;
    request.mutable_stream()->set_stream(stream);
    request.set_ephemeral(false);
    google::protobuf::Empty empty;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Create(&context, request, &empty).ok());
  }

  static Result Perper(std::vector<std::string> args, bool with_fabric = true) {
    return Perper(std::move(args), {}, with_fabric);
  }
  // With `env` ("NAME=value") added to the test's environment, minus COLUMNS unless given.
  static Result Perper(std::vector<std::string> args, std::vector<std::string> env,
                       bool with_fabric = true) {
    std::vector<std::string> argv = {PERPER_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_fabric) argv.insert(argv.end(), {"--fabric", fabric_->address()});
    env.insert(env.begin(), "COLUMNS");
    Result result;
    result.code = RunToCompletion(argv, env, &result.out, &result.err);
    return result;
  }

  static FabricProcess* fabric_;
};

FabricProcess* CliTest::fabric_ = nullptr;

// The first `n` cells of `row`.
std::vector<std::string> First(std::vector<std::string> row, size_t n) {
  row.resize(std::min(row.size(), n));
  return row;
}

TEST_F(CliTest, ExecutionsTableShowsStatesAgesAndDurations) {
  Result r = Perper({"executions", "--agent", "Calc"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "EXECUTION"),
            (std::vector<std::string>{"EXECUTION", "AGENT", "INSTANCE", "DELEGATE", "STATE",
                                      "IN/OUT", "AGE", "TOOK"}));
  EXPECT_EQ(First(Row(r.out, "Add-1"), 6),
            (std::vector<std::string>{"Add-1", "Calc", "c-1", "Add", "waiting", "2/0"}));
  EXPECT_EQ(First(Row(r.out, "Done-1"), 6),
            (std::vector<std::string>{"Done-1", "Calc", "c-1", "Done", "finished", "0/1"}));
  EXPECT_EQ(First(Row(r.out, "Fail-1"), 6),
            (std::vector<std::string>{"Fail-1", "Calc", "c-2", "Fail", "failed", "1/0"}));
  // Ages in whole units; a finished one took milliseconds; an unfinished one has no duration.
  const std::regex age(R"(\d+[smhd])"), took(R"(\d+ms|\d+\.\ds)");
  ASSERT_EQ(Row(r.out, "Add-1").size(), 8u) << r.out;
  EXPECT_TRUE(std::regex_match(Row(r.out, "Add-1")[6], age)) << r.out;
  EXPECT_EQ(Row(r.out, "Add-1")[7], "-");
  ASSERT_EQ(Row(r.out, "Done-1").size(), 8u) << r.out;
  EXPECT_TRUE(std::regex_match(Row(r.out, "Done-1")[7], took)) << r.out;
}

// Live instances are the Registry's executions: perper instances lists them; perper executions
// leaves them out with a word about it, unless asked for them by name.
TEST_F(CliTest, ExecutionsLeaveLiveInstancesToPerperInstances) {
  Result r = Perper({"executions"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Row(r.out, "calc-1").empty()) << r.out;
  EXPECT_FALSE(Row(r.out, "Add-1").empty()) << r.out;
  EXPECT_TRUE(
      std::regex_search(r.err, std::regex(R"(^\(\d+ live instances are not listed: they are )"
                                          R"(the executions of agent Registry; see perper )"
                                          R"(instances\)\n$)")))
      << r.err;
  r = Perper({"executions", "--json"});
  for (const json& row : json::parse(r.out)) EXPECT_NE(row["agent"], "Registry") << row;
  r = Perper({"executions", "--agent", "Registry"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(First(Row(r.out, "calc-1"), 6),
            (std::vector<std::string>{"calc-1", "Registry", "Calculator", "Run", "live", "0/0"}));
  EXPECT_EQ(r.err, "");
}

// In a narrow terminal the IDs give way, keeping both ends; --wide and pipes keep them whole.
TEST_F(CliTest, ExecutionsFitTheTerminal) {
  const std::string id = "Transform-0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b";
  const std::string instance = "Run-777195ab-eb88-9cce-17ea-67e993e907a3";
  CreateExecution(id, "Transformer", instance, "Transform");
  for (size_t columns : {80u, 100u}) {
    Result r =
        Perper({"executions", "--agent", "Transformer"}, {"COLUMNS=" + std::to_string(columns)});
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      size_t characters = 0;
      for (char c : line) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      EXPECT_LE(characters, columns) << line;
    }
    // Both IDs keep their first and last characters around an ellipsis.
    for (const std::string& whole : {id, instance}) {
      const std::regex shortened(whole.substr(0, 6) + "[^ ]*\u2026[^ ]*" +
                                 whole.substr(whole.size() - 6) + " ");
      EXPECT_TRUE(std::regex_search(r.out, shortened)) << whole << "\n" << r.out;
    }
  }
  Result r = Perper({"executions", "--agent", "Transformer", "--wide"},
                    std::vector<std::string>{"COLUMNS=80"});
  EXPECT_EQ(First(Row(r.out, id), 3), (std::vector<std::string>{id, "Transformer", instance}));
  r = Perper({"executions", "--agent", "Transformer"});  // Not a terminal, no COLUMNS: whole.
  EXPECT_EQ(First(Row(r.out, id), 3), (std::vector<std::string>{id, "Transformer", instance}));
}

TEST_F(CliTest, ExecutionsFiltersAndJson) {
  Result r = Perper({"executions", "--agent", "Calc", "--state", "failed", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0]["execution"], "Fail-1");
  EXPECT_EQ(rows[0]["state"], "failed");
  EXPECT_EQ(rows[0]["argument_count"], 1);

  r = Perper({"executions", "--instance", "c-1", "--state", "unfinished", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0]["execution"], "Add-1");

  r = Perper({"executions", "--delegate", "Done", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0]["state"], "finished");

  r = Perper({"executions", "--state", "sleeping"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--state must be one of"), std::string::npos) << r.err;
}

TEST_F(CliTest, Instances) {
  Result r = Perper({"instances"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "INSTANCE  AGENT\ncalc-1    Calculator\n");
  r = Perper({"instances", "--agent", "Calculator", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"([{"instance": "calc-1", "agent": "Calculator"}])"));
  r = Perper({"instances", "--agent", "Nobody", "--json"});
  EXPECT_EQ(json::parse(r.out), json::array());
}

// --fabric takes a list, tried in order: a dead address (a killed Fabric's) is passed over; a
// live one answers, even when the next holds other data.
TEST_F(CliTest, FabricListIsTriedInOrder) {
  FabricProcess dead({"--storage", "memory"});
  ASSERT_TRUE(dead.Start()) << dead.Log();
  dead.Kill(SIGKILL);
  dead.Wait();
  FabricProcess empty({"--storage", "memory"});
  ASSERT_TRUE(empty.Start()) << empty.Log();
  const std::string calc = "INSTANCE  AGENT\ncalc-1    Calculator\n";

  Result r = Perper({"instances", "--fabric", dead.address() + ", http://" + fabric_->address()},
                    /*with_fabric=*/false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, calc);
  r = Perper({"instances", "--fabric", fabric_->address() + "," + empty.address()},
             /*with_fabric=*/false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, calc);
  r = Perper({"instances", "--fabric", empty.address() + "," + fabric_->address()},
             /*with_fabric=*/false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("calc-1"), std::string::npos) << r.out;
}

TEST_F(CliTest, StreamsShowListenersAndCounts) {
  Result r = Perper({"streams"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> row = Row(r.out, "numbers");
  ASSERT_EQ(row.size(), 7u) << r.out;
  EXPECT_EQ(row[1], "persistent");
  EXPECT_EQ(row[2], "0");
  EXPECT_EQ(row[3], "3");
  EXPECT_EQ(row[4], "1..3");
  EXPECT_EQ(row[5], "completed");
  EXPECT_EQ(row[6].substr(0, 7), "reader@") << r.out;
  EXPECT_EQ(Row(r.out, "open-stream")[5], "open");

  r = Perper({"streams", "--prefix", "num", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["stream"], "numbers");
  EXPECT_EQ(rows[0]["item_count"], 3);
  EXPECT_EQ(rows[0]["first_key"], 1);
  EXPECT_EQ(rows[0]["last_key"], 3);
  EXPECT_EQ(rows[0]["completed"], true);
  ASSERT_EQ(rows[0]["listeners"].size(), 1u);
  EXPECT_EQ(rows[0]["listeners"][0]["name"], "reader");
  EXPECT_EQ(row[6], "reader@" + rows[0]["listeners"][0]["position"].dump());
  // Exactly the field names docs/cli.md lists (error only for a stream that failed).
  auto keys = [](const json& object) {
    std::vector<std::string> names;
    for (const auto& [name, value] : object.items()) names.push_back(name);
    return names;
  };
  EXPECT_EQ(keys(rows[0]), (std::vector<std::string>{"completed", "ephemeral", "first_key",
                                                     "item_count", "last_key", "listeners",
                                                     "stream", "stride", "written_count"}));
  EXPECT_EQ(keys(rows[0]["listeners"][0]),
            (std::vector<std::string>{"name", "position", "transient"}));
}

TEST_F(CliTest, StreamTail) {
  Result r = Perper({"stream", "tail", "numbers"});  // completed: ends after the last item
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1  \"one\"\n2  \"two\"\n3  \"three\"\n");
  r = Perper({"stream", "tail", "numbers", "--from", "2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"key\":2,\"value\":\"two\"}\n{\"key\":3,\"value\":\"three\"}\n");
  r = Perper({"stream", "tail", "open-stream", "--no-follow", "--from", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "3  \"three\"\n");
  r = Perper({"stream", "tail", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no stream 'nope'"), std::string::npos) << r.err;
}

TEST_F(CliTest, StateGetAndList) {
  Result r = Perper({"state", "get", "stats", "counter"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  r = Perper({"state", "get", "stats", "name", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), "perper");
  r = Perper({"state", "list", "stats"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "\"counter\""), (std::vector<std::string>{"\"counter\"", "3"}));
  EXPECT_EQ(Row(r.out, "\"name\""), (std::vector<std::string>{"\"name\"", "\"perper\""}));
  r = Perper({"state", "list", "stats", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out).size(), 2u);
  r = Perper({"state", "get", "stats", "missing"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no key \"missing\" in dictionary 'stats'"), std::string::npos) << r.err;
}

// A dictionary that does not exist is not shown as an empty one; an instance's dictionary is
// found from the instance's ID, without its trailing dash.
TEST_F(CliTest, StateNamesAMissingDictionaryAndFindsAnInstancesDictionary) {
  Result r = Perper({"state", "list", "nothing-here"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "perper: no dictionary 'nothing-here', nor an instance 'nothing-here' with a "
            "state dictionary 'nothing-here-' (see perper states)\n");
  r = Perper({"state", "get", "nothing-here", "k"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no dictionary 'nothing-here'"), std::string::npos) << r.err;

  SetEntry("Run-state-1-", "total", Int64Value(42));
  for (std::vector<std::string> list : {std::vector<std::string>{"state", "list", "Run-state-1"},
                                        {"state", "list", "--instance", "Run-state-1"},
                                        {"state", "list", "Run-state-1-"}}) {
    r = Perper(list);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(Row(r.out, "\"total\""), (std::vector<std::string>{"\"total\"", "42"})) << r.out;
  }
  r = Perper({"state", "get", "--instance", "Run-state-1", "total"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
  r = Perper({"state", "get", "Run-state-1", "total"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
  r = Perper({"state", "list", "--instance", "stats"});  // "stats-" does not exist
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "perper: instance 'stats' has no state dictionary 'stats-' (see perper "
            "states)\n");
  r = Perper({"state", "get", "--instance", "Run-state-1", "Run-state-1", "total"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "perper state get: expected DICTIONARY KEY, or --instance ID KEY\n");
  r = Perper({"state", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "perper state list: expected DICTIONARY, or --instance ID\n");
}

TEST_F(CliTest, CallRunsADelegateOfALiveInstance) {
  ChildProcess calculator({PERPER_CALCULATOR_BINARY},
                          {"PERPER_FABRIC_ENDPOINT=" + fabric_->address()});
  Result r = Perper({"call", "Calculator", "calc-1", "Add", "1", "2"});
  ASSERT_EQ(r.code, 0) << r.err << calculator.Output();
  EXPECT_EQ(r.out, "3\n");
  r = Perper({"call", "Calculator", "calc-1", "DivMod", "7", "2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"results": [3, 1]})"));
  r = Perper({"call", "Calculator", "calc-1", "DivMod", "7", "0"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("Calculator.DivMod on calc-1 failed: division by zero"), std::string::npos)
      << r.err;
  r = Perper({"call", "Calculator", "elsewhere", "Add", "1", "2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no instance 'elsewhere' of agent 'Calculator'"), std::string::npos)
      << r.err;
  r = Perper({"call", "Calculator", "elsewhere", "Add", "1", "2", "--any-instance"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  r = Perper({"call", "Calculator", "calc-1", "Add", "one", "2"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("argument 1 is not JSON: one"), std::string::npos) << r.err;
  r = Perper({"call", "Calculator", "calc-1", "Add", "1", "18446744073709551615"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("argument 2: 18446744073709551615 does not fit in a 64-bit signed integer"),
            std::string::npos)
      << r.err;
  // Beyond 2^53: exact both ways, a string in JSON.
  r = Perper({"call", "Calculator", "calc-1", "Add", "9007199254740992", "1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"results": ["9007199254740993"]})"));
  r = Perper({"call", "Calculator", "calc-1", "Add", "9007199254740992", "1"});
  EXPECT_EQ(r.out, "9007199254740993\n");
  // Negative numbers are arguments as they are; after `--` every word is one, options too.
  r = Perper({"call", "Calculator", "calc-1", "Add", "-5", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "-3\n");
  r = Perper(
      {"call", "--fabric", fabric_->address(), "Calculator", "calc-1", "Add", "--", "-5", "-2"},
      /*with_fabric=*/false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "-7\n");
  r = Perper({"call", "Calculator", "calc-1", "Add", "--", "1", "--timeout", "5"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("argument 2 is not JSON: --timeout"), std::string::npos) << r.err;
}

// A call to an agent nothing listens for says so, while it waits and when it gives up, instead
// of reporting that the Fabric did not answer.
TEST_F(CliTest, ACallToAnAgentNoProcessServesSaysSo) {
  Result r = Perper({"call", "Nobody", "n-1", "Run", "--any-instance", "--timeout", "3"});
  EXPECT_EQ(r.code, 1);
  const std::string unserved = "no process serves agent Nobody: nothing on the Fabric at " +
                               fabric_->address() + " listens for its executions";
  EXPECT_NE(r.err.find("perper: " + unserved +
                       "; the call waits up to 3 s for a process to "
                       "start"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("perper: " + unserved +
                       ", so nobody answered Nobody.Run on n-1 within 3 "
                       "s; start the agent's process"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("did not answer"), std::string::npos) << r.err;
  // Nothing of the call is left behind.
  EXPECT_EQ(json::parse(Perper({"executions", "--agent", "Nobody", "--json"}).out), json::array());
}

// The warning comes while the call waits; a process that starts then still answers it.
TEST_F(CliTest, ACallWaitsForAProcessThatStartsAfterTheWarning) {
  ChildProcess call({PERPER_BINARY, "call", "Calculator", "calc-1", "Add", "1", "2", "--fabric",
                     fabric_->address()});
  ASSERT_TRUE(call.WaitForOutput("no process serves agent Calculator", seconds(10)))
      << call.Output();
  ChildProcess calculator({PERPER_CALCULATOR_BINARY},
                          {"PERPER_FABRIC_ENDPOINT=" + fabric_->address()});
  EXPECT_EQ(call.Wait(seconds(30)), 0) << call.Output() << calculator.Output();
  EXPECT_EQ(call.Stdout(), "3\n");
}

TEST_F(CliTest, StatesListsDictionariesThenLists) {
  Append("queue", StringValue("a"));
  Append("queue", StringValue("b"));
  Result r = Perper({"states"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "NAME"), (std::vector<std::string>{"NAME", "KIND", "ENTRIES"})) << r.out;
  EXPECT_EQ(Row(r.out, "stats"), (std::vector<std::string>{"stats", "dictionary", "2"}));
  EXPECT_EQ(Row(r.out, "queue"), (std::vector<std::string>{"queue", "list", "2"}));
  r = Perper({"states", "--prefix", "sta", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out),
            json::parse(R"([{"name": "stats", "kind": "dictionary", "count": 2}])"));
}

// JSON readers that parse numbers as doubles get 64-bit integers beyond 2^53 intact, as strings;
// text output prints them as numbers.
TEST_F(CliTest, LargeIntegersAreStringsInJson) {
  const int64_t big = (int64_t{1} << 53) + 1;  // not a double
  const int64_t exact = int64_t{1} << 53;      // still exact in a double
  CreateStream("wide");
  WriteItem("wide", exact, Int64Value(-big));
  WriteItem("wide", big, Int64Value(exact));
  Result r = Perper({"streams", "--prefix", "wide", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0]["first_key"], exact);
  EXPECT_EQ(rows[0]["last_key"], "9007199254740993");
  EXPECT_EQ(rows[0]["written_count"], 2);

  r = Perper({"stream", "tail", "wide", "--no-follow", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"key\":9007199254740992,\"value\":\"-9007199254740993\"}\n"
            "{\"key\":\"9007199254740993\",\"value\":9007199254740992}\n");
  r = Perper({"stream", "tail", "wide", "--no-follow"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "9007199254740992  -9007199254740993\n9007199254740993  9007199254740992\n");

  SetEntry("wide", "n", Int64Value(big));
  r = Perper({"state", "get", "wide", "n", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), "9007199254740993");
  r = Perper({"state", "get", "wide", "n"});
  EXPECT_EQ(r.out, "9007199254740993\n");
  r = Perper({"state", "list", "wide", "--json"});
  EXPECT_EQ(json::parse(r.out), json::parse(R"([{"key": "n", "value": "9007199254740993"}])"));
}

TEST_F(CliTest, DeleteExecutionStreamAndState) {
  CreateExecution("Doomed-1", "Calc", "c-9", "Add");
  Result r = Perper({"delete", "execution", "Doomed-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted execution Doomed-1\n");
  EXPECT_TRUE(Row(Perper({"executions"}).out, "Doomed-1").empty());
  r = Perper({"delete", "execution", "Doomed-1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no execution 'Doomed-1' (see perper executions)"), std::string::npos)
      << r.err;
  r = Perper({"delete", "execution", "calc-1"});  // an instance: destroy it instead
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("`perper destroy calc-1`"), std::string::npos) << r.err;
  EXPECT_FALSE(Row(Perper({"instances"}).out, "calc-1").empty());

  CreateStream("doomed-stream");
  WriteItem("doomed-stream", 1, StringValue("x"));
  r = Perper({"delete", "stream", "doomed-stream"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted stream doomed-stream\n");
  EXPECT_EQ(json::parse(Perper({"streams", "--prefix", "doomed", "--json"}).out), json::array());
  r = Perper({"delete", "stream", "doomed-stream"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no stream 'doomed-stream' (see perper streams)"), std::string::npos)
      << r.err;

  // A dictionary and a list of the same name: the dictionary first, --list for the list.
  SetEntry("both", "k", StringValue("v"));
  Append("both", StringValue("item"));
  r = Perper({"delete", "state", "both"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted dictionary both\n");
  EXPECT_NE(r.err.find("a list 'both' remains"), std::string::npos) << r.err;
  EXPECT_EQ(json::parse(Perper({"states", "--prefix", "both", "--json"}).out),
            json::parse(R"([{"name": "both", "kind": "list", "count": 1}])"));
  r = Perper({"delete", "state", "both"});  // only the list is left: it goes
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted list both\n");
  EXPECT_EQ(json::parse(Perper({"states", "--prefix", "both", "--json"}).out), json::array());
  r = Perper({"delete", "state", "both"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no dictionary or list 'both' (see perper states)"), std::string::npos)
      << r.err;
  SetEntry("dict-only", "k", StringValue("v"));
  r = Perper({"delete", "state", "dict-only", "--list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no list 'dict-only'"), std::string::npos) << r.err;
  EXPECT_EQ(Perper({"delete", "state", "dict-only"}).code, 0);
}

TEST_F(CliTest, DestroyWithoutAServedStopNeedsForce) {
  CreateInstance("w-orphan", "Worker");
  Result r = Perper({"destroy", "w-orphan", "--timeout", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no process served Stop of instance w-orphan within 1 s, so nothing was "
                       "destroyed; `perper destroy w-orphan --force` destroys it without calling "
                       "Stop"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(Row(Perper({"instances"}).out, "w-orphan").empty());
  r = Perper({"destroy", "w-orphan", "--force", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "destroyed instance w-orphan\n");
  EXPECT_TRUE(Row(Perper({"instances"}).out, "w-orphan").empty());
  r = Perper({"destroy", "w-orphan"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no instance 'w-orphan' (see perper instances"), std::string::npos) << r.err;
}

// The retention rule: an instance's children, executions, their streams and its state go with it.
TEST_F(CliTest, DestroyRemovesWhatTheInstanceOwns) {
  CreateInstance("w-parent", "Worker");
  CreateInstance("w-child", "Worker");
  AddChild("w-parent", "w-child", "Worker");
  SetEntry("w-parent-", "total", Int64Value(5));
  Append("w-parent-", StringValue("entry"));
  SetEntry("w-child-", "total", Int64Value(6));
  CreateExecution("Produce-w1", "Worker", "w-parent", "Produce");
  CreateStream("Produce-w1");
  WriteItem("Produce-w1", 1, StringValue("x"));
  CreateExecution("Job-w1", "Worker", "w-child", "Job");

  Result r = Perper({"destroy", "w-parent", "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Perper({"instances", "--agent", "Worker", "--json"});
  EXPECT_EQ(json::parse(r.out), json::array()) << r.out;
  r = Perper({"executions", "--agent", "Worker", "--json"});
  EXPECT_EQ(json::parse(r.out), json::array()) << r.out;
  r = Perper({"streams", "--prefix", "Produce-w1", "--json"});
  EXPECT_EQ(json::parse(r.out), json::array()) << r.out;
  r = Perper({"states", "--prefix", "w-", "--json"});
  EXPECT_EQ(json::parse(r.out), json::array()) << r.out;
}

// A Deploy instance has no Registry record: --agent names its type, --force destroys what it
// made (its children, executions and state), as `perper up --reset` does.
TEST_F(CliTest, DestroyADeployInstanceWithAgentAndForce) {
  CreateExecution("Shop-deploy-deploy", "perper.Deploy", "Shop-deploy", "Deploy");
  CreateInstance("Run-shop-1", "Cart");
  AddChild("Shop-deploy", "Run-shop-1", "Cart");
  SetEntry("Shop-deploy-", "runs", Int64Value(1));

  Result r = Perper({"destroy", "Shop-deploy"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no instance 'Shop-deploy' (see perper instances; --agent A --force"),
            std::string::npos)
      << r.err;
  r = Perper({"destroy", "Shop-deploy", "--agent", "Shop"});  // Stop needs a Registry record
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no instance 'Shop-deploy' of agent 'Shop'"), std::string::npos) << r.err;
  r = Perper({"destroy", "Shop-deploy", "--agent", "Shop", "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "destroyed instance Shop-deploy\n");
  EXPECT_EQ(json::parse(Perper({"instances", "--agent", "Cart", "--json"}).out), json::array());
  EXPECT_EQ(json::parse(Perper({"executions", "--instance", "Shop-deploy", "--json"}).out),
            json::array());
  EXPECT_EQ(json::parse(Perper({"states", "--prefix", "Shop-", "--json"}).out), json::array());
  r = Perper({"destroy", "Shop-deploy", "--agent", "Shop", "--force"});  // nothing left
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no instance 'Shop-deploy' of agent 'Shop'"), std::string::npos) << r.err;
}

TEST_F(CliTest, DestroyCallsStopOnAServedInstance) {
  ChildProcess calculator({PERPER_CALCULATOR_BINARY},
                          {"PERPER_FABRIC_ENDPOINT=" + fabric_->address()});
  CreateInstance("calc-doomed", "Calculator");
  Result r = Perper({"destroy", "calc-doomed"});
  ASSERT_EQ(r.code, 0) << r.err << calculator.Output();
  EXPECT_EQ(r.out, "destroyed instance calc-doomed\n");
  EXPECT_TRUE(Row(Perper({"instances"}).out, "calc-doomed").empty());
}

TEST(CliErrorsTest, AnUnreachableFabricIsExplained) {
  for (std::vector<std::string> command : {std::vector<std::string>{"instances"},
                                           {"executions"},
                                           {"streams"},
                                           {"state", "list", "d"},
                                           {"states"},
                                           {"destroy", "i"},
                                           {"destroy", "i", "--agent", "A", "--force"},
                                           {"delete", "execution", "e"},
                                           {"delete", "stream", "s"},
                                           {"delete", "state", "d"}}) {
    std::vector<std::string> argv = {PERPER_BINARY};
    argv.insert(argv.end(), command.begin(), command.end());
    argv.insert(argv.end(), {"--fabric", "127.0.0.1:1", "--timeout", "5"});
    std::string out, err;
    EXPECT_EQ(RunToCompletion(argv, {}, &out, &err), 1) << command[0];
    EXPECT_NE(err.find("cannot reach the Fabric at 127.0.0.1:1"), std::string::npos) << err;
  }
}

TEST(CliErrorsTest, NoAnsweringFabricInAListNamesEveryAddress) {
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "instances", "--fabric", "127.0.0.1:1,127.0.0.1:2",
                             "--timeout", "5"},
                            {}, &out, &err),
            1);
  EXPECT_NE(err.find("cannot reach the Fabric at 127.0.0.1:1, 127.0.0.1:2"), std::string::npos)
      << err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "instances", "--fabric", "127.0.0.1:1,,127.0.0.1:2"},
                            {}, &out, &err),
            2);
  EXPECT_NE(err.find("--fabric '127.0.0.1:1,,127.0.0.1:2' has an empty address"), std::string::npos)
      << err;
}

// The CLI reads --fabric as the SDKs read PERPER_FABRIC_ENDPOINT: https:// is refused (no TLS
// yet), by `perper up` too, rather than dialled without TLS.
TEST(CliErrorsTest, AnHttpsFabricAddressIsRefused) {
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "instances", "--fabric", "https://127.0.0.1:1"}, {},
                            &out, &err),
            2);
  EXPECT_NE(err.find("https://127.0.0.1:1: TLS is not supported yet"), std::string::npos) << err;
  TempDir dir;
  std::string manifest = dir.path() + "/app.yaml";
  std::ofstream(manifest) << "agents:\n  A:\n    command: [/bin/true]\n";
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", manifest, "--fabric", "https://127.0.0.1:1"}, {},
                            &out, &err),
            2);
  EXPECT_NE(err.find("perper up: --fabric 'https://127.0.0.1:1': https://127.0.0.1:1: TLS is not "
                     "supported yet"),
            std::string::npos)
      << err;
}

TEST(CliErrorsTest, UpTakesASingleFabricAddress) {
  TempDir dir;
  std::string manifest = dir.path() + "/app.yaml";
  std::ofstream(manifest) << "agents:\n  A:\n    command: [/bin/true]\n";
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "up", manifest, "--fabric", "127.0.0.1:1,127.0.0.1:2"},
                            {}, &out, &err),
            2);
  EXPECT_NE(err.find("'127.0.0.1:1,127.0.0.1:2' must be a single host:port"), std::string::npos)
      << err;
}

TEST(CliErrorsTest, EveryCommandHasHelp) {
  for (std::vector<std::string> command : {std::vector<std::string>{},
                                           {"up"},
                                           {"fabric"},
                                           {"executions"},
                                           {"instances"},
                                           {"streams"},
                                           {"stream", "tail"},
                                           {"state", "get"},
                                           {"state", "list"},
                                           {"call"},
                                           {"states"},
                                           {"destroy"},
                                           {"delete"},
                                           {"delete", "execution"},
                                           {"delete", "stream"},
                                           {"delete", "state"},
                                           {"completion"},
                                           {"init"}}) {
    std::vector<std::string> argv = {PERPER_BINARY};
    argv.insert(argv.end(), command.begin(), command.end());
    argv.push_back("--help");
    std::string out, err;
    EXPECT_EQ(RunToCompletion(argv, {}, &out, &err), 0) << argv.size();
    EXPECT_NE(out.find("Usage:"), std::string::npos) << out;
  }
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "destroy", "--help"}, {}, &out, &err), 0);
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "delete", "state", "--help"}, {}, &out, &err), 0);
  EXPECT_NE(out.find("--list"), std::string::npos) << out;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "frobnicate"}, {}, &out, &err), 2);
  EXPECT_EQ(RunToCompletion({PERPER_BINARY}, {}, &out, &err), 2);
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "delete", "table", "x"}, {}, &out, &err), 2);
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "destroy"}, {}, &out, &err), 2);  // INSTANCE needed
}

TEST(CliErrorsTest, AnUnknownCommandIsNamedAndTheCommandsListed) {
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "frobnicate", "x"}, {}, &out, &err), 2);
  EXPECT_NE(err.find("perper: unknown command 'frobnicate'; the commands are up, fabric,"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("instances"), std::string::npos) << err;
  // An unknown option before any command is named too, not answered "a command is required".
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "--bogus"}, {}, &out, &err), 2);
  EXPECT_EQ(err, "perper: unknown option '--bogus' (see perper --help)\n");
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "--bogus=1", "instances"}, {}, &out, &err), 2);
  EXPECT_EQ(err, "perper: unknown option '--bogus' (see perper --help)\n");
  // Known options before the command still work.
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "--help"}, {}, &out, &err), 0);
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "-h"}, {}, &out, &err), 0);
}

TEST(CliErrorsTest, VersionsAndBadFlagsOfBothBinaries) {
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "--version"}, {}, &out, &err), 0);
  EXPECT_EQ(out, std::string("perper ") + PERPER_VERSION + "\n");
  EXPECT_EQ(RunToCompletion({PERPER_FABRIC_BINARY, "--version"}, {}, &out, &err), 0);
  EXPECT_EQ(out, std::string("perper-fabric ") + PERPER_VERSION + "\n");
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "instances", "--bogus"}, {}, &out, &err), 2);
  EXPECT_NE(err.find("--bogus"), std::string::npos) << err;
  EXPECT_EQ(RunToCompletion({PERPER_FABRIC_BINARY, "--bogus"}, {}, &out, &err), 2);
  EXPECT_NE(err.find("--bogus"), std::string::npos) << err;
}

// Completes `perper WORDS…` (the last word is the one being typed) in bash with the script of
// `perper completion bash`, in the folder `dir`; returns the candidates, one per line, sorted.
std::string Complete(const std::string& dir, std::vector<std::string> words) {
  std::vector<std::string> argv = {
      "/bin/bash", "-c",
      "source <(\"$0\" completion bash) || exit 3\n"
      "[[ $(complete -p perper) == 'complete -F _perper perper' ]] || exit 4\n"
      "COMP_WORDS=(perper \"$@\"); COMP_CWORD=$#\n"
      "_perper\n"
      "printf '%s\\n' \"${COMPREPLY[@]}\" | sort",
      PERPER_BINARY};
  argv.insert(argv.end(), words.begin(), words.end());
  std::string out, err;
  int code = RunIn(dir, argv, {}, &out, &err);
  EXPECT_EQ(code, 0) << err;
  return out;
}

TEST(CliCompletionTest, BashCompletesCommandsFlagsAndFiles) {
  TempDir dir;
  std::ofstream(dir.path() + "/app.yaml") << "agents: {}\n";
  EXPECT_EQ(Complete(dir.path(), {"ex"}), "executions\n");
  EXPECT_EQ(Complete(dir.path(), {"st"}), "state\nstates\nstream\nstreams\n");
  EXPECT_EQ(Complete(dir.path(), {"stream", "t"}), "tail\n");
  EXPECT_EQ(Complete(dir.path(), {"delete", ""}), "--help\nexecution\nstate\nstream\n");
  EXPECT_EQ(Complete(dir.path(), {"executions", "--st"}), "--state\n");
  EXPECT_EQ(Complete(dir.path(), {"stream", "tail", "--no"}), "--no-follow\n");
  EXPECT_EQ(Complete(dir.path(), {"delete", "state", "--l"}), "--list\n");
  // Values: a file where the option names one, nothing for others.
  EXPECT_EQ(Complete(dir.path(), {"up", "ap"}), "app.yaml\n");
  EXPECT_EQ(Complete(dir.path(), {"up", "app.yaml", "--log-dir", "a"}), "app.yaml\n");
  EXPECT_EQ(Complete(dir.path(), {"executions", "--agent", ""}), "\n");
  EXPECT_EQ(Complete(dir.path(), {"executions", "--agent", "up", "--j"}), "--json\n");
  // Every command of the binary is offered.
  std::string commands = Complete(dir.path(), {""});
  for (const char* command :
       {"up", "fabric", "executions", "instances", "streams", "stream", "state", "states",
        "destroy", "delete", "call", "init", "completion"}) {
    EXPECT_NE(commands.find(std::string("\n") + command + "\n"), std::string::npos) << command;
  }

  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "completion", "tcsh"}, {}, &out, &err), 2);
  EXPECT_EQ(err, "perper completion: no completion for 'tcsh'; the shells are: bash\n");
}

// perper init python: a runnable application; perper up runs it as it is.
TEST(CliInitTest, ThePythonTemplateRunsWithPerperUp) {
  TempDir dir;
  std::string out, err;
  ASSERT_EQ(RunIn(dir.path(), {PERPER_BINARY, "init", "python", "greeter"}, {}, &out, &err), 0)
      << err;
  EXPECT_EQ(out,
            "Created ./greeter/, a Python application:\n"
            "  greeter/agent.py  the agent greeter: its Deploy calls its delegate Greet and "
            "prints the answer\n"
            "  greeter/app.yaml  the application: perper up app.yaml\n"
            "Run it (perper up gives the agent the Python SDK; its Python needs grpcio and "
            "protobuf, see app.yaml):\n"
            "  perper up greeter/app.yaml\n");
  // Without PYTHONPATH, as a new user runs it: perper up gives the agent its build's SDK.
  EXPECT_EQ(
      RunIn(dir.path(), {PERPER_BINARY, "up", "greeter/app.yaml"},
            {std::string("PERPER_PYTHON=") + PERPER_PYTHON, "PYTHONPATH"}, &out, &err, seconds(60)),
      0)
      << out << err;
  EXPECT_TRUE(std::regex_match(out, std::regex(R"(\[agent=greeter instance=deploy pid=\d+\] )"
                                               R"(Hello, greeter!\n)")))
      << out << err;
}

// An existing folder with something in it is never written to; bad names and languages are
// usage errors.
TEST(CliInitTest, InitRefusesANonEmptyFolderAndBadArguments) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/taken");
  std::ofstream(dir.path() + "/taken/notes.txt") << "mine\n";
  std::string out, err;
  EXPECT_EQ(RunIn(dir.path(), {PERPER_BINARY, "init", "cpp", "taken"}, {}, &out, &err), 1);
  EXPECT_EQ(err,
            "perper init: ./taken exists and is not an empty folder; nothing was written "
            "(choose another NAME, or remove it)\n");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path() + "/taken"),
                          std::filesystem::directory_iterator()),
            1);
  std::ofstream(dir.path() + "/file") << "x";
  EXPECT_EQ(RunIn(dir.path(), {PERPER_BINARY, "init", "python", "file"}, {}, &out, &err), 1);
  // An empty folder is filled.
  std::filesystem::create_directories(dir.path() + "/empty");
  EXPECT_EQ(RunIn(dir.path(), {PERPER_BINARY, "init", "cpp", "empty"}, {}, &out, &err), 0) << err;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/empty/CMakeLists.txt"));
  // The C++ agent is examples/cpp/hello_agent under the new name (cli_init_cpp builds and runs
  // it).
  std::stringstream agent;
  agent << std::ifstream(dir.path() + "/empty/agent.cc").rdbuf();
  EXPECT_NE(agent.str().find("perper::Agent app(\"empty\");"), std::string::npos) << agent.str();
  EXPECT_NE(agent.str().find("perper::call<std::string>(\"Greet\", \"empty\")"), std::string::npos)
      << agent.str();
  EXPECT_EQ(agent.str().find("SPDX"), std::string::npos) << agent.str();

  EXPECT_EQ(RunIn(dir.path(), {PERPER_BINARY, "init", "rust", "x"}, {}, &out, &err), 2);
  EXPECT_EQ(err, "perper init: no template for 'rust'; the templates are cpp and python\n");
  EXPECT_EQ(RunIn(dir.path(), {PERPER_BINARY, "init", "cpp", "../escape"}, {}, &out, &err), 2);
  EXPECT_NE(err.find("'../escape' cannot name an agent"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/../escape"));
}

TEST(CliFabricTest, PerperFabricServesUntilSigterm) {
  TempDir dir;
  std::string address_file = dir.path() + "/address";
  ChildProcess fabric({PERPER_BINARY, "fabric", "--listen", "127.0.0.1:0", "--storage", "memory",
                       "--address-file", address_file});
  std::string address;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::ifstream in(address_file);
        return std::getline(in, address) && in.good() && !address.empty();
      },
      seconds(10)))
      << fabric.Output();
  std::string out, err;
  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "instances", "--fabric", address}, {}, &out, &err), 0)
      << err;
  EXPECT_EQ(out, "INSTANCE  AGENT\n");
  fabric.Signal(SIGTERM);
  EXPECT_EQ(fabric.Wait(seconds(10)), 0) << fabric.Output();

  EXPECT_EQ(RunToCompletion({PERPER_BINARY, "fabric", "--storage", "paper"}, {}, &out, &err), 2);
  EXPECT_NE(err.find("unknown backend 'paper'"), std::string::npos) << err;
}

}  // namespace
}  // namespace perper::testing
