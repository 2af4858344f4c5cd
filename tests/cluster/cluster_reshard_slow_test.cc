// SPDX-License-Identifier: MIT
// `redis-cli --cluster reshard` moves every slot of one master to another while three Fabrics
// serve executions (creators, workers, results), streams (writers and live listeners on other
// processes) and compare-and-set increments: no client sees an error and everything arrives.
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include <gtest/gtest.h>

#include "tests/cluster/cluster_support.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

constexpr std::chrono::seconds kCallTimeout(30);
constexpr int kStreams = 3;

// A stream written through Fabric `writer` and listened to live through another one.
struct StreamRun {
  std::string name;
  std::atomic<int> written{0};
  std::vector<int64_t> acked;  // written by the writer thread only, read after it joined
  grpc::Status writer_error;
  std::unique_ptr<grpc::ClientContext> listen_context;
  std::vector<int64_t> received;  // the listener thread's
  grpc::Status listen_status;
};

TEST(ClusterReshardTest, CallsAndStreamsGoOnWhileEverySlotOfAMasterMoves) {
  FabricsOnCluster setup({.masters = 3, .replicas_per_master = 0, .fabrics = 3});
  ASSERT_TRUE(setup.Start());
  RedisCluster& cluster = setup.cluster();

  Ledger ledger;
  std::vector<std::unique_ptr<Worker>> workers;
  ASSERT_TRUE(StartWorkers(setup, "Doubler", 2, 4, &ledger, &workers));

  std::atomic<bool> stop{false};

  // Streams: written through Fabric i, listened to through Fabric i + 1.
  std::vector<std::unique_ptr<StreamRun>> runs;
  // On an early exit the listeners are cancelled (normally their streams complete).
  ThreadGroup listeners([&] {
    for (auto& run : runs) {
      if (run->listen_context) run->listen_context->TryCancel();
    }
  });
  for (int i = 0; i < kStreams; ++i) {
    runs.push_back(std::make_unique<StreamRun>());
    StreamRun& run = *runs.back();
    run.name = absl::StrCat("moving-", i);
    auto stub = grpc2::FabricStreams::NewStub(setup.channel(i));
    grpc2::StreamsCreateRequest create;
    create.mutable_stream()->set_stream(run.name);
    google::protobuf::Empty empty;
    grpc::Status created = stub->Create(DeadlineContext(kCallTimeout).get(), create, &empty);
    ASSERT_TRUE(created.ok()) << Describe(created);
    run.listen_context = DeadlineContext(std::chrono::minutes(8));
    listeners.Add([&setup, &run, i] {
      auto listen_stub = grpc2::FabricStreams::NewStub(setup.channel((i + 1) % 3));
      grpc2::StreamsListenItemsRequest request;
      request.mutable_stream()->set_stream(run.name);
      auto reader = listen_stub->ListenItems(run.listen_context.get(), request);
      grpc2::StreamsListenItemsResponse item;
      while (reader->Read(&item)) run.received.push_back(item.key());
      run.listen_status = reader->Finish();
    });
    grpc2::StreamsWaitForListenerRequest wait;
    wait.mutable_stream()->set_stream(run.name);
    grpc::Status listened =
        stub->WaitForListener(DeadlineContext(kCallTimeout).get(), wait, &empty);
    ASSERT_TRUE(listened.ok()) << Describe(listened);
  }
  ThreadGroup load([&] { stop.store(true); });
  for (int i = 0; i < kStreams; ++i) {
    load.Add([&setup, &stop, run = runs[i].get(), i] {
      auto stub = grpc2::FabricStreams::NewStub(setup.channel(i));
      google::protobuf::Empty empty;
      for (int64_t key = 1; !stop.load(); ++key) {
        grpc2::StreamsWriteItemRequest write;
        write.mutable_stream()->set_stream(run->name);
        write.set_key(key);
        *write.mutable_value() = Int64Value(key);
        grpc::Status status = stub->WriteItem(DeadlineContext(kCallTimeout).get(), write, &empty);
        if (!status.ok()) {
          run->writer_error = status;
          return;
        }
        run->acked.push_back(key);
        run->written.fetch_add(1);
      }
      grpc2::StreamsCompleteRequest complete;
      complete.mutable_stream()->set_stream(run->name);
      run->writer_error = stub->Complete(DeadlineContext(kCallTimeout).get(), complete, &empty);
    });
  }

  // Executions: a creator per Fabric, numbers from one counter.
  std::atomic<int> next{0};
  for (int process = 0; process < 3; ++process) {
    load.Add([&, process] {
      auto stub = grpc2::FabricExecutions::NewStub(setup.channel(process));
      while (!stop.load()) {
        int n = next.fetch_add(1);
        grpc::Status status = CreateNumbered(*stub, "Doubler", n);
        if (!status.ok()) {
          ledger.Error("Create " + ExecutionId(n), status);
          return;
        }
        ledger.Created(ExecutionId(n));
      }
    });
  }

  // Compare-and-set increments of one key from every Fabric.
  std::atomic<int> increments{0};
  {
    auto dictionary = grpc2::FabricStatesDictionary::NewStub(setup.channel(0));
    grpc::Status set = DictionarySet(*dictionary, "counters", "hits", 0);
    ASSERT_TRUE(set.ok()) << Describe(set);
  }
  for (int process = 0; process < 3; ++process) {
    load.Add([&, process] {
      auto dictionary = grpc2::FabricStatesDictionary::NewStub(setup.channel(process));
      int64_t current = 0;
      while (!stop.load()) {
        grpc2::StatesDictionaryOperateRequest request;
        request.mutable_dictionary()->set_dictionary("counters");
        *request.mutable_key() = StringValue("hits");
        request.set_get_existing_value(true);
        request.set_compare_existing_value(true);
        *request.mutable_expected_existing_value() = Int64Value(current);
        request.set_set_new_value(true);
        *request.mutable_new_value() = Int64Value(current + 1);
        grpc2::StatesDictionaryOperateResponse response;
        grpc::Status status =
            dictionary->Operate(DeadlineContext(kCallTimeout).get(), request, &response);
        if (!status.ok()) {
          ledger.Error("Operate counters", status);
          return;
        }
        if (response.operation_successful()) {
          increments.fetch_add(1);
          ++current;
        } else {
          current = IntOf(response.previous_value());
        }
      }
    });
  }

  auto streams_written = [&] {
    int total = 0;
    for (auto& run : runs) total += run->written.load();
    return total;
  };
  ASSERT_TRUE(
      WaitFor([&] { return ledger.CreatedAndCompleted() >= 100 && streams_written() >= 100; },
              std::chrono::seconds(60)));

  // Move every slot of one master to another, with its keys, while the load runs.
  const std::vector<int> masters = MasterPorts(cluster);
  ASSERT_EQ(masters.size(), 3u);
  const int source = masters[0];
  const int target = masters[1];
  const int slots = SlotsServedBy(cluster, source);
  ASSERT_GT(slots, 0);
  const size_t completed_before = ledger.CreatedAndCompleted();
  const int written_before = streams_written();
  auto moved = RedisCli({"--cluster", "reshard", absl::StrCat("127.0.0.1:", source),
                         "--cluster-from", NodeId(source), "--cluster-to", NodeId(target),
                         "--cluster-slots", std::to_string(slots), "--cluster-yes"});
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(SlotsServedBy(cluster, source), 0);
  // The load went on during the move, and goes on after it.
  EXPECT_GT(ledger.CreatedAndCompleted(), completed_before);
  EXPECT_GT(streams_written(), written_before);
  const size_t completed_after = ledger.CreatedAndCompleted();
  const int written_after = streams_written();
  ASSERT_TRUE(WaitFor(
      [&] {
        return ledger.CreatedAndCompleted() >= completed_after + 100 &&
               streams_written() >= written_after + 100;
      },
      std::chrono::seconds(60)))
      << setup.Logs();

  stop.store(true);
  load.JoinAll();
  for (auto& run : runs) {
    // A stream left open would keep its listener waiting.
    if (!run->writer_error.ok()) run->listen_context->TryCancel();
  }
  listeners.JoinAll();
  const size_t created = ledger.CreatedCount();
  ASSERT_TRUE(
      WaitFor([&] { return ledger.CreatedAndCompleted() == created; }, std::chrono::seconds(60)))
      << ledger.CreatedAndCompleted() << " of " << created << "\n"
      << setup.Logs();
  for (auto& worker : workers) EXPECT_FALSE(worker->ended()) << Describe(worker->end_status());
  for (auto& worker : workers) worker->Stop();

  EXPECT_TRUE(ledger.Errors().empty()) << ledger.Errors().front();
  for (const auto& [id, entry] : ledger.Snapshot()) {
    EXPECT_TRUE(entry.created) << id;
    EXPECT_EQ(entry.deliveries, 1)
        << id << " delivered through Fabrics " << absl::StrJoin(entry.fabrics, ",");
    EXPECT_EQ(entry.ok_completions, 1) << id;
  }
  for (auto& run : runs) {
    EXPECT_TRUE(run->writer_error.ok()) << run->name << " " << Describe(run->writer_error);
    EXPECT_TRUE(run->listen_status.ok()) << run->name << " " << Describe(run->listen_status);
    EXPECT_EQ(run->received, run->acked) << run->name;
  }
  auto dictionary = grpc2::FabricStatesDictionary::NewStub(setup.channel(2));
  auto hits = DictionaryGet(*dictionary, "counters", "hits");
  ASSERT_TRUE(hits.ok()) << hits.status();
  EXPECT_EQ(*hits, std::optional<int64_t>(increments.load()));
  auto executions = grpc2::FabricExecutions::NewStub(setup.channel(1));
  EXPECT_TRUE(ResultsAreDoubles(*executions, CreatedIds(ledger)));
}

}  // namespace
}  // namespace perper::testing
