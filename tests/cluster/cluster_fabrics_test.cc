// SPDX-License-Identifier: MIT
// Three perper-fabric processes on one 3-master Redis Cluster behave as one Fabric: what a client
// does through one process is seen, live, by clients of the others.
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gtest/gtest.h>

#include "tests/cluster/cluster_support.h"
#include "tests/integration/executions_helpers.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

constexpr int kA = 0;
constexpr int kB = 1;
constexpr int kC = 2;

class ClusterFabricsTest : public ClusterFabricsFixture {
 protected:
  std::unique_ptr<grpc2::FabricExecutions::Stub> Executions(int i) {
    return grpc2::FabricExecutions::NewStub(setup_.channel(i));
  }
  std::unique_ptr<grpc2::FabricStreams::Stub> Streams(int i) {
    return grpc2::FabricStreams::NewStub(setup_.channel(i));
  }
  std::unique_ptr<grpc2::FabricStatesDictionary::Stub> Dictionary(int i) {
    return grpc2::FabricStatesDictionary::NewStub(setup_.channel(i));
  }
};

TEST_F(ClusterFabricsTest, ExecutionListenedForOnOneProcessIsCreatedAndAnsweredOnOthers) {
  auto a = Executions(kA);
  auto b = Executions(kB);
  // Both kinds of listener on A, live before the execution exists.
  ListenCall listen(*a, "Calculator");
  EXPECT_TRUE(listen.ReadInitial().empty());
  ReserveCall reserve(*a, "Calculator", /*credits=*/1);
  reserve.ExpectStart();

  // A result waiter on B that starts before the execution exists.
  grpc2::ExecutionsGetResultResponse early;
  grpc::Status early_status;
  ThreadGroup early_waiter;
  early_waiter.Add([&] {
    grpc2::ExecutionsGetResultRequest request;
    request.mutable_execution()->set_execution("call-1");
    request.set_wait_for_creation(true);
    early_status = b->GetResult(Context(std::chrono::seconds(20)).get(), request, &early);
  });

  grpc::Status created = CreateExecution(*b, "call-1", "Calculator", "calc-1", "Add",
                                         {Int64Value(20), Int64Value(22)});
  ASSERT_TRUE(created.ok()) << Describe(created);

  grpc2::ExecutionsListenResponse heard;
  ASSERT_TRUE(listen.Read(&heard));
  EXPECT_EQ(heard.execution().execution(), "call-1");
  EXPECT_EQ(heard.instance().agent(), "Calculator");
  EXPECT_EQ(heard.instance().instance(), "calc-1");
  EXPECT_EQ(heard.delegate(), "Add");
  ASSERT_EQ(heard.arguments_size(), 2);
  EXPECT_EQ(IntOf(heard.arguments(0)), 20);
  EXPECT_EQ(IntOf(heard.arguments(1)), 22);

  grpc2::ExecutionsListenResponse reserved;
  ASSERT_TRUE(reserve.Read(&reserved));
  EXPECT_EQ(reserved.execution().execution(), "call-1");
  EXPECT_FALSE(reserved.deleted());

  grpc::Status completed = CompleteExecution(*a, "call-1", {Int64Value(42)});
  ASSERT_TRUE(completed.ok()) << Describe(completed);
  // First completion wins, whichever process the second goes through.
  EXPECT_EQ(CompleteExecution(*b, "call-1", {Int64Value(0)}).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  early_waiter.JoinAll();
  ASSERT_TRUE(early_status.ok()) << Describe(early_status);
  EXPECT_FALSE(early.deleted());
  ASSERT_EQ(early.results_size(), 1);
  EXPECT_EQ(IntOf(early.results(0)), 42);

  grpc2::ExecutionsGetResultResponse late;
  grpc::Status late_status = GetResult(*b, "call-1", &late);
  ASSERT_TRUE(late_status.ok()) << Describe(late_status);
  ASSERT_EQ(late.results_size(), 1);
  EXPECT_EQ(IntOf(late.results(0)), 42);
  EXPECT_FALSE(late.has_error());
}

TEST_F(ClusterFabricsTest, StreamListenerOnOneProcessReceivesInOrderWhatAWriterOnAnotherWrites) {
  auto a = Streams(kA);
  auto c = Streams(kC);
  ASSERT_TRUE(CreateStream(*a, "numbers", /*ephemeral=*/false).ok());
  Listen listen(*c, ListenRequest("numbers", 0), std::chrono::seconds(60));
  // The listener on C is registered once A sees it.
  grpc::Status registered = WaitForListener(*a, "numbers");
  ASSERT_TRUE(registered.ok()) << Describe(registered);

  std::vector<int64_t> written;
  for (int64_t key = 1; key <= 300; ++key) {
    grpc::Status status = WriteItem(*a, "numbers", key * 10, Int64Value(key * 100));
    ASSERT_TRUE(status.ok()) << key << " " << Describe(status);
    written.push_back(key * 10);
  }
  // Then auto keys in batches: the Fabric picks them above the last key.
  for (int batch = 0; batch < 10; ++batch) {
    grpc2::StreamsWriteItemsRequest request;
    request.mutable_stream()->set_stream("numbers");
    for (int i = 0; i < 20; ++i) {
      auto* item = request.add_items();
      item->set_auto_key(true);
      *item->mutable_value() = Int64Value(-(batch * 20 + i));
    }
    grpc2::StreamsWriteItemsResponse response;
    grpc::Status status = a->WriteItems(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    ASSERT_EQ(response.keys_size(), 20);
    for (int64_t key : response.keys()) written.push_back(key);
  }
  ASSERT_TRUE(Complete(*a, "numbers").ok());

  std::vector<int64_t> keys;
  std::vector<int64_t> values;
  google::protobuf::Any value;
  while (auto key = listen.NextKey(&value)) {
    keys.push_back(*key);
    values.push_back(IntOf(value));
  }
  EXPECT_TRUE(listen.Finish().ok());
  EXPECT_EQ(keys, written);
  ASSERT_EQ(values.size(), 500u);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(values[i], (i + 1) * 100) << i;
  for (int i = 0; i < 200; ++i) ASSERT_EQ(values[300 + i], -i) << i;
}

TEST_F(ClusterFabricsTest, NamedListenerMovedOnOneProcessResumesOnAnotherFromItsPosition) {
  auto a = Streams(kA);
  auto b = Streams(kB);
  auto c = Streams(kC);
  ASSERT_TRUE(CreateStream(*a, "jobs", /*ephemeral=*/false).ok());
  ASSERT_TRUE(WriteKeys(*c, "jobs", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}).ok());
  {
    Listen first(*a, ListenRequest("jobs", 0, "reader"));
    EXPECT_EQ(first.NextKeys(3), (std::vector<int64_t>{1, 2, 3}));
  }
  grpc::Status moved = MoveListener(*a, "jobs", "reader", 4);
  ASSERT_TRUE(moved.ok()) << Describe(moved);

  // On B the listener resumes at its position (the item at the position comes again), and an
  // acknowledgement there moves it.
  {
    ListenAndMove acking(*b, ListenRequest("jobs", 0, "reader"));
    EXPECT_EQ(acking.NextKeys(3), (std::vector<int64_t>{4, 5, 6}));
    EXPECT_TRUE(acking.Ack(6));
    // Acks are asynchronous: wait until a listen on C starts at 6.
    EXPECT_TRUE(WaitFor([&] {
      Listen probe(*c, ListenRequest("jobs", 0, "reader"));
      return probe.NextKey() == std::optional<int64_t>(6);
    }));
  }
  // On C it resumes from there and follows live what A writes next, to the completion.
  Listen resumed(*c, ListenRequest("jobs", 0, "reader"));
  EXPECT_EQ(resumed.NextKeys(5), (std::vector<int64_t>{6, 7, 8, 9, 10}));
  ASSERT_TRUE(WriteKeys(*a, "jobs", {11, 12}).ok());
  ASSERT_TRUE(Complete(*a, "jobs").ok());
  EXPECT_EQ(resumed.NextKeys(2), (std::vector<int64_t>{11, 12}));
  EXPECT_TRUE(resumed.Finish().ok());
  EXPECT_TRUE(resumed.extra_keys().empty());
}

// Items of an ephemeral stream go once the listener, on another process than the writer,
// has passed them: stored items stay bounded while it keeps up, whoever looks.
TEST_F(ClusterFabricsTest, EphemeralItemsAckedOnOneProcessAreCollectedOnEvery) {
  auto a = Streams(kA);
  auto b = Streams(kB);
  auto introspection = grpc2::FabricIntrospection::NewStub(setup_.channel(kC));
  ASSERT_TRUE(CreateStream(*a, "events", /*ephemeral=*/true).ok());
  auto stored = [&]() -> int64_t {
    grpc2::IntrospectionListStreamsRequest request;
    request.set_stream_prefix("events");
    grpc2::IntrospectionListStreamsResponse response;
    grpc::Status status = introspection->ListStreams(Context().get(), request, &response);
    if (!status.ok() || response.streams_size() != 1) return -1;
    return static_cast<int64_t>(response.streams(0).item_count());
  };
  ListenAndMove acking(*b, ListenRequest("events", 0, "acker"), std::chrono::seconds(60));
  grpc::Status registered = WaitForListener(*a, "events");
  ASSERT_TRUE(registered.ok()) << Describe(registered);

  constexpr int kBatches = 20;
  constexpr int kBatch = 100;
  for (int batch = 0; batch < kBatches; ++batch) {
    std::vector<int64_t> keys;
    for (int i = 1; i <= kBatch; ++i) keys.push_back(batch * kBatch + i);
    ASSERT_TRUE(WriteKeys(*a, "events", keys).ok());
    ASSERT_EQ(acking.NextKeys(kBatch), keys);
    ASSERT_TRUE(acking.Ack(keys.back()));
    // Only the item at the listener's position stays.
    int64_t now = -1;
    EXPECT_TRUE(WaitFor([&] { return (now = stored()) == 1; })) << "batch " << batch << ": " << now;
  }
}

TEST_F(ClusterFabricsTest, CompareAndSetIncrementsFromThreeProcessesAllCount) {
  constexpr int kIncrementsPerProcess = 1000;
  {
    auto dictionary = Dictionary(kA);
    grpc::Status set = DictionarySet(*dictionary, "counters", "hits", 0);
    ASSERT_TRUE(set.ok()) << Describe(set);
  }
  std::atomic<int> successes{0};
  std::atomic<int> retries{0};
  std::vector<std::string> errors(3);
  ThreadGroup clients;
  for (int process = 0; process < 3; ++process) {
    clients.Add([&, process] {
      auto dictionary = Dictionary(process);
      std::optional<int64_t> current;
      for (int done = 0; done < kIncrementsPerProcess;) {
        grpc2::StatesDictionaryOperateRequest request;
        request.mutable_dictionary()->set_dictionary("counters");
        *request.mutable_key() = StringValue("hits");
        request.set_get_existing_value(true);
        if (current.has_value()) {
          request.set_compare_existing_value(true);
          *request.mutable_expected_existing_value() = Int64Value(*current);
          request.set_set_new_value(true);
          *request.mutable_new_value() = Int64Value(*current + 1);
        }
        grpc2::StatesDictionaryOperateResponse response;
        grpc::Status status = dictionary->Operate(Context().get(), request, &response);
        if (!status.ok()) {
          errors[process] = Describe(status);
          return;
        }
        if (current.has_value() && response.operation_successful()) {
          ++done;
          successes.fetch_add(1);
          current = *current + 1;
          continue;
        }
        if (current.has_value()) retries.fetch_add(1);
        if (!response.has_previous_value()) {
          errors[process] = "the counter disappeared";
          return;
        }
        current = IntOf(response.previous_value());
      }
    });
  }
  clients.JoinAll();
  for (int process = 0; process < 3; ++process) EXPECT_EQ(errors[process], "") << process;
  EXPECT_EQ(successes.load(), 3 * kIncrementsPerProcess);
  for (int process = 0; process < 3; ++process) {
    auto dictionary = Dictionary(process);
    auto value = DictionaryGet(*dictionary, "counters", "hits");
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(*value, std::optional<int64_t>(3 * kIncrementsPerProcess)) << process;
  }
  // The clients raced (otherwise this test proves little); informational.
  RecordProperty("cas_retries", retries.load());
}

TEST_F(ClusterFabricsTest, ExecutionsOverWorkersOnThreeProcessesAreEachHandledOnce) {
  constexpr int kExecutions = 1000;
  Ledger ledger;
  // Half are created before any worker listens, through A only: then the workers of all three
  // processes find the same backlog at once and race for each execution. The other half are
  // created through every process while the workers run.
  auto create = [&](int process, int from, int to, int step) {
    auto stub = Executions(process);
    for (int n = from; n < to; n += step) {
      grpc::Status status = CreateNumbered(*stub, "Doubler", n);
      if (status.ok()) {
        ledger.Created(ExecutionId(n));
      } else {
        ledger.Error("Create " + ExecutionId(n), status);
      }
    }
  };
  create(kA, 0, kExecutions / 2, 1);
  std::vector<std::unique_ptr<Worker>> workers;
  ASSERT_TRUE(StartWorkers(setup_, "Doubler", 2, 4, &ledger, &workers));
  ThreadGroup creators;
  for (int process = 0; process < 3; ++process) {
    creators.Add([&, process] { create(process, kExecutions / 2 + process, kExecutions, 3); });
  }
  creators.JoinAll();
  ASSERT_EQ(ledger.CreatedCount(), static_cast<size_t>(kExecutions));
  ASSERT_TRUE(WaitFor([&] { return ledger.CreatedAndCompleted() == kExecutions; },
                      std::chrono::seconds(60)))
      << ledger.CreatedAndCompleted() << " of " << kExecutions << " completed";
  for (auto& worker : workers) worker->Stop();

  EXPECT_TRUE(ledger.Errors().empty()) << ledger.Errors().front();
  std::map<int, int> per_process;
  for (const auto& [id, entry] : ledger.Snapshot()) {
    EXPECT_EQ(entry.deliveries, 1) << id;
    EXPECT_EQ(entry.ok_completions, 1) << id;
    EXPECT_EQ(entry.finished_answers, 0) << id;
    for (int fabric : entry.fabrics) ++per_process[fabric];
  }
  // Every process's workers took part.
  for (int process = 0; process < 3; ++process) {
    EXPECT_GT(per_process[process], 0) << process;
    RecordProperty(absl::StrCat("handled_on_", process), per_process[process]);
  }
  // The results are there, read through any process.
  const std::vector<std::string> ids = CreatedIds(ledger);
  for (int process = 0; process < 3; ++process) {
    auto stub = Executions(process);
    EXPECT_TRUE(ResultsAreDoubles(*stub, ids)) << process;
  }
}

}  // namespace
}  // namespace perper::testing
