// SPDX-License-Identifier: MIT
// What the Fabric's fast paths promise, over real gRPC: dispatching from a backlog reads each
// waiting execution once (not once per credit), a durable write waiting in the store holds no
// gRPC thread (other calls are answered meanwhile, and many writes wait together), and the
// write pool runs its tasks concurrently and all of them before it goes.
#include <atomic>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

#include "perper/fabric/write_pool.h"
#include "tests/integration/executions_helpers.h"
#include "tests/support/forwarding_executions.h"
#include "tests/support/wrapped_store_fabric.h"

namespace perper::testing {
namespace {

// An ExecutionStore that forwards to another, counting reads and able to hold creations of
// IDs starting with "slow-" until released (standing in for a write waiting for its fsync).
class InstrumentedExecutions final : public ForwardingExecutions {
 public:
  using ForwardingExecutions::ForwardingExecutions;

  std::atomic<int64_t> reads{0};
  std::atomic<int> slow_entered{0};

  void ReleaseSlow() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

  absl::StatusOr<bool> CreateExecution(storage::ExecutionRecord record) override {
    if (record.execution.rfind("slow-", 0) == 0) {
      ++slow_entered;
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&released_));
    }
    return inner_.CreateExecution(std::move(record));
  }
  absl::StatusOr<storage::ExecutionRecord> GetExecution(std::string_view execution) override {
    ++reads;
    return inner_.GetExecution(execution);
  }
  absl::StatusOr<bool> ReadExecution(
      std::string_view execution,
      absl::FunctionRef<void(const storage::ExecutionRecord&)> visit) override {
    ++reads;
    return inner_.ReadExecution(execution, visit);
  }

 private:
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// A Fabric in this process on an instrumented store of the given backend.
class InstrumentedFabric {
 public:
  explicit InstrumentedFabric(const std::string& kind)
      : fabric_(kind, [this](WrappedStore& store) {
          executions_ = std::make_unique<InstrumentedExecutions>(store.inner().executions());
          store.set_executions(executions_.get());
        }) {}
  // Held writes are let go before the server shuts down (which waits for them).
  ~InstrumentedFabric() { executions_->ReleaseSlow(); }

  InstrumentedExecutions& executions() { return *executions_; }
  std::unique_ptr<grpc2::FabricExecutions::Stub> Executions() {
    return grpc2::FabricExecutions::NewStub(fabric_.channel());
  }
  std::unique_ptr<grpc2::FabricStatesDictionary::Stub> Dictionary() {
    return grpc2::FabricStatesDictionary::NewStub(fabric_.channel());
  }

 private:
  std::unique_ptr<InstrumentedExecutions> executions_;  // Outlives the server.
  WrappedStoreFabric fabric_;
};

class FabricCostsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FabricCostsTest, DispatchFromABacklogReadsEachExecutionAFewTimesNotOncePerCredit) {
  InstrumentedFabric fabric(GetParam());
  auto stub = fabric.Executions();
  constexpr int kBacklog = 1000;
  constexpr int kDispatched = 100;
  // The ones to be dispatched one by one in order, then the rest of the backlog all at once
  // (durable writes in flight together share their syncs, which keeps this test fast).
  for (int i = 0; i < kDispatched; ++i) {
    ASSERT_TRUE(CreateExecution(*stub, "job-" + std::to_string(i), "Worker", "w", "Run").ok());
  }
  {
    struct Pending {
      grpc::ClientContext context;
      grpc2::ExecutionsCreateRequest request;
      google::protobuf::Empty response;
      grpc::Status status;
    };
    std::vector<std::unique_ptr<Pending>> pending;
    std::latch created(kBacklog - kDispatched);
    for (int i = kDispatched; i < kBacklog; ++i) {
      auto& p = pending.emplace_back(std::make_unique<Pending>());
      p->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      p->request = CreateRequest("job-" + std::to_string(i), "Worker", "w", "Run");
      stub->async()->Create(&p->context, &p->request, &p->response,
                            [&created, p = p.get()](grpc::Status s) {
                              p->status = std::move(s);
                              created.count_down();
                            });
    }
    created.wait();
    for (auto& p : pending) ASSERT_TRUE(p->status.ok()) << p->status.error_message();
  }
  int64_t reads_before = fabric.executions().reads.load();
  ReserveCall call(*stub, "Worker", /*credits=*/0);
  call.ExpectStart();  // The whole backlog waits for credits.
  for (int i = 0; i < kDispatched; ++i) {
    ASSERT_TRUE(call.Grant(1));
    // Oldest first, one per credit.
    ASSERT_EQ(call.NextExecution(), "job-" + std::to_string(i));
  }
  int64_t reads = fabric.executions().reads.load() - reads_before;
  // Each delivery reads its execution before and after its write; the waiting ones are not
  // read until their turn. Re-reading the backlog on every credit would be ~100,000 reads.
  EXPECT_LE(reads, 4 * kDispatched) << reads << " store reads for " << kDispatched
                                    << " deliveries from a backlog of " << kBacklog;
}

