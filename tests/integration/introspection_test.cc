// SPDX-License-Identifier: MIT
// FabricIntrospection over real gRPC, on every backend. The data is created through the Store
// directly, so these tests depend only on the Store interface.
#include <chrono>
#include <memory>
#include <thread>

#include "perper/common/values.h"
#include "perper/storage/redis/key_slot.h"
#include "perper/storage/redis/redis_keys.h"
#include "tests/integration/executions_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

class IntrospectionTest : public FabricTest {
 protected:
  storage::Store& store() { return fabric().server().store(); }
  void CreateExecution(const std::string& id, const std::string& agent, const std::string& instance,
                       const std::string& delegate, int arguments = 0) {
    storage::ExecutionRecord record;
    record.execution = id;
    record.agent = agent;
    record.instance = instance;
    record.delegate = delegate;
    for (int i = 0; i < arguments; ++i) record.arguments.push_back(SerializeAny(Int64Value(i)));
    auto created = store().executions().CreateExecution(record);
    ASSERT_TRUE(created.ok()) << created.status();
  }
  std::vector<std::string> ExecutionIds(const grpc2::IntrospectionListExecutionsRequest& request) {
    grpc2::IntrospectionListExecutionsResponse response;
    grpc::Status status = Introspection()->ListExecutions(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> ids;
    for (const auto& e : response.executions()) ids.push_back(e.execution().execution());
    return ids;
  }
};

using Ids = std::vector<std::string>;

TEST_P(IntrospectionTest, ListExecutionsFiltersInCreationOrder) {
  CreateExecution("c-1", "calc", "i1", "Add", 2);
  CreateExecution("g-1", "gen", "i2", "Run");
  CreateExecution("c-2", "calc", "i2", "Mul");
  CreateExecution("c-3", "calc", "i1", "Add");
  ASSERT_TRUE(store()
                  .executions()
                  .CompleteExecution("c-3", {SerializeAny(Int64Value(1))}, std::nullopt)
                  .ok());
  grpc2::IntrospectionListExecutionsRequest request;
  EXPECT_EQ(ExecutionIds(request), (Ids{"c-1", "g-1", "c-2"}));  // empty agent: any agent
  request.set_include_finished(true);
  EXPECT_EQ(ExecutionIds(request), (Ids{"c-1", "g-1", "c-2", "c-3"}));
  request.set_agent("calc");
  EXPECT_EQ(ExecutionIds(request), (Ids{"c-1", "c-2", "c-3"}));
  request.set_instance("i1");
  EXPECT_EQ(ExecutionIds(request), (Ids{"c-1", "c-3"}));
  request.set_delegate("Mul");
  EXPECT_TRUE(ExecutionIds(request).empty());
  request.clear_instance();
  EXPECT_EQ(ExecutionIds(request), (Ids{"c-2"}));

  grpc2::IntrospectionListExecutionsRequest all;
  all.set_include_finished(true);
  all.set_limit(2);
  EXPECT_EQ(ExecutionIds(all), (Ids{"c-1", "g-1"}));

  all.set_limit(0);
  grpc2::IntrospectionListExecutionsResponse response;
  ASSERT_TRUE(Introspection()->ListExecutions(Context().get(), all, &response).ok());
  ASSERT_EQ(response.executions_size(), 4);
  const auto& first = response.executions(0);
  EXPECT_EQ(first.instance().agent(), "calc");
  EXPECT_EQ(first.instance().instance(), "i1");
  EXPECT_EQ(first.delegate(), "Add");
  EXPECT_EQ(first.argument_count(), 2u);
  EXPECT_FALSE(first.finished());
  const auto& finished = response.executions(3);
  EXPECT_TRUE(finished.finished());
  EXPECT_FALSE(finished.failed());
  EXPECT_EQ(finished.result_count(), 1u);
  for (int i = 1; i < response.executions_size(); ++i) {
    EXPECT_LT(response.executions(i - 1).sequence(), response.executions(i).sequence());
  }
}

TEST_P(IntrospectionTest, LimitsAreBounded) {
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_limit(100001);
  grpc2::IntrospectionListExecutionsResponse response;
  grpc::Status status = Introspection()->ListExecutions(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("limit"), std::string::npos);
  request.set_limit(100000);
  EXPECT_TRUE(Introspection()->ListExecutions(Context().get(), request, &response).ok());
  grpc2::IntrospectionListStreamsRequest streams;
  streams.set_limit(200000);
  grpc2::IntrospectionListStreamsResponse streams_response;
  EXPECT_EQ(Introspection()->ListStreams(Context().get(), streams, &streams_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc2::IntrospectionListInstancesRequest instances;
  instances.set_limit(200000);
  grpc2::IntrospectionListInstancesResponse instances_response;
  EXPECT_EQ(
      Introspection()->ListInstances(Context().get(), instances, &instances_response).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(IntrospectionTest, DefaultLimitIsAThousand) {
  for (int i = 0; i < 1001; ++i) CreateExecution("e-" + std::to_string(i), "a", "", "D");
  grpc2::IntrospectionListExecutionsRequest request;
  EXPECT_EQ(ExecutionIds(request).size(), 1000u);
  request.set_limit(5000);
  EXPECT_EQ(ExecutionIds(request).size(), 1001u);
}

TEST_P(IntrospectionTest, ListInstancesShowsUnfinishedRegistryExecutions) {
  CreateExecution("Run-1", "Registry", "Calculator", "Run");
  CreateExecution("Run-2", "Registry", "Printer", "Run");
  CreateExecution("Run-3", "Registry", "Calculator", "Run");
  CreateExecution("Add-1", "Calculator", "Run-1", "Add");
  ASSERT_TRUE(store().executions().CompleteExecution("Run-3", {}, std::nullopt).ok());
  grpc2::IntrospectionListInstancesRequest request;
  grpc2::IntrospectionListInstancesResponse response;
  ASSERT_TRUE(Introspection()->ListInstances(Context().get(), request, &response).ok());
  ASSERT_EQ(response.instances_size(), 2);
  EXPECT_EQ(response.instances(0).instance(), "Run-1");
  EXPECT_EQ(response.instances(0).agent(), "Calculator");
  EXPECT_EQ(response.instances(1).instance(), "Run-2");
  EXPECT_EQ(response.instances(1).agent(), "Printer");
  if (GetParam() == "redis" || GetParam() == "redis_cluster") {
    // An instance's executions and state share the slot of its hash tag.
    ASSERT_EQ(response.placements_size(), 2);
    EXPECT_EQ(response.placements(0).instance(), "Run-1");
    EXPECT_EQ(response.placements(0).slot(),
              static_cast<uint32_t>(storage::redis::KeySlot(storage::redis::InstanceTag("Run-1"))));
    EXPECT_EQ(
        response.placements(0).slot(),
        static_cast<uint32_t>(storage::redis::KeySlot(storage::redis::DictionaryTag("Run-1-"))));
    EXPECT_NE(response.placements(0).node(), "");
    EXPECT_EQ(response.placements(1).instance(), "Run-2");
  } else {
    EXPECT_EQ(response.placements_size(), 0);
  }
  request.set_agent("Printer");
  response.Clear();
  ASSERT_TRUE(Introspection()->ListInstances(Context().get(), request, &response).ok());
  ASSERT_EQ(response.instances_size(), 1);
  EXPECT_EQ(response.instances(0).instance(), "Run-2");
}

TEST_P(IntrospectionTest, ListStreamsWithSizesAndListeners) {
  storage::StreamRecord packed;
  packed.stream = "s-packed";
  packed.ephemeral = false;
  packed.stride = 1;
  ASSERT_TRUE(store().streams().CreateStream(packed).ok());
  storage::StreamRecord plain;
  plain.stream = "s-plain";
  ASSERT_TRUE(store().streams().CreateStream(plain).ok());
  storage::StreamRecord other;
  other.stream = "t-other";
  ASSERT_TRUE(store().streams().CreateStream(other).ok());
  std::vector<storage::ItemToWrite> items;
  for (int64_t key : {4, 5, 6}) items.push_back({key, SerializeAny(Int64Value(key))});
  ASSERT_TRUE(store().streams().WriteItems("s-packed", std::move(items)).ok());
  ASSERT_TRUE(store().streams().MoveListener("s-packed", "reader", 4).ok());
  ASSERT_TRUE(store().streams().CompleteStream("s-plain", std::string("boom")).ok());

  grpc2::IntrospectionListStreamsRequest request;
  request.set_stream_prefix("s-");
  grpc2::IntrospectionListStreamsResponse response;
  ASSERT_TRUE(Introspection()->ListStreams(Context().get(), request, &response).ok());
  ASSERT_EQ(response.streams_size(), 2);
  const auto& s = response.streams(0);
  EXPECT_EQ(s.stream(), "s-packed");
  EXPECT_FALSE(s.ephemeral());
  EXPECT_EQ(s.stride(), 1);
  EXPECT_EQ(s.item_count(), 3u);
  EXPECT_TRUE(s.has_items());
  EXPECT_EQ(s.first_key(), 4);
  EXPECT_EQ(s.last_key(), 6);
  EXPECT_FALSE(s.completed());
  ASSERT_EQ(s.listeners_size(), 1);
  EXPECT_EQ(s.listeners(0).name(), "reader");
  EXPECT_EQ(s.listeners(0).position(), 4);
  EXPECT_FALSE(s.listeners(0).transient());
  const auto& p = response.streams(1);
  EXPECT_EQ(p.stream(), "s-plain");
  EXPECT_TRUE(p.ephemeral());
  EXPECT_FALSE(p.has_items());
  EXPECT_TRUE(p.completed());
  EXPECT_EQ(p.error(), "boom");

  request.clear_stream_prefix();
  request.set_limit(1);
  response.Clear();
  ASSERT_TRUE(Introspection()->ListStreams(Context().get(), request, &response).ok());
  ASSERT_EQ(response.streams_size(), 1);
  EXPECT_EQ(response.streams(0).stream(), "s-packed");
}

TEST_P(IntrospectionTest, ListReservationsOfAWorkgroup) {
  CreateExecution("e-1", "a", "", "D");
  CreateExecution("e-2", "a", "", "D");
  ASSERT_TRUE(store().executions().TryReserve("e-2", "w", "holder-1").value_or(false));
  ASSERT_TRUE(store().executions().TryReserve("e-1", "w", "holder-2").value_or(false));
  ASSERT_TRUE(store().executions().TryReserve("e-1", "other", "holder-3").value_or(false));
  grpc2::IntrospectionListReservationsRequest request;
  request.set_workgroup("w");
  grpc2::IntrospectionListReservationsResponse response;
  ASSERT_TRUE(Introspection()->ListReservations(Context().get(), request, &response).ok());
  ASSERT_EQ(response.reservations_size(), 2);
  EXPECT_EQ(response.reservations(0).execution().execution(), "e-1");
  EXPECT_EQ(response.reservations(0).workgroup(), "w");
  EXPECT_EQ(response.reservations(0).holder(), "holder-2");
  EXPECT_EQ(response.reservations(1).execution().execution(), "e-2");
  EXPECT_EQ(response.reservations(1).holder(), "holder-1");
}

// The agents that open listen calls serve, counted per kind of call, until the calls end.
TEST_P(IntrospectionTest, ListAgentListenersCountsOpenListenCallsUntilTheyEnd) {
  auto listeners = [&](const std::string& agent) {
    grpc2::IntrospectionListAgentListenersRequest request;
    request.set_agent(agent);
    grpc2::IntrospectionListAgentListenersResponse response;
    grpc::Status status = Introspection()->ListAgentListeners(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> rows;
    for (const auto& a : response.agents()) {
      rows.push_back(a.agent() + " " + std::to_string(a.listen_calls()) + " " +
                     std::to_string(a.reservation_calls()));
    }
    return rows;
  };
  EXPECT_EQ(listeners("Counted"), Ids{});
  auto stub = Executions();
  auto listen = std::make_unique<ListenCall>(*stub, "Counted");
  EXPECT_EQ(listen->ReadInitial(), Ids{});  // Live: it is counted from before its scan.
  auto reserve = std::make_unique<ReserveCall>(*stub, "Counted", 1);
  reserve->ExpectStart();
  auto other = std::make_unique<ReserveCall>(*stub, "Other", 1);
  other->ExpectStart();
  EXPECT_EQ(listeners("Counted"), (Ids{"Counted 1 1"}));
  EXPECT_EQ(listeners(""), (Ids{"Counted 1 1", "Other 0 1"}));
  listen.reset();
  reserve.reset();
  // The Fabric sees the cancellations shortly after the client.
  for (int i = 0; i < 1000 && !listeners("Counted").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(listeners("Counted"), Ids{});
  EXPECT_EQ(listeners(""), (Ids{"Other 0 1"}));
}

TEST_P(IntrospectionTest, ListStatesShowsDictionariesThenListsWithCounts) {
  auto& states = store().states();
  ASSERT_TRUE(states.CreateDictionary("run-1-").ok());
  storage::DictionaryOperation set;
  set.set_new_value = true;
  for (const char* key : {"a", "b"}) {
    set.key = SerializeAny(StringValue(key));
    set.new_value = SerializeAny(Int64Value(1));
    ASSERT_TRUE(states.OperateDictionary("run-0-", set).ok());  // Written: exists.
  }
  storage::ListOperation push;
  push.insert_values = {SerializeAny(Int64Value(1)), SerializeAny(Int64Value(2)),
                        SerializeAny(Int64Value(3))};
  ASSERT_TRUE(states.OperateList("run-0-children", push).ok());
  ASSERT_TRUE(states.CreateList("run-0-").ok());
  ASSERT_TRUE(states.CreateDictionary("other").ok());
  // Reads, and refused writes, do not make a dictionary exist.
  storage::DictionaryOperation get;
  get.key = SerializeAny(StringValue("a"));
  get.get_existing_value = true;
  ASSERT_TRUE(states.OperateDictionary("run-9-", get).ok());
  storage::DictionaryOperation failed_compare = set;
  failed_compare.compare_existing_value = true;
  failed_compare.expected_existing_value = SerializeAny(Int64Value(7));
  ASSERT_TRUE(states.OperateDictionary("run-8-", failed_compare).ok());

  auto list = [&](const std::string& prefix, uint32_t limit) {
    grpc2::IntrospectionListStatesRequest request;
    request.set_name_prefix(prefix);
    request.set_limit(limit);
    grpc2::IntrospectionListStatesResponse response;
    grpc::Status status = Introspection()->ListStates(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> out;
    for (const auto& state : response.states()) {
      out.push_back((state.kind() == grpc2::StateSummary::LIST ? "list " : "dictionary ") +
                    state.name() + " " + std::to_string(state.count()));
    }
    return out;
  };
  EXPECT_EQ(list("run-", 0), (Ids{"dictionary run-0- 2", "dictionary run-1- 0", "list run-0- 0",
                                  "list run-0-children 3"}));
  EXPECT_EQ(list("", 0), (Ids{"dictionary other 0", "dictionary run-0- 2", "dictionary run-1- 0",
                              "list run-0- 0", "list run-0-children 3"}));
  EXPECT_EQ(list("run-", 3), (Ids{"dictionary run-0- 2", "dictionary run-1- 0", "list run-0- 0"}));
  // Deleted ones go; emptied ones (keep_cache) stay, empty.
  ASSERT_TRUE(states.DeleteDictionary("run-1-", /*keep_cache=*/false).ok());
  ASSERT_TRUE(states.DeleteList("run-0-children", /*keep_cache=*/true).ok());
  EXPECT_EQ(list("run-", 0),
            (Ids{"dictionary run-0- 2", "list run-0- 0", "list run-0-children 0"}));

  grpc2::IntrospectionListStatesRequest too_many;
  too_many.set_limit(100001);
  grpc2::IntrospectionListStatesResponse response;
  EXPECT_EQ(Introspection()->ListStates(Context().get(), too_many, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc2::IntrospectionListStatesRequest long_prefix;
  long_prefix.set_name_prefix(std::string(2000, 'p'));
  grpc::Status refused = Introspection()->ListStates(Context().get(), long_prefix, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("name_prefix"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, IntrospectionTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
