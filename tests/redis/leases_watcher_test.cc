// SPDX-License-Identifier: MIT
// Process leases and the foreign-holder watcher against a real redis-server: a lease is renewed
// for as long as its process runs, deleted by a clean stop and left to run out by an abandoned
// one; the watcher reports the holds of dead processes only, once, and stays bounded; the death
// watcher reports a process gone without closing once, with one resync.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/common/status_macros.h"
#include "perper/storage/redis/leases.h"
#include "perper/storage/redis/redis_keys.h"
#include "tests/support/redis_backends.h"

namespace perper::storage::redis {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class LeasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status reset = perper::testing::ResetRedisBackend("redis");
    ASSERT_TRUE(reset.ok()) << reset;
    absl::StatusOr<StoreOptions> store = perper::testing::RedisBackendOptions("redis");
    ASSERT_TRUE(store.ok()) << store.status();
    const std::string& address = store->redis_addresses.front();
    RedisStoreOptions options;
    options.cluster.seeds = {{"127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1))}};
    absl::StatusOr<std::unique_ptr<ClientPool>> pool = ClientPool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
  }

  bool Alive(const std::string& process_id) {
    absl::StatusOr<bool> alive = LeaseAlive(*pool_, process_id);
    EXPECT_TRUE(alive.ok()) << alive.status();
    return alive.ok() && *alive;
  }
  bool Registered(const std::string& process_id) {
    std::string key = Key(kGlobalTag, "processes");
    absl::StatusOr<RedisReply> member = pool_->Run(key, {"SISMEMBER", key, process_id});
    EXPECT_TRUE(member.ok()) << member.status();
    return member.ok() && member->integer == 1;
  }
  void SetLease(const std::string& process_id) {
    std::string key = LeaseKey(process_id);
    ASSERT_TRUE(pool_->Run(key, {"SET", key, "1", "PX", "60000"}).ok());
  }
  void DeleteLease(const std::string& process_id) {
    std::string key = LeaseKey(process_id);
    ASSERT_TRUE(pool_->Run(key, {"DEL", key}).ok());
  }

  std::unique_ptr<ClientPool> pool_;
};

TEST_F(LeasesTest, ALeaseLivesAsLongAsItIsRenewedAndACleanStopDeletesIt) {
  ProcessLease lease(pool_.get(), 300ms);
  ASSERT_TRUE(lease.Start().ok());
  const std::string& id = pool_->process_id();
  EXPECT_TRUE(Registered(id));
  // Three leases long, the lease never lapses.
  for (Clock::time_point end = Clock::now() + 900ms; Clock::now() < end;) {
    ASSERT_TRUE(Alive(id));
    absl::SleepFor(absl::Milliseconds(20));  // Sampling pace, not synchronisation.
  }
  lease.Stop(/*release=*/true);
  EXPECT_FALSE(Alive(id));
  EXPECT_FALSE(Registered(id));
}

TEST_F(LeasesTest, AnAbandonedLeaseRunsOutByItself) {
  ProcessLease lease(pool_.get(), 300ms);
  ASSERT_TRUE(lease.Start().ok());
  const std::string& id = pool_->process_id();
  lease.Stop(/*release=*/false);
  EXPECT_TRUE(Alive(id));  // Renewed at most a third of a lease ago.
  Clock::time_point deadline = Clock::now() + 1s;
  while (Alive(id) && Clock::now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(Alive(id));
}

class WatcherTest : public LeasesTest {
 protected:
  ForeignHolderWatcher::Report Recorder() {
    return [this](const Change& change) {
      absl::MutexLock lock(&mu_);
      reported_.push_back(change.id + "/" + change.workgroup + "/" + change.agent);
    };
  }
  std::vector<std::string> Reported() {
    absl::MutexLock lock(&mu_);
    return std::move(reported_);
  }
  static ForeignHold Hold(const std::string& execution, const std::string& workgroup) {
    return ForeignHold{execution, workgroup, "agent", "inst", "Run"};
  }

  absl::Mutex mu_;
  std::vector<std::string> reported_ ABSL_GUARDED_BY(mu_);
};

TEST_F(WatcherTest, ReportsTheHoldsOfDeadProcessesOnlyAndOnce) {
  ForeignHolderWatcher watcher(pool_.get(), Recorder());
  SetLease("1111111111111111");
  watcher.Watch("1111111111111111", Hold("e1", "w"));
  watcher.Watch("2222222222222222", Hold("e2", "w"));  // No lease: dead.
  watcher.Watch("2222222222222222", Hold("e2", "v"));
  watcher.CheckOnce();
  EXPECT_THAT(Reported(), UnorderedElementsAre("e2/w/agent", "e2/v/agent"));
  EXPECT_EQ(watcher.size(), 1u);
  watcher.CheckOnce();
  EXPECT_TRUE(Reported().empty());
  DeleteLease("1111111111111111");
  watcher.CheckOnce();
  EXPECT_THAT(Reported(), ElementsAre("e1/w/agent"));
  EXPECT_EQ(watcher.size(), 0u);
}

TEST_F(WatcherTest, ForgetsSettledHoldsAndStaysBounded) {
  ForeignHolderWatcher watcher(pool_.get(), Recorder(), 250ms, /*capacity=*/3);
  watcher.Watch("2222222222222222", Hold("e1", "w"));
  watcher.Watch("2222222222222222", Hold("e1", "v"));
  watcher.Watch("2222222222222222", Hold("e2", "w"));
  watcher.Watch("2222222222222222", Hold("e3", "w"));  // Beyond the bound: not watched.
  EXPECT_EQ(watcher.size(), 3u);
  watcher.Watch("3333333333333333", Hold("e2", "w"));  // Replacing stays within it.
  EXPECT_EQ(watcher.size(), 3u);
  watcher.Forget("e1");  // Every workgroup of e1.
  EXPECT_EQ(watcher.size(), 1u);
  watcher.Forget("e2", "v");  // Not watched: nothing changes.
  EXPECT_EQ(watcher.size(), 1u);
  watcher.CheckOnce();
  EXPECT_THAT(Reported(), ElementsAre("e2/w/agent"));
}

TEST_F(WatcherTest, ItsThreadChecksByItself) {
  ForeignHolderWatcher watcher(pool_.get(), Recorder(), 50ms);
  watcher.Start();
  SetLease("1111111111111111");
  watcher.Watch("1111111111111111", Hold("e1", "w"));
  DeleteLease("1111111111111111");
  {
    absl::MutexLock lock(&mu_);
    auto reported = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !reported_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&reported), absl::Seconds(5));
  }
  EXPECT_THAT(Reported(), ElementsAre("e1/w/agent"));
  watcher.Stop();
}

