// SPDX-License-Identifier: MIT
// FabricInstances over real gRPC, with a small in-test agent serving Start, Stop and calls:
// CreateAndStart, Call and StopAndDelete (with the child cascade).
#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "perper/common/values.h"
#include "perper/grpc2/model.pb.h"
#include "tests/integration/executions_helpers.h"

namespace perper::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

class InstancesTest : public FabricTest {
 protected:
  storage::ExecutionStore& StoreExecutions() { return fabric().server().store().executions(); }

  // An agent of type `agent` that answers Start with arguments[0] + 1, Stop with
  // "stopped <instance>", fails "Fail", and echoes every other delegate's first argument.
  std::unique_ptr<TestAgent> StartAgent(const std::string& agent) {
    return std::make_unique<TestAgent>(
        fabric().NewChannel(), agent, [this](const grpc2::ExecutionsListenResponse& e) {
          TestAgent::Outcome outcome;
          const std::string& delegate = e.delegate();
          {
            absl::MutexLock lock(&mu_);
            calls_.push_back(delegate + ":" + e.instance().instance());
          }
          if (delegate == "Start") {
            if (e.arguments_size() > 0 && IntOf(e.arguments(0)) < 0) {
              outcome.error = "negative start";
            } else {
              outcome.results.push_back(
                  Int64Value(e.arguments_size() > 0 ? IntOf(e.arguments(0)) + 1 : 0));
            }
          } else if (delegate == "Stop") {
            std::string suffix = e.arguments_size() > 0 ? " " + StringOf(e.arguments(0)) : "";
            outcome.results.push_back(StringValue("stopped " + e.instance().instance() + suffix));
          } else if (delegate == "Fail") {
            outcome.error = "failed on purpose";
          } else if (e.arguments_size() > 0) {
            outcome.results.push_back(e.arguments(0));
          }
          return outcome;
        });
  }

  std::vector<std::string> Calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  grpc::Status CreateAndStart(const std::string& id, const std::string& agent,
                              std::vector<google::protobuf::Any> args,
                              grpc2::ExecutionsGetResultResponse* response,
                              const std::string& parent = "",
                              const std::string& parent_agent = "") {
    grpc2::InstancesCreateAndStartRequest request;
    request.mutable_instance()->set_instance(id);
    request.mutable_instance()->set_agent(agent);
    for (auto& a : args) *request.add_arguments() = std::move(a);
    if (!parent.empty() || !parent_agent.empty()) {
      request.mutable_parent()->set_instance(parent);
      request.mutable_parent()->set_agent(parent_agent);
    }
    return Instances()->CreateAndStart(Context().get(), request, response);
  }

  grpc::Status StopAndDelete(const std::string& id, const std::string& agent,
                             std::vector<google::protobuf::Any> params,
                             grpc2::ExecutionsGetResultResponse* response, bool skip_stop = false) {
    grpc2::InstancesStopAndDeleteRequest request;
    request.mutable_instance()->set_instance(id);
    request.mutable_instance()->set_agent(agent);
    for (auto& p : params) *request.add_stop_parameters() = std::move(p);
    request.set_skip_stop(skip_stop);
    return Instances()->StopAndDelete(Context().get(), request, response);
  }

  // What introspection lists of everything stored: executions (finished too, "id/agent"),
  // streams, and states ("dictionary NAME" / "list NAME").
  std::vector<std::string> Everything() {
    std::vector<std::string> all;
    grpc2::IntrospectionListExecutionsRequest executions;
    executions.set_include_finished(true);
    grpc2::IntrospectionListExecutionsResponse listed_executions;
    EXPECT_TRUE(
        Introspection()->ListExecutions(Context().get(), executions, &listed_executions).ok());
    for (const auto& e : listed_executions.executions()) {
      all.push_back("execution " + e.execution().execution() + "/" + e.instance().agent());
    }
    grpc2::IntrospectionListStreamsResponse listed_streams;
    EXPECT_TRUE(Introspection()
                    ->ListStreams(Context().get(), grpc2::IntrospectionListStreamsRequest(),
                                  &listed_streams)
                    .ok());
    for (const auto& stream : listed_streams.streams()) all.push_back("stream " + stream.stream());
    grpc2::IntrospectionListStatesResponse listed_states;
    EXPECT_TRUE(
        Introspection()
            ->ListStates(Context().get(), grpc2::IntrospectionListStatesRequest(), &listed_states)
            .ok());
    for (const auto& state : listed_states.states()) {
      all.push_back((state.kind() == grpc2::StateSummary::LIST ? "list " : "dictionary ") +
                    state.name());
    }
    return all;
  }

