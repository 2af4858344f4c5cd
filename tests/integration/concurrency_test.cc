// SPDX-License-Identifier: MIT
// Many writers, listeners and reserving workers at once: no item is lost, duplicated or
// reordered, and every execution is handled once (or, for a worker that disconnects holding
// executions, at most once more per credit it held).
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

class ConcurrencyTest : public FabricTest {};

constexpr int kWriters = 4;
constexpr int kListeners = 4;
constexpr int kItemsPerWriter = 500;

TEST_P(ConcurrencyTest, WritersAndListenersSeeEveryItemOnceInOrder) {
  auto streams = Streams();
  google::protobuf::Empty empty;
  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("shared");
  create.set_ephemeral(false);
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());

  // Listeners first, each replaying from the first key; each gets every item once.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> received(kListeners);
  std::vector<std::thread> listeners;
  std::atomic<int> live{0};
  for (int l = 0; l < kListeners; ++l) {
    listeners.emplace_back([&, l] {
      auto stub = grpc2::FabricStreams::NewStub(fabric().NewChannel());
      auto context = Context(std::chrono::seconds(60));
      grpc2::StreamsListenItemsRequest listen;
      listen.mutable_stream()->set_stream("shared");
      listen.mutable_stream()->set_start_key(0);
      auto reader = stub->ListenItems(context.get(), listen);
      live.fetch_add(1);
      grpc2::StreamsListenItemsResponse item;
      while (reader->Read(&item)) received[l].emplace_back(item.key(), IntOf(item.value()));
      EXPECT_TRUE(reader->Finish().ok()) << "listener " << l;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return live.load() == kListeners; }));

  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto stub = grpc2::FabricStreams::NewStub(fabric().NewChannel());
      for (int i = 0; i < kItemsPerWriter; ++i) {
        grpc2::StreamsWriteItemRequest write;
        write.mutable_stream()->set_stream("shared");
        write.set_auto_key(true);
        *write.mutable_value() = Int64Value(int64_t{w} * 1000000 + i);
        google::protobuf::Empty done;
        ASSERT_TRUE(stub->WriteItem(Context().get(), write, &done).ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  grpc2::StreamsCompleteRequest complete;
  complete.mutable_stream()->set_stream("shared");
  ASSERT_TRUE(streams->Complete(Context().get(), complete, &empty).ok());
  for (auto& t : listeners) t.join();

  for (int l = 0; l < kListeners; ++l) {
    ASSERT_EQ(received[l].size(), size_t{kWriters * kItemsPerWriter}) << "listener " << l;
    std::map<int64_t, int64_t> next_of_writer;
    for (size_t i = 0; i < received[l].size(); ++i) {
      if (i > 0) {
        ASSERT_LT(received[l][i - 1].first, received[l][i].first) << "keys increase";
      }
      int64_t value = received[l][i].second;
      int64_t writer = value / 1000000;
      EXPECT_EQ(value % 1000000, next_of_writer[writer]++) << "a writer's items keep their order";
    }
  }
}

// A worker: reserves executions of agent "Worker" with `credits`, completes each with its ID.
class Worker {
 public:
  Worker(std::shared_ptr<grpc::Channel> channel, int id, int credits, int stop_after = -1)
      : channel_(std::move(channel)), id_(id), credits_(credits), stop_after_(stop_after) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Worker() {
    context_.TryCancel();
    thread_.join();
  }
  std::vector<std::string> handled() {
    std::lock_guard<std::mutex> lock(mu_);
    return handled_;
  }
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  bool started() const { return started_.load(); }

 private:
  void Run() {
    auto stub = grpc2::FabricExecutions::NewStub(channel_);
    auto stream = stub->ListenAndReserve(&context_);
    grpc2::ExecutionsListenAndReserveRequest first;
    first.set_reserve_next(credits_);
    first.mutable_filter()->mutable_instance_filter()->set_agent("Worker");
    first.set_workgroup("pool");
    if (!stream->Write(first)) return;
    grpc2::ExecutionsListenResponse execution;
    int count = 0;
    while (stream->Read(&execution)) {
      if (execution.start_of_stream()) {
        started_ = true;
        continue;
      }
      if (execution.deleted()) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back(execution.execution().execution());
      }
      if (stop_after_ >= 0 && ++count > stop_after_) {
        // Disconnect while holding this execution (and whatever else was delivered).
        context_.TryCancel();
        break;
      }
      grpc2::ExecutionsCompleteRequest complete;
      complete.mutable_execution()->set_execution(execution.execution().execution());
      *complete.add_results() = Int64Value(id_);
      google::protobuf::Empty empty;
      grpc::Status status = stub->Complete(Context().get(), complete, &empty);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (status.ok()) handled_.push_back(execution.execution().execution());
      }
      grpc2::ExecutionsListenAndReserveRequest more;
      more.set_reserve_next(1);
      if (!stream->Write(more)) break;
    }
    stream->Finish();
  }

  std::shared_ptr<grpc::Channel> channel_;
  int id_;
  int credits_;
  int stop_after_;
  grpc::ClientContext context_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> handled_;
  std::vector<std::string> received_;
  std::atomic<bool> started_{false};
};