class DeathWatcherTest : public LeasesTest {
 protected:
  void Register(const std::string& process_id) {
    std::string key = Key(kGlobalTag, "processes");
    ASSERT_TRUE(pool_->Run(key, {"SADD", key, process_id}).ok());
  }
  ProcessDeathWatcher::Report Recorder() {
    return [this](const Change& change) {
      absl::MutexLock lock(&mu_);
      if (change.kind == Change::Kind::kResync) ++resyncs_;
    };
  }
  int Resyncs() {
    absl::MutexLock lock(&mu_);
    return resyncs_;
  }
  std::vector<std::string> Check(ProcessDeathWatcher& watcher) {
    absl::StatusOr<std::vector<std::string>> died = watcher.CheckOnce();
    EXPECT_TRUE(died.ok()) << died.status();
    return died.ok() ? *died : std::vector<std::string>{};
  }

  absl::Mutex mu_;
  int resyncs_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(DeathWatcherTest, ReportsAProcessWhoseLeaseRanOutOnceWithOneResync) {
  SetLease(pool_->process_id());  // The watcher's own process lives.
  Register("1111111111111111");
  SetLease("1111111111111111");
  Register("2222222222222222");
  SetLease("2222222222222222");
  ProcessDeathWatcher watcher(pool_.get(), Recorder(), 250ms, 60s);
  EXPECT_TRUE(Check(watcher).empty());
  DeleteLease("1111111111111111");
  DeleteLease("2222222222222222");
  EXPECT_THAT(Check(watcher), UnorderedElementsAre("1111111111111111", "2222222222222222"));
  EXPECT_EQ(Resyncs(), 1);  // One resync covers every death of one look.
  EXPECT_TRUE(Check(watcher).empty());
  EXPECT_EQ(Resyncs(), 1);
  EXPECT_EQ(watcher.reported(), 2);
  // Back (a lease that lapsed while its process was cut off), then gone again: reported again.
  SetLease("1111111111111111");
  EXPECT_TRUE(Check(watcher).empty());
  DeleteLease("1111111111111111");
  EXPECT_THAT(Check(watcher), ElementsAre("1111111111111111"));
  EXPECT_EQ(Resyncs(), 2);
}

TEST_F(DeathWatcherTest, NeitherTheDeadBeforeItsFirstLookNorACleanCloseIsReported) {
  SetLease(pool_->process_id());
  Register("1111111111111111");  // Dead before the watcher's process started.
  Register("2222222222222222");
  SetLease("2222222222222222");
  ProcessDeathWatcher watcher(pool_.get(), Recorder(), 250ms, 60s);
  EXPECT_TRUE(Check(watcher).empty());
  // A clean close leaves the set (ProcessLease::Stop with release).
  std::string key = Key(kGlobalTag, "processes");
  ASSERT_TRUE(pool_->Run(key, {"SREM", key, "2222222222222222"}).ok());
  DeleteLease("2222222222222222");
  EXPECT_TRUE(Check(watcher).empty());
  EXPECT_EQ(Resyncs(), 0);
}

TEST_F(DeathWatcherTest, JudgesNobodyWithoutALeaseOfItsOwn) {
  SetLease(pool_->process_id());
  Register("1111111111111111");
  SetLease("1111111111111111");
  ProcessDeathWatcher watcher(pool_.get(), Recorder(), 250ms, 60s);
  EXPECT_TRUE(Check(watcher).empty());
  DeleteLease(pool_->process_id());
  DeleteLease("1111111111111111");
  EXPECT_TRUE(Check(watcher).empty());  // Our own lease is missing: we may be the one cut off.
  SetLease(pool_->process_id());
  EXPECT_THAT(Check(watcher), ElementsAre("1111111111111111"));
}

TEST_F(DeathWatcherTest, ADeadMemberLeavesTheSetAfterForgetAfter) {
  SetLease(pool_->process_id());
  Register("1111111111111111");
  SetLease("1111111111111111");
  ProcessDeathWatcher watcher(pool_.get(), Recorder(), 250ms, /*forget_after=*/0ms);
  EXPECT_TRUE(Check(watcher).empty());
  DeleteLease("1111111111111111");
  EXPECT_THAT(Check(watcher), ElementsAre("1111111111111111"));
  EXPECT_TRUE(Registered("1111111111111111"));
  EXPECT_TRUE(Check(watcher).empty());
  EXPECT_FALSE(Registered("1111111111111111"));
}

TEST_F(DeathWatcherTest, ItsThreadLooksByItself) {
  SetLease(pool_->process_id());
  Register("1111111111111111");
  SetLease("1111111111111111");
  ProcessDeathWatcher watcher(pool_.get(), Recorder(), 50ms, 60s);
  watcher.Start();
  DeleteLease("1111111111111111");
  {
    absl::MutexLock lock(&mu_);
    auto reported = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return resyncs_ > 0; };
    mu_.AwaitWithTimeout(absl::Condition(&reported), absl::Seconds(5));
  }
  EXPECT_EQ(Resyncs(), 1);
  watcher.Stop();
}

}  // namespace
}  // namespace perper::storage::redis