TEST_P(FabricCostsTest, AWriteWaitingInTheStoreHoldsNoGrpcThread) {
  InstrumentedFabric fabric(GetParam());
  auto stub = fabric.Executions();
  // More writes in flight than gRPC has callback threads (two on a 2-core machine).
  constexpr int kSlow = 8;
  struct Pending {
    grpc::ClientContext context;
    grpc2::ExecutionsCreateRequest request;
    google::protobuf::Empty response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Pending>> pending;
  std::latch done(kSlow);
  for (int i = 0; i < kSlow; ++i) {
    auto& p = pending.emplace_back(std::make_unique<Pending>());
    p->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    p->request = CreateRequest("slow-" + std::to_string(i), "Agent", "a", "Run");
    stub->async()->Create(&p->context, &p->request, &p->response,
                          [&done, p = p.get()](grpc::Status s) {
                            p->status = std::move(s);
                            done.count_down();
                          });
  }
  if (GetParam() == "memory") {
    // The memory backend writes inline: nothing to show beyond the writes completing.
    fabric.executions().ReleaseSlow();
    done.wait();
    for (auto& p : pending) EXPECT_TRUE(p->status.ok()) << p->status.error_message();
    return;
  }
  // Durable: every write is waiting in the store at the same time (so they can share a sync)...
  EXPECT_TRUE(WaitFor([&] { return fabric.executions().slow_entered.load() == kSlow; }))
      << fabric.executions().slow_entered.load() << " of " << kSlow << " writes reached the store";
  // ...and other calls are still answered meanwhile, writes included.
  ASSERT_TRUE(CreateExecution(*stub, "quick", "Agent", "a", "Run").ok());
  grpc2::ExecutionsGetResultRequest get;
  get.mutable_execution()->set_execution("quick");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  grpc2::ExecutionsGetResultResponse result;
  // Unfinished: waits until the deadline, which shows the call was served, not queued.
  EXPECT_EQ(stub->GetResult(&context, get, &result).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  fabric.executions().ReleaseSlow();
  done.wait();
  for (auto& p : pending) EXPECT_TRUE(p->status.ok()) << p->status.error_message();
}

INSTANTIATE_TEST_SUITE_P(Backends, FabricCostsTest, AllBackends(), BackendName);

TEST(WritePoolTest, RunsTasksConcurrently) {
  constexpr int kTasks = 16;
  fabric::WritePool pool(kTasks);
  std::latch all_running(kTasks);
  std::atomic<int> finished{0};
  for (int i = 0; i < kTasks; ++i) {
    pool.Post([&] {
      all_running.arrive_and_wait();  // Only returns once every task runs at the same time.
      ++finished;
    });
  }
  EXPECT_TRUE(WaitFor([&] { return finished.load() == kTasks; }));
}

TEST(WritePoolTest, RunsEverythingPostedBeforeItGoes) {
  std::atomic<int> ran{0};
  {
    fabric::WritePool pool(2);
    for (int i = 0; i < 1000; ++i) pool.Post([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 1000);
}

}  // namespace
}  // namespace perper::testing