  // Gives instance `id` what an agent instance leaves behind: executions of it (one finished,
  // one not, each producing a stream of its ID), its dictionary and its list "{id}-".
  void GiveState(const std::string& id) {
    auto executions = Executions();
    auto streams = Streams();
    for (const std::string suffix : {"done", "running"}) {
      const std::string execution = id + "-" + suffix;
      ASSERT_TRUE(CreateExecution(*executions, execution, "Worker", id, "Generate").ok());
      grpc2::StreamsCreateRequest create;
      create.mutable_stream()->set_stream(execution);
      create.set_ephemeral(false);
      google::protobuf::Empty empty;
      ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
    }
    ASSERT_TRUE(CompleteExecution(*executions, id + "-done", {Int64Value(1)}).ok());
    auto& states = fabric().server().store().states();
    storage::DictionaryOperation set;
    set.key = SerializeAny(StringValue("k"));
    set.set_new_value = true;
    set.new_value = SerializeAny(Int64Value(1));
    ASSERT_TRUE(states.OperateDictionary(id + "-", set).ok());
    ASSERT_TRUE(states.CreateList(id + "-").ok());
  }

  // Executions still stored, other than Registry records.
  std::vector<std::string> NonRegistryExecutions() {
    storage::ExecutionFilter any;
    any.any_agent = true;
    any.include_finished = true;
    std::vector<std::string> ids;
    for (const auto& r : Ok(StoreExecutions().ListExecutions(any, 1000))) {
      if (r.agent != "Registry") ids.push_back(r.execution);
    }
    return ids;
  }

  absl::Mutex mu_;
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
};

