// SPDX-License-Identifier: MIT
// kill -9 of one of three Fabric processes on a Redis Cluster while workers on all three handle
// executions: no acknowledged execution is lost, and what the dead process's workers held goes
// to workers on the other processes once the dead process's lease runs out.
//
// The guarantee is at-least-once: an execution reserved for a worker of the dead process is
// delivered again elsewhere (so at most as many duplicates as those workers had credits); every
// other execution is delivered once, and every execution is completed exactly once (the first
// completion wins).
#include <signal.h>

#include <atomic>
#include <iostream>
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

constexpr int kLeaseMs = 1000;
constexpr int kVictim = 2;
constexpr int kWorkersPerProcess = 2;
constexpr uint64_t kCredits = 4;

// What a failure must show: each acknowledged execution without an OK completion, where it went,
// and every call that failed.
std::string Unfinished(const Ledger& ledger, const std::set<std::string>& held) {
  std::string text;
  for (const auto& [id, entry] : ledger.Snapshot()) {
    if (!entry.created || entry.ok_completions > 0) continue;
    absl::StrAppend(&text, id, held.count(id) > 0 ? " (held by the victim)" : "",
                    ": delivered to Fabrics [", absl::StrJoin(entry.fabrics, ","), "], ",
                    entry.finished_answers, " completions answered finished\n");
  }
  for (const std::string& error : ledger.Errors()) absl::StrAppend(&text, error, "\n");
  return text;
}

