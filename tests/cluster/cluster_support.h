// SPDX-License-Identifier: MIT
// Test support for the cluster-mode tests: a Redis Cluster with several perper-fabric processes
// sharing it (one Fabric in redis mode per process), a ledger of what the Fabrics acknowledged,
// and in-test workers that serve executions over ListenAndReserve as an SDK would.
//
//   FabricsOnCluster setup({.masters = 3, .fabrics = 3});
//   ASSERT_TRUE(setup.Start());
//   auto executions = grpc2::FabricExecutions::NewStub(setup.channel(1));
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include "tests/support/fabric_process.h"
#include "tests/support/redis_process.h"

namespace perper::testing {

using Clock = std::chrono::steady_clock;

struct FabricsOnClusterOptions {
  int masters = 3;
  int replicas_per_master = 0;
  int fabrics = 3;
  int lease_ms = 0;       // 0: the Fabric's default
  int wait_replicas = 0;  // --redis-wait-replicas
};

// A Redis Cluster and `fabrics` perper-fabric processes started with `--storage redis` on it.
// The Fabrics are destroyed (SIGKILL) before the cluster. Not thread-safe, except channel(),
// which may be called from any thread once Start() returned.
class FabricsOnCluster {
 public:
  explicit FabricsOnCluster(FabricsOnClusterOptions options);
  ~FabricsOnCluster();

  ::testing::AssertionResult Start();

  RedisCluster& cluster() { return cluster_; }
  FabricProcess& fabric(int i) { return *fabrics_[i]; }
  int fabric_count() const { return static_cast<int>(fabrics_.size()); }
  // One channel per Fabric, opened at Start().
  std::shared_ptr<grpc::Channel> channel(int i) const { return channels_[i]; }
  // The Fabrics' logs, for failure messages.
  std::string Logs() const;

 private:
  FabricsOnClusterOptions options_;
  RedisCluster cluster_;
  std::vector<std::unique_ptr<FabricProcess>> fabrics_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

// A test on three Fabric processes on a 3-master cluster, started in SetUp; their logs are added
// to a failed test.
class ClusterFabricsFixture : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(setup_.Start()); }
  void TearDown() override {
    if (HasFailure()) ADD_FAILURE() << setup_.Logs();
  }

  FabricsOnCluster setup_{FabricsOnClusterOptions{}};
};

// Threads joined when the group goes out of scope, after `on_exit` (which tells them to stop), so
// that a failed ASSERT does not leave a running std::thread behind. Not thread-safe.
class ThreadGroup {
 public:
  explicit ThreadGroup(std::function<void()> on_exit = {}) : on_exit_(std::move(on_exit)) {}
  ~ThreadGroup() {
    if (on_exit_) on_exit_();
    JoinAll();
  }
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  template <typename F>
  void Add(F&& body) {
    threads_.emplace_back(std::forward<F>(body));
  }
  void JoinAll() {
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  std::function<void()> on_exit_;
  std::vector<std::thread> threads_;
};

// A client context with a deadline.
std::unique_ptr<grpc::ClientContext> DeadlineContext(std::chrono::milliseconds timeout);

// "CODE: message" for failure messages.
std::string Describe(const grpc::Status& status);

// What the Fabrics acknowledged to the test's clients and what the workers saw, per execution.
// Thread-safe.
class Ledger {
 public:
  struct Entry {
    bool created = false;      // a Create of it returned OK
    int deliveries = 0;        // ListenAndReserve deliveries to any worker
    std::vector<int> fabrics;  // the Fabric of each delivery, in order
    std::vector<Clock::time_point> delivered_at;
    int ok_completions = 0;    // Complete calls that returned OK
    int finished_answers = 0;  // Complete calls answered FAILED_PRECONDITION
  };

  void Created(const std::string& id);
  void Delivered(const std::string& id, int fabric);
  void CompleteAnswered(const std::string& id, const grpc::Status& status);
  // A call that failed where the test allows no failure.
  void Error(const std::string& what, const grpc::Status& status);