TEST_P(InstancesTest, CreateAndStartRejectsMissingFields) {
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status no_id = CreateAndStart("", "Calc", {}, &response);
  EXPECT_EQ(no_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_id.error_message(), HasSubstr("instance.instance"));
  grpc::Status no_agent = CreateAndStart("i1", "", {}, &response);
  EXPECT_EQ(no_agent.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_agent.error_message(), HasSubstr("instance.agent"));
  grpc::Status bad_parent = CreateAndStart("i1", "Calc", {}, &response, "", "x");
  EXPECT_EQ(bad_parent.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_parent.error_message(), HasSubstr("parent.instance"));
  grpc2::InstancesCreateAndStartRequest missing;
  EXPECT_EQ(Instances()->CreateAndStart(Context().get(), missing, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(StoreExecutions().GetExecution("i1").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(InstancesTest, CreateAndStartRegistersTheInstanceAndCallsStart) {
  auto agent = StartAgent("Calc");
  auto executions = Executions();
  ListenCall registry(*executions, "Registry", "Calc", "Run");
  EXPECT_TRUE(registry.ReadInitial().empty());
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = CreateAndStart("calc-1", "Calc", {Int64Value(41)}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(response.deleted());
  EXPECT_FALSE(response.has_error());
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(IntOf(response.results(0)), 42);
  // The Registry record is the instance; scalers see it.
  grpc2::ExecutionsListenResponse seen;
  ASSERT_TRUE(registry.Read(&seen));
  EXPECT_EQ(seen.execution().execution(), "calc-1");
  EXPECT_EQ(seen.instance().agent(), "Registry");
  EXPECT_EQ(seen.instance().instance(), "Calc");
  EXPECT_EQ(seen.delegate(), "Run");
  EXPECT_THAT(Calls(), ElementsAre("Start:calc-1"));
  // The Start execution was made by the Fabric and deleted once answered.
  EXPECT_TRUE(NonRegistryExecutions().empty());
  auto seen_by_agent = agent->Seen();
  ASSERT_FALSE(seen_by_agent.empty());
  EXPECT_THAT(seen_by_agent[0], ::testing::StartsWith("Start-"));
}

TEST_P(InstancesTest, StartFailureIsReportedAsTheError) {
  auto agent = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = CreateAndStart("calc-1", "Calc", {Int64Value(-1)}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.error().message(), "negative start");
}

TEST_P(InstancesTest, CreateAndStartOfAConflictingInstanceIsAlreadyExists) {
  auto executions = Executions();
  ASSERT_TRUE(CreateExecution(*executions, "calc-1", "Registry", "OtherType", "Run").ok());
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = CreateAndStart("calc-1", "Calc", {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("calc-1"));
  // An identical Registry record is a retry: accepted.
  auto agent = StartAgent("Calc");
  ASSERT_TRUE(CreateExecution(*executions, "calc-2", "Registry", "Calc", "Run").ok());
  EXPECT_TRUE(CreateAndStart("calc-2", "Calc", {Int64Value(1)}, &response).ok());
}

TEST_P(InstancesTest, CallMakesAWholeRoundTrip) {
  auto agent = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = Instances()->Call(
      Context().get(), CreateRequest("Echo-1", "Calc", "calc-1", "Echo", {StringValue("hi")}),
      &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(StringOf(response.results(0)), "hi");
  EXPECT_EQ(StoreExecutions().GetExecution("Echo-1").status().code(), absl::StatusCode::kNotFound);
  status = Instances()->Call(Context().get(), CreateRequest("Fail-1", "Calc", "calc-1", "Fail"),
                             &response);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(response.error().message(), "failed on purpose");
}

TEST_P(InstancesTest, CallRejectsBadInput) {
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status =
      Instances()->Call(Context().get(), CreateRequest("", "Calc", "c", "Echo"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = Instances()->Call(Context().get(), CreateRequest("x", "Calc", "c", ""), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("delegate"));
}

TEST_P(InstancesTest, CancelledCallDeletesItsExecution) {
  auto executions = Executions();
  ListenCall handler(*executions, "Slow");
  EXPECT_TRUE(handler.ReadInitial().empty());
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = Instances()->Call(Context(std::chrono::milliseconds(300)).get(),
                                          CreateRequest("Slow-1", "Slow", "s", "Work"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  grpc2::ExecutionsListenResponse seen;
  ASSERT_TRUE(handler.Read(&seen));
  EXPECT_EQ(seen.execution().execution(), "Slow-1");
  ASSERT_TRUE(handler.Read(&seen));  // The handler learns of the cancellation.
  EXPECT_EQ(seen.execution().execution(), "Slow-1");
  EXPECT_TRUE(seen.deleted());
  EXPECT_EQ(StoreExecutions().GetExecution("Slow-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(InstancesTest, StopAndDeleteCallsStopThenDeletesTheInstance) {
  auto agent = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(CreateAndStart("calc-1", "Calc", {Int64Value(1)}, &response).ok());
  grpc::Status status = StopAndDelete("calc-1", "Calc", {StringValue("now")}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(StringOf(response.results(0)), "stopped calc-1 now");
  EXPECT_EQ(StoreExecutions().GetExecution("calc-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Calls(), ElementsAre("Start:calc-1", "Stop:calc-1"));
  EXPECT_TRUE(NonRegistryExecutions().empty());
}

TEST_P(InstancesTest, StopAndDeleteRejectsUnknownEmptyAndMismatchedInstances) {
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status unknown = StopAndDelete("nope", "Calc", {}, &response);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("nope"));
  EXPECT_EQ(StopAndDelete("", "Calc", {}, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(StopAndDelete("x", "", {}, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto executions = Executions();
  ASSERT_TRUE(CreateExecution(*executions, "calc-1", "Registry", "Calc", "Run").ok());
  grpc::Status wrong = StopAndDelete("calc-1", "Other", {}, &response);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(wrong.error_message(), HasSubstr("Calc"));
  ASSERT_TRUE(CreateExecution(*executions, "plain", "Calc", "calc-1", "Work").ok());
  EXPECT_EQ(StopAndDelete("plain", "Calc", {}, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);  // Not a Registry record: not an instance.
  EXPECT_TRUE(StoreExecutions().GetExecution("calc-1").ok());
}

// Needs the states engine (OperateList / ListList) of the same Fabric.
TEST_P(InstancesTest, ChildrenAreListedAndStoppedWithTheirParent) {
  auto calc = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(CreateAndStart("parent", "Calc", {}, &response).ok());
  grpc::Status status = CreateAndStart("child", "Calc", {}, &response, "parent", "Calc");
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(CreateAndStart("grandchild", "Calc", {}, &response, "child", "Calc").ok());
  // A retried CreateAndStart does not list the child twice.
  ASSERT_TRUE(CreateAndStart("child", "Calc", {}, &response, "parent", "Calc").ok());
  auto& states = fabric().server().store().states();
  auto listed = states.ListList("parent-children").value();
  ASSERT_EQ(listed.size(), 1u);
  grpc2::model::PerperInstance child;
  ASSERT_TRUE(ParseAny(listed[0].value).UnpackTo(&child));
  EXPECT_EQ(child.instance(), "child");
  EXPECT_EQ(child.agent(), "Calc");

  status = StopAndDelete("parent", "Calc", {}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(StringOf(response.results(0)), "stopped parent");
  std::vector<std::string> calls = Calls();
  std::vector<std::string> stops(calls.begin(), calls.end());
  stops.erase(std::remove_if(stops.begin(), stops.end(),
                             [](const std::string& c) { return c.rfind("Stop:", 0) != 0; }),
              stops.end());
  EXPECT_THAT(stops, ElementsAre("Stop:parent", "Stop:child", "Stop:grandchild"));
  for (const std::string id : {"parent", "child", "grandchild"}) {
    EXPECT_EQ(StoreExecutions().GetExecution(id).status().code(), absl::StatusCode::kNotFound)
        << id;
  }
  EXPECT_EQ(states.CountList("parent-children").value(), 0u);
  EXPECT_EQ(states.CountList("child-children").value(), 0u);
}

TEST_P(InstancesTest, AnInstanceCannotBeItsOwnParent) {
  auto calc = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  grpc::Status status = CreateAndStart("self", "Calc", {}, &response, "self", "Calc");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("instance self cannot be its own parent"));
  // Refused before anything was written.
  EXPECT_EQ(StoreExecutions().GetExecution("self").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fabric().server().store().states().CountList("self-children").value(), 0u);
}

TEST_P(InstancesTest, AParentLinkThatClosesACycleIsRefused) {
  auto calc = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(CreateAndStart("a", "Calc", {}, &response).ok());
  ASSERT_TRUE(CreateAndStart("b", "Calc", {}, &response, "a", "Calc").ok());
  ASSERT_TRUE(CreateAndStart("c", "Calc", {}, &response, "b", "Calc").ok());
  // a -> b -> c: making a a child of c (a retried creation of a with another parent) closes it.
  grpc::Status status = CreateAndStart("a", "Calc", {}, &response, "c", "Calc");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("parent c is a descendant of instance a: the parent link would form a "
                        "cycle"));
  EXPECT_EQ(fabric().server().store().states().CountList("c-children").value(), 0u);
  status = CreateAndStart("a", "Calc", {}, &response, "b", "Calc");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  status = StopAndDelete("a", "Calc", {}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  for (const std::string id : {"a", "b", "c"}) {
    EXPECT_EQ(StoreExecutions().GetExecution(id).status().code(), absl::StatusCode::kNotFound)
        << id;
  }
}

// Two concurrent creations can each pass the cycle check; the cascade must end anyway. The
// cycle is written straight into the children lists, as such a race would leave them.
TEST_P(InstancesTest, StopAndDeleteVisitsEachInstanceOnceEvenAroundACycle) {
  auto calc = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(CreateAndStart("x", "Calc", {}, &response).ok());
  ASSERT_TRUE(CreateAndStart("y", "Calc", {}, &response, "x", "Calc").ok());
  auto& states = fabric().server().store().states();
  for (const auto& [list, child] : {std::pair{"y-children", "x"}, std::pair{"x-children", "x"}}) {
    grpc2::model::PerperInstance instance;
    instance.set_instance(child);
    instance.set_agent("Calc");
    google::protobuf::Any any;
    any.PackFrom(instance);
    storage::ListOperation append;
    append.location = storage::ListOperation::Location::kAtBack;
    append.insert_values.push_back(SerializeAny(any));
    ASSERT_TRUE(states.OperateList(list, append).ok());
  }

  grpc::Status status = StopAndDelete("x", "Calc", {}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<std::string> stops;
  for (const std::string& call : Calls()) {
    if (call.rfind("Stop:", 0) == 0) stops.push_back(call);
  }
  EXPECT_THAT(stops, ElementsAre("Stop:x", "Stop:y"));
  EXPECT_EQ(StoreExecutions().GetExecution("x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(StoreExecutions().GetExecution("y").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(InstancesTest, StopAndDeleteLeavesNothingOfTheInstanceOrItsChildren) {
  auto calc = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(CreateAndStart("gone", "Calc", {}, &response).ok());
  ASSERT_TRUE(CreateAndStart("gone-child", "Calc", {}, &response, "gone", "Calc").ok());
  ASSERT_TRUE(CreateAndStart("kept", "Calc", {}, &response).ok());
  GiveState("gone");
  GiveState("gone-child");
  GiveState("kept");
  std::vector<std::string> before = Everything();
  EXPECT_THAT(before, ::testing::Contains("execution gone-done/Worker"));
  EXPECT_THAT(before, ::testing::Contains("dictionary gone-"));

  grpc::Status status = StopAndDelete("gone", "Calc", {}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(StringOf(response.results(0)), "stopped gone");
  // Only the other instance is left, with everything it had.
  EXPECT_THAT(Everything(),
              UnorderedElementsAre("execution kept/Registry", "execution kept-done/Worker",
                                   "execution kept-running/Worker", "stream kept-done",
                                   "stream kept-running", "dictionary kept-", "list kept-"));
}

TEST_P(InstancesTest, SkipStopDestroysAnInstanceWhoseProcessIsGone) {
  grpc2::ExecutionsGetResultResponse response;
  {
    auto calc = StartAgent("Calc");
    ASSERT_TRUE(CreateAndStart("orphan", "Calc", {}, &response).ok());
    ASSERT_TRUE(CreateAndStart("orphan-child", "Calc", {}, &response, "orphan", "Calc").ok());
  }  // The agent's process is gone: nobody would answer Stop.
  GiveState("orphan");
  GiveState("orphan-child");
  grpc::Status status = StopAndDelete("orphan", "Calc", {}, &response, /*skip_stop=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.results_size(), 0);
  EXPECT_FALSE(response.has_error());
  EXPECT_THAT(Everything(), ::testing::IsEmpty());
  std::vector<std::string> calls = Calls();
  EXPECT_EQ(std::count_if(calls.begin(), calls.end(),
                          [](const std::string& c) { return c.rfind("Stop:", 0) == 0; }),
            0);
  // The instance is gone: a second destruction finds nothing.
  EXPECT_EQ(StopAndDelete("orphan", "Calc", {}, &response, true).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_P(InstancesTest, SkipStopDestroysWhatAnUnregisteredInstanceOwns) {
  // "app-deploy" has no Registry record, as the instance a recorded Deploy runs in: it has a
  // child, executions and state only.
  auto calc = StartAgent("Calc");
  grpc2::ExecutionsGetResultResponse response;
  ASSERT_TRUE(CreateAndStart("app-child", "Calc", {}, &response, "app-deploy", "App").ok());
  GiveState("app-deploy");
  // With Stop, it is not an instance that could answer one.
  EXPECT_EQ(StopAndDelete("app-deploy", "App", {}, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_FALSE(Everything().empty());
  grpc::Status status = StopAndDelete("app-deploy", "App", {}, &response, /*skip_stop=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(Everything(), ::testing::IsEmpty());
  // An instance that owns nothing is still unknown.
  EXPECT_EQ(StopAndDelete("app-deploy", "App", {}, &response, true).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

INSTANTIATE_TEST_SUITE_P(Backends, InstancesTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