TEST(ClusterFabricKillTest, KilledProcessLosesNothingAndItsReservationsMoveAfterTheLease) {
  FabricsOnCluster setup(
      {.masters = 3, .replicas_per_master = 0, .fabrics = 3, .lease_ms = kLeaseMs});
  ASSERT_TRUE(setup.Start());
  Ledger ledger;
  std::vector<std::unique_ptr<Worker>> workers;
  ASSERT_TRUE(StartWorkers(setup, "Doubler", kWorkersPerProcess, kCredits, &ledger, &workers));

  // Creators on every process, each taking the next number below the limit; the one on the
  // victim stops at its first failure (the kill), the others must never fail.
  absl::Mutex numbers_mu;
  int next = 0;
  int limit = 300;
  std::atomic<bool> stop{false};
  auto take = [&](int* n) {
    absl::MutexLock lock(&numbers_mu);
    // Wakes on a new limit; the timeout lets the loop notice `stop`.
    auto below_limit = [&] { return next < limit; };
    numbers_mu.AwaitWithTimeout(absl::Condition(&below_limit), absl::Milliseconds(100));
    if (next >= limit) return false;
    *n = next++;
    return true;
  };
  auto set_limit = [&](int value) {
    absl::MutexLock lock(&numbers_mu);
    limit = value;
  };
  auto current_limit = [&] {
    absl::MutexLock lock(&numbers_mu);
    return limit;
  };
  auto taken = [&] {
    absl::MutexLock lock(&numbers_mu);
    return next;
  };
  auto create_loop = [&](int process) {
    auto stub = grpc2::FabricExecutions::NewStub(setup.channel(process));
    while (!stop.load()) {
      int n = 0;
      if (!take(&n)) continue;
      grpc::Status status = CreateNumbered(*stub, "Doubler", n);
      if (status.ok()) {
        ledger.Created(ExecutionId(n));
      } else if (process == kVictim) {
        return;  // not acknowledged: it may or may not exist
      } else {
        ledger.Error(absl::StrCat("Create ", ExecutionId(n), " on ", process), status);
      }
    }
  };
  ThreadGroup creators([&] { stop.store(true); });
  for (int process = 0; process < 3; ++process) {
    creators.Add([&create_loop, process] { create_loop(process); });
  }

  // Phase 1: everybody works.
  ASSERT_TRUE(
      WaitFor([&] { return ledger.CreatedAndCompleted() >= 300; }, std::chrono::seconds(60)))
      << ledger.CreatedAndCompleted();
  // Phase 2: the victim's workers keep what they get from now on, until their credits are used.
  // Which worker wins an execution is a race; the load goes on until the victim's have won
  // enough (others, done at once, ask again at once).
  for (int i = 0; i < kWorkersPerProcess; ++i) workers[kVictim * kWorkersPerProcess + i]->Hold();
  auto victim_full = [&] {
    for (int i = 0; i < kWorkersPerProcess; ++i) {
      if (workers[kVictim * kWorkersPerProcess + i]->Held().size() < kCredits) return false;
    }
    return true;
  };
  auto victim_holdings = [&] {
    std::string text = "the victim's workers hold:";
    for (int i = 0; i < kWorkersPerProcess; ++i)
      absl::StrAppend(&text, " ", workers[kVictim * kWorkersPerProcess + i]->Held().size());
    int per_fabric[3] = {0, 0, 0};
    for (const auto& [id, entry] : ledger.Snapshot()) {
      for (int f : entry.fabrics) ++per_fabric[f];
    }
    return absl::StrCat(text, "; ", taken(), " taken, ", ledger.CreatedAndCompleted(),
                        " completed; deliveries per Fabric ", per_fabric[0], " ", per_fabric[1],
                        " ", per_fabric[2], "\n");
  };
  constexpr int kMostBeforeTheKill = 5000;
  ASSERT_TRUE(WaitFor(
      [&] {
        if (victim_full()) return true;
        if (const int now = taken(); now >= current_limit() && now < kMostBeforeTheKill)
          set_limit(now + 100);
        return false;
      },
      std::chrono::seconds(60)))
      << victim_holdings() << Unfinished(ledger, {}) << setup.Logs();
  // How evenly the processes' workers shared the load, for whoever reads the test's output.
  std::cout << victim_holdings();
  std::set<std::string> held;
  for (int i = 0; i < kWorkersPerProcess; ++i) {
    for (const std::string& id : workers[kVictim * kWorkersPerProcess + i]->Held()) held.insert(id);
  }
  ASSERT_EQ(held.size(), kWorkersPerProcess * kCredits);

  const Clock::time_point killed_at = Clock::now();
  setup.fabric(kVictim).Kill(SIGKILL);
  EXPECT_EQ(setup.fabric(kVictim).Wait(), 128 + SIGKILL);

  // The load goes on through the others.
  const int before_the_kill = taken();
  set_limit(before_the_kill + 300);
  ASSERT_TRUE(WaitFor([&] { return taken() >= before_the_kill + 300; }, std::chrono::seconds(60)));
  stop.store(true);
  creators.JoinAll();
  const size_t created = ledger.CreatedCount();
  // All but the one the victim's creator had in flight when it was killed.
  ASSERT_GE(created, static_cast<size_t>(before_the_kill + 300 - 1));
  ASSERT_TRUE(
      WaitFor([&] { return ledger.CreatedAndCompleted() == created; }, std::chrono::seconds(60)))
      << ledger.CreatedAndCompleted() << " of " << created << " completed\n"
      << Unfinished(ledger, held) << setup.Logs();
  for (auto& worker : workers) worker->Stop();

  EXPECT_TRUE(ledger.Errors().empty()) << ledger.Errors().front();
  const auto entries = ledger.Snapshot();
  int64_t slowest_takeover_ms = 0;
  size_t duplicates = 0;
  for (const auto& [id, entry] : entries) {
    if (!entry.created) {
      // A Create on the victim that was not answered: whether it exists is not known; if it
      // does, it is handled like the others.
      EXPECT_LE(entry.ok_completions, 1) << id;
      continue;
    }
    EXPECT_EQ(entry.ok_completions, 1) << id;
    if (held.count(id) > 0) {
      // Delivered to the victim, then once more to a live process.
      ASSERT_EQ(entry.deliveries, 2) << id;
      EXPECT_EQ(entry.fabrics[0], kVictim) << id;
      EXPECT_NE(entry.fabrics[1], kVictim) << id;
      slowest_takeover_ms = std::max<int64_t>(
          slowest_takeover_ms,
          std::chrono::duration_cast<std::chrono::milliseconds>(entry.delivered_at[1] - killed_at)
              .count());
      ++duplicates;
    } else {
      EXPECT_EQ(entry.deliveries, 1) << id;
    }
  }
  EXPECT_EQ(duplicates, held.size());
  EXPECT_LE(duplicates, kWorkersPerProcess * kCredits);
  EXPECT_LE(slowest_takeover_ms, kLeaseMs + 1000);
  RecordProperty("slowest_takeover_ms", static_cast<int>(slowest_takeover_ms));

  // Every acknowledged execution's result is readable through the survivors.
  auto survivor = grpc2::FabricExecutions::NewStub(setup.channel(0));
  EXPECT_TRUE(ResultsAreDoubles(*survivor, CreatedIds(ledger)));
}

}  // namespace
}  // namespace perper::testing