  std::map<std::string, Entry> Snapshot() const;
  // How many executions acknowledged as created have an OK completion.
  size_t CreatedAndCompleted() const;
  size_t CreatedCount() const;
  std::vector<std::string> Errors() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
};

// One worker on one Fabric: a ListenAndReserve call with `credits` credits for `agent`. For each
// delivered execution it answers Complete with the argument (an Int64Value) times two, then grants
// one credit, unless Hold() was called: from then on it keeps what it receives (holding the
// reservations) without completing it. Owns its thread; thread-safe.
class Worker {
 public:
  Worker(int fabric, std::shared_ptr<grpc::Channel> channel, std::string agent, uint64_t credits,
         Ledger* ledger);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Waits for the call's start_of_stream.
  bool WaitStarted(std::chrono::milliseconds timeout);
  void Hold() { hold_.store(true); }
  // The executions received while holding.
  std::vector<std::string> Held() const;
  // Whether the call ended, and its status (before Stop()).
  bool ended() const { return ended_.load(); }
  grpc::Status end_status() const;
  uint64_t credits() const { return credits_; }
  // Cancels the call and joins the thread.
  void Stop();

 private:
  void Run();

  const int fabric_;
  std::unique_ptr<grpc2::FabricExecutions::Stub> stub_;
  const std::string agent_;
  const uint64_t credits_;
  Ledger* const ledger_;
  grpc::ClientContext context_;
  std::atomic<bool> hold_{false};
  std::atomic<bool> started_{false};
  std::atomic<bool> ended_{false};
  std::atomic<bool> stopping_{false};
  mutable absl::Mutex mu_;
  std::vector<std::string> held_ ABSL_GUARDED_BY(mu_);
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Starts `per_process` workers of `agent` on every Fabric of `setup`, appended to `workers`, and
// waits until each one's call is live.
::testing::AssertionResult StartWorkers(FabricsOnCluster& setup, const std::string& agent,
                                        int per_process, uint64_t credits, Ledger* ledger,
                                        std::vector<std::unique_ptr<Worker>>* workers);

// The ID of the n-th test execution: those with an even n belong to an instance (so they share
// the instance's slot), the others to none (each in its own slot).
std::string ExecutionId(int n);
// Creates execution `n` of `agent` (argument Int64Value(n)) through `stub`.
grpc::Status CreateNumbered(grpc2::FabricExecutions::Stub& stub, const std::string& agent, int n);
// The n of ExecutionId(n).
int ExecutionNumber(const std::string& id);
// Whether each of `ids` has, read through `stub`, the result a Worker gives (twice its number).
::testing::AssertionResult ResultsAreDoubles(grpc2::FabricExecutions::Stub& stub,
                                             const std::vector<std::string>& ids);
// The executions of `ledger` whose Create was acknowledged.
std::vector<std::string> CreatedIds(const Ledger& ledger);
// GetResult, waiting up to `timeout`.
grpc::Status GetResult(grpc2::FabricExecutions::Stub& stub, const std::string& id,
                       grpc2::ExecutionsGetResultResponse* response,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Dictionary helpers over Operate.
grpc::Status DictionarySet(grpc2::FabricStatesDictionary::Stub& stub, const std::string& dictionary,
                           const std::string& key, int64_t value,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));
// The value under `key` (an Int64Value), nullopt when absent.
absl::StatusOr<std::optional<int64_t>> DictionaryGet(grpc2::FabricStatesDictionary::Stub& stub,
                                                     const std::string& dictionary,
                                                     const std::string& key);

// The ports of the nodes that are masters now, and of the master serving `slot` (0 when none
// answers). Asked of the running nodes.
std::vector<int> MasterPorts(RedisCluster& cluster);
int MasterOfSlot(RedisCluster& cluster, int slot);
// The port of the master serving each of the 16384 slots (0 where none), from one CLUSTER SLOTS.
std::vector<int> SlotOwners(RedisCluster& cluster);
// The port of a running replica of the master on `master_port`, 0 when there is none.
int ReplicaOf(RedisCluster& cluster, int master_port);
// Whether the node on `port` answers ROLE with "master".
bool IsMaster(int port);
// The node ID (CLUSTER MYID) of the node on `port`.
std::string NodeId(int port);
// The number of slots the master on `port` serves, as seen by that node.
int SlotsServedBy(RedisCluster& cluster, int port);

}  // namespace perper::testing