TEST_P(ConcurrencyTest, ReservingWorkersHandleEveryExecutionOnce) {
  constexpr int kExecutions = 400;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int w = 0; w < 4; ++w) {
    workers.push_back(std::make_unique<Worker>(fabric().NewChannel(), w, 4));
  }
  ASSERT_TRUE(WaitFor([&] {
    for (auto& w : workers) {
      if (!w->started()) return false;
    }
    return true;
  }));

  // Two callers create executions and wait for each result.
  std::vector<std::thread> callers;
  std::mutex mu;
  std::map<std::string, int64_t> handled_by;
  for (int c = 0; c < 2; ++c) {
    callers.emplace_back([&, c] {
      auto stub = grpc2::FabricExecutions::NewStub(fabric().NewChannel());
      for (int i = c; i < kExecutions; i += 2) {
        std::string id = "job-" + std::to_string(i);
        grpc2::ExecutionsCreateRequest create;
        create.mutable_execution()->set_execution(id);
        create.mutable_instance()->set_agent("Worker");
        create.set_delegate("Do");
        google::protobuf::Empty empty;
        ASSERT_TRUE(stub->Create(Context().get(), create, &empty).ok());
      }
      for (int i = c; i < kExecutions; i += 2) {
        std::string id = "job-" + std::to_string(i);
        grpc2::ExecutionsGetResultRequest get;
        get.mutable_execution()->set_execution(id);
        grpc2::ExecutionsGetResultResponse result;
        ASSERT_TRUE(stub->GetResult(Context(std::chrono::seconds(60)).get(), get, &result).ok());
        ASSERT_EQ(result.results_size(), 1) << id;
        std::lock_guard<std::mutex> lock(mu);
        handled_by[id] = IntOf(result.results(0));
      }
    });
  }
  for (auto& t : callers) t.join();
  ASSERT_EQ(handled_by.size(), size_t{kExecutions});

  // A worker notes an execution after its Complete returns, possibly after GetResult saw it.
  ASSERT_TRUE(WaitFor([&] {
    size_t total = 0;
    for (auto& w : workers) total += w->handled().size();
    return total >= size_t{kExecutions};
  }));
  std::multiset<std::string> all;
  std::set<int64_t> busy_workers;
  for (auto& w : workers) {
    auto handled = w->handled();
    all.insert(handled.begin(), handled.end());
  }
  for (const auto& [id, worker] : handled_by) {
    EXPECT_EQ(all.count(id), 1u) << id << " handled exactly once";
    busy_workers.insert(worker);
  }
  EXPECT_EQ(busy_workers.size(), 4u) << "every worker got work";
}

TEST_P(ConcurrencyTest, DisconnectedWorkersExecutionsGoToAnother) {
  constexpr int kExecutions = 60;
  constexpr int kCredits = 3;
  // The quitter takes executions, then disconnects after its second one while holding the rest.
  auto quitter = std::make_unique<Worker>(fabric().NewChannel(), 0, kCredits, /*stop_after=*/1);
  ASSERT_TRUE(WaitFor([&] { return quitter->started(); }));

  auto executions = Executions();
  for (int i = 0; i < kExecutions; ++i) {
    grpc2::ExecutionsCreateRequest create;
    create.mutable_execution()->set_execution("task-" + std::to_string(i));
    create.mutable_instance()->set_agent("Worker");
    create.set_delegate("Do");
    google::protobuf::Empty empty;
    ASSERT_TRUE(executions->Create(Context().get(), create, &empty).ok());
  }
  // The quitter received a few and quit; a second worker must get every unfinished one.
  ASSERT_TRUE(WaitFor([&] { return quitter->received().size() >= 2; }));
  auto survivor = std::make_unique<Worker>(fabric().NewChannel(), 1, kCredits);
  for (int i = 0; i < kExecutions; ++i) {
    grpc2::ExecutionsGetResultRequest get;
    get.mutable_execution()->set_execution("task-" + std::to_string(i));
    grpc2::ExecutionsGetResultResponse result;
    ASSERT_TRUE(executions->GetResult(Context(std::chrono::seconds(30)).get(), get, &result).ok());
    EXPECT_FALSE(result.deleted());
    EXPECT_EQ(result.results_size(), 1) << "task-" << i << " was not lost";
  }
  // The quitter completed one execution; the survivor completed every other one, exactly once.
  // (A worker notes an execution after its Complete returns, which may be after the caller's
  // GetResult has seen the completion.)
  ASSERT_TRUE(WaitFor([&] { return survivor->handled().size() >= size_t{kExecutions - 1}; }));
  std::multiset<std::string> by_survivor;
  for (const auto& id : survivor->handled()) by_survivor.insert(id);
  auto quitter_handled = quitter->handled();
  EXPECT_EQ(quitter_handled.size(), 1u);
  EXPECT_EQ(by_survivor.size(), size_t{kExecutions - 1});
  for (const auto& id : by_survivor) EXPECT_EQ(by_survivor.count(id), 1u) << id;
  EXPECT_EQ(by_survivor.count(quitter_handled[0]), 0u) << "finished executions are not re-sent";
}

INSTANTIATE_TEST_SUITE_P(Backends, ConcurrencyTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
