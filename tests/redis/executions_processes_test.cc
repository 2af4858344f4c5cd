// SPDX-License-Identifier: MIT
// The executions part of the redis backend as several Fabric processes see it: two stores on one
// Redis (standalone and a 3-master cluster) act as two processes. Exactly one holder across
// them; a process that dies holding a reservation loses it when its lease runs out (the other
// process hears kReservationReleased and takes it over); a clean close hands over at once; a
// locator cached by one process follows an ID the other deleted and created elsewhere; an
// instance's executions share the slot of its state dictionary.
#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/common/status_macros.h"
#include "perper/storage/redis/key_slot.h"
#include "perper/storage/redis/redis_executions.h"
#include "perper/storage/redis/redis_keys.h"
#include "perper/storage/redis/redis_store.h"
#include "perper/storage/store_factory.h"
#include "tests/support/redis_backends.h"
#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

ExecutionRecord Record(const std::string& id, const std::string& instance = "inst") {
  ExecutionRecord record;
  record.execution = id;
  record.agent = "agent";
  record.instance = instance;
  record.delegate = "Run";
  record.arguments = {"argument"};
  return record;
}

bool IsRelease(const Change& change, const std::string& id, const std::string& workgroup) {
  return change.kind == Change::Kind::kReservationReleased && change.id == id &&
         change.workgroup == workgroup;
}

// One Fabric process's view of the shared Redis: its own store with its own observer.
class Process {
 public:
  explicit Process(const StoreOptions& options) {
    absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(options);
    PERPER_CHECK(store.ok()) << store.status();
    store_ = *std::move(store);
    store_->SetObserver(&observer_);
  }

  ExecutionStore& executions() { return store_->executions(); }
  Store& store() { return *store_; }
  // From now on this process's changes reach only its own observer, as if it were killed
  // before publishing them.
  void StopPublishing() { dynamic_cast<RedisStore&>(*store_).StopPublishingForTesting(); }
  RedisExecutions& redis() { return dynamic_cast<RedisStore&>(*store_).redis_executions(); }

  // Waits until a change reported since the process opened satisfies `wanted`.
  bool WaitForChange(const std::function<bool(const Change&)>& wanted,
                     std::chrono::milliseconds timeout) {
    return observer_.WaitFor(wanted, timeout);
  }

 private:
  class Observer final : public ChangeObserver {
   public:
    void OnChange(const Change& change) override {
      absl::MutexLock lock(&mu_);
      changes_.push_back(change);
    }
    bool WaitFor(const std::function<bool(const Change&)>& wanted,
                 std::chrono::milliseconds timeout) {
      absl::MutexLock lock(&mu_);
      size_t seen = 0;
      auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        for (; seen < changes_.size(); ++seen) {
          if (wanted(changes_[seen])) return true;
        }
        return false;
      };
      return mu_.AwaitWithTimeout(absl::Condition(&found), absl::FromChrono(timeout));
    }

   private:
    absl::Mutex mu_;
    std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);
  };

  Observer observer_;  // Outlives the store, which reports to it until destroyed.
  std::unique_ptr<Store> store_;
};

// Both redis test backends (one server, a 3-master cluster), emptied before each test.
class ExecutionsProcessesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::Status reset = perper::testing::ResetRedisBackend(GetParam());
    ASSERT_TRUE(reset.ok()) << reset;
    absl::StatusOr<StoreOptions> options = perper::testing::RedisBackendOptions(GetParam());
    ASSERT_TRUE(options.ok()) << options.status();
    options_ = *std::move(options);
  }

  std::unique_ptr<Process> Open(std::chrono::milliseconds lease = std::chrono::seconds(3)) {
    StoreOptions options = options_;
    options.redis_lease = lease;
    return std::make_unique<Process>(options);
  }

  // A redis-cli command: on the node at "host:port" `node`, or (empty) on the first node,
  // following cluster redirections.
  absl::StatusOr<std::string> Cli(std::vector<std::string> args, const std::string& node = "") {
    const std::string& address = node.empty() ? options_.redis_addresses.front() : node;
    std::vector<std::string> argv = {"-p", address.substr(address.rfind(':') + 1)};
    if (node.empty()) argv.push_back("-c");
    argv.insert(argv.end(), args.begin(), args.end());
    return perper::testing::RedisCli(argv);
  }

 private:
  StoreOptions options_;
};

TEST_P(ExecutionsProcessesTest, ExactlyOneHolderAcrossProcesses) {
  auto a = Open();
  auto b = Open();
  constexpr int kExecutions = 40;
  for (int i = 0; i < kExecutions; ++i) {
    ASSERT_TRUE(a->executions().CreateExecution(Record("e" + std::to_string(i))).ok());
  }
  // Both processes race for every reservation, from two threads each.
  std::vector<std::atomic<int>> taken(kExecutions);
  std::vector<std::string> holder_of(kExecutions);
  absl::Mutex mu;
  auto race = [&](Process* process, const std::string& holder) {
    for (int i = 0; i < kExecutions; ++i) {
      absl::StatusOr<bool> reserved =
          process->executions().TryReserve("e" + std::to_string(i), "w", holder);
      ASSERT_TRUE(reserved.ok()) << reserved.status();
      if (*reserved) {
        taken[i].fetch_add(1);
        absl::MutexLock lock(&mu);
        holder_of[i] = holder;
      }
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(race, a.get(), "a1");
  threads.emplace_back(race, a.get(), "a2");
  threads.emplace_back(race, b.get(), "b1");
  threads.emplace_back(race, b.get(), "b2");
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kExecutions; ++i) EXPECT_EQ(taken[i].load(), 1) << "e" << i;

  // Each process lists every reservation, whoever holds it.
  for (Process* process : {a.get(), b.get()}) {
    absl::StatusOr<std::vector<ReservationRecord>> listed =
        process->executions().ListReservations("w", 100);
    ASSERT_TRUE(listed.ok()) << listed.status();
    ASSERT_EQ(listed->size(), static_cast<size_t>(kExecutions));
    for (const ReservationRecord& reservation : *listed) {
      int i = std::stoi(reservation.execution.substr(1));
      EXPECT_EQ(reservation.holder, holder_of[i]) << reservation.execution;
    }
  }
}

TEST_P(ExecutionsProcessesTest, ASiblingsHoldIsAnsweredWithoutAskingRedis) {
  using Outcome = ExecutionStore::ReserveOutcome;
  auto a = Open();
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(a->executions().TryReserve("e1", "w", "h1").value());
  ExecutionFilter filter;
  filter.agent = "agent";
  auto ignore = [](const ExecutionRecord&) {};
  EXPECT_EQ(a->executions().ReadAndReserve("e1", filter, "w", "h2", ignore).value(),
            Outcome::kHeldByOther);
  EXPECT_FALSE(a->executions().TryReserve("e1", "w", "h2").value());
  EXPECT_EQ(a->redis().sibling_answers(), 2u);
  // The holder itself and another workgroup still ask.
  EXPECT_TRUE(a->executions().TryReserve("e1", "w", "h1").value());
  EXPECT_TRUE(a->executions().TryReserve("e1", "v", "h2").value());
  EXPECT_EQ(a->redis().sibling_answers(), 2u);

  ASSERT_TRUE(a->executions().ReleaseReservation("e1", "w", "h1").ok());
  EXPECT_TRUE(a->executions().TryReserve("e1", "w", "h2").value());
  EXPECT_EQ(a->redis().sibling_answers(), 2u);
}

TEST_P(ExecutionsProcessesTest, ChangesMadeElsewhereEndTheHoldsAProcessKnows) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a->executions().CreateExecution(Record("gone")).ok());
  ASSERT_TRUE(a->executions().CreateExecution(Record("done")).ok());
  ASSERT_TRUE(a->executions().TryReserve("gone", "w", "h1").value());
  ASSERT_TRUE(a->executions().TryReserve("done", "w", "h1").value());

  // Deleted and created again through b: the new execution is nobody's yet.
  ASSERT_TRUE(b->executions().DeleteExecution("gone").value());
  ASSERT_TRUE(b->executions().CreateExecution(Record("gone", "elsewhere")).value());
  // The new one (A's own creation of "gone" was reported too, and must not end the wait).
  ASSERT_TRUE(a->WaitForChange(
      [](const Change& c) {
        return c.kind == Change::Kind::kExecutionCreated && c.id == "gone" &&
               c.instance == "elsewhere";
      },
      10s));
  EXPECT_TRUE(a->executions().TryReserve("gone", "w", "h2").value());

  // Completed through b: finished, not held.
  ASSERT_TRUE(b->executions().CompleteExecution("done", {"r"}, std::nullopt).ok());
  ASSERT_TRUE(a->WaitForChange(
      [](const Change& c) { return c.kind == Change::Kind::kExecutionCompleted && c.id == "done"; },
      10s));
  EXPECT_EQ(a->executions().TryReserve("done", "w", "h2").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a->redis().sibling_answers(), 0u);
}

TEST_P(ExecutionsProcessesTest, ACompletionClosesTheExecutionInItsAgentsIndex) {
  auto a = Open();
  auto b = Open();
  const std::string open = Key(AgentTag("agent"), "open");
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(a->executions().CreateExecution(Record("e2")).ok());
  ASSERT_EQ(Cli({"ZRANGE", open, "0", "-1"}).value(), "e1\ne2\n");
  ASSERT_TRUE(a->executions().CompleteExecution("e1", {"r"}, std::nullopt).ok());
  EXPECT_EQ(Cli({"ZRANGE", open, "0", "-1"}).value(), "e2\n");
  // Under a locator made stale by another process (e2 deleted and created under another
  // instance), the entry of the new execution goes only with its own completion.
  ASSERT_TRUE(a->executions().GetExecution("e2").ok());  // a caches e2's locator.
  ASSERT_TRUE(b->executions().DeleteExecution("e2").value());
  ASSERT_TRUE(b->executions().CreateExecution(Record("e2", "elsewhere")).value());
  ASSERT_TRUE(a->executions().CompleteExecution("e2", {"r"}, std::nullopt).ok());
  EXPECT_EQ(Cli({"ZRANGE", open, "0", "-1"}).value(), "\n");  // redis-cli's empty list
  EXPECT_TRUE(a->executions().GetExecution("e2").value().finished);
}

// The process that completes an execution hands its waiters the outcome with the change; the
// change as other processes hear it carries none (they read the record).
TEST_P(ExecutionsProcessesTest, ACompletionsOutcomeComesWithItsChangeOnlyWhereItWasMade) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a->executions().CreateExecution(Record("ok")).ok());
  ASSERT_TRUE(a->executions().CreateExecution(Record("failed")).ok());
  ASSERT_TRUE(a->executions().CompleteExecution("ok", {"r1", "r2"}, std::nullopt).ok());
  ASSERT_TRUE(a->executions().CompleteExecution("failed", {}, "it broke").ok());
  auto completed = [](const std::string& id) {
    return [id](const Change& change) {
      return change.kind == Change::Kind::kExecutionCompleted && change.id == id;
    };
  };
  std::shared_ptr<const ExecutionOutcome> ok, failed;
  ASSERT_TRUE(a->WaitForChange(
      [&](const Change& change) {
        if (completed("ok")(change)) ok = change.outcome;
        return ok != nullptr;
      },
      10s));
  ASSERT_TRUE(a->WaitForChange(
      [&](const Change& change) {
        if (completed("failed")(change)) failed = change.outcome;
        return failed != nullptr;
      },
      10s));
  EXPECT_EQ(ok->results, (std::vector<std::string>{"r1", "r2"}));
  EXPECT_FALSE(ok->error.has_value());
  EXPECT_TRUE(failed->results.empty());
  EXPECT_EQ(failed->error, std::optional<std::string>("it broke"));
  for (const std::string id : {"ok", "failed"}) {
    ASSERT_TRUE(b->WaitForChange(completed(id), 10s)) << id;
    EXPECT_TRUE(b->WaitForChange(
        [&](const Change& change) { return completed(id)(change) && change.outcome == nullptr; },
        1s))
        << id;
  }
}

// How many times a command ran on the first node (INFO commandstats), e.g. "get".
int64_t CommandCalls(
    const std::function<absl::StatusOr<std::string>(std::vector<std::string>)>& cli,
    const std::string& command) {
  absl::StatusOr<std::string> stats = cli({"INFO", "commandstats"});
  if (!stats.ok()) return -1;
  const std::string field = "cmdstat_" + command + ":calls=";
  const size_t at = stats->find(field);
  return at == std::string::npos ? 0 : std::stoll(stats->substr(at + field.size()));
}

// A process learns where an execution created by another lives from the creation's change:
// reserving and completing it there reads no locator.
TEST_P(ExecutionsProcessesTest, AnExecutionCreatedElsewhereIsFoundWithoutReadingItsLocator) {
  auto a = Open();
  auto b = Open();
  auto cli = [&](std::vector<std::string> args) { return Cli(std::move(args)); };
  constexpr int kCount = 10;
  for (int i = 0; i < kCount; ++i) {
    const std::string id = "far" + std::to_string(i);
    ASSERT_TRUE(a->executions().CreateExecution(Record(id)).ok());
    ASSERT_TRUE(b->WaitForChange(
        [&](const Change& change) {
          return change.kind == Change::Kind::kExecutionCreated && change.id == id;
        },
        10s));
  }
  const int64_t before = CommandCalls(cli, "get");
  for (int i = 0; i < kCount; ++i) {
    const std::string id = "far" + std::to_string(i);
    ASSERT_TRUE(b->executions().TryReserve(id, "w", "h").value()) << id;
    ASSERT_TRUE(b->executions().CompleteExecution(id, {"r"}, std::nullopt).ok()) << id;
  }
  // In a cluster the locators live on every master; the first node's count is a lower bound.
  EXPECT_EQ(CommandCalls(cli, "get") - before, 0);
  EXPECT_TRUE(a->executions().GetExecution("far0").value().finished);
}

// The scripts one deployment runs, summed over its nodes (INFO commandstats).
int64_t ScriptCalls(
    const std::function<absl::StatusOr<std::string>(std::vector<std::string>)>& cli) {
  absl::StatusOr<std::string> stats = cli({"INFO", "commandstats"});
  if (!stats.ok()) return -1;
  int64_t calls = 0;
  for (const std::string command : {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="}) {
    const size_t at = stats->find(command);
    if (at != std::string::npos) calls += std::stoll(stats->substr(at + command.size()));
  }
  return calls;
}

// On a standalone server every key is on one node: a creation, an end with its stream and a
// deletion are one script each, where a cluster needs one per slot (four, three and three).
TEST_P(ExecutionsProcessesTest, OnAStandaloneServerEachStepOfAnExecutionIsOneScript) {
  if (GetParam() != "redis") GTEST_SKIP() << "a cluster runs one script per slot";
  auto a = Open();
  auto cli = [&](std::vector<std::string> args) { return Cli(std::move(args)); };
  constexpr int kCount = 20;
  // The lease renewal and the watchers run scripts too, a few a second: a margin for them.
  constexpr int kMargin = 8;
  const int64_t before = ScriptCalls(cli);
  ASSERT_GE(before, 0);
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(a->executions().CreateExecution(Record("s" + std::to_string(i))).ok());
  }
  int64_t created = ScriptCalls(cli);
  EXPECT_GE(created - before, kCount);
  EXPECT_LE(created - before, kCount + kMargin);
  // An execution's end and the stream it produces: one script too.
  for (int i = 0; i < kCount; ++i) {
    StreamRecord stream;
    stream.stream = "s" + std::to_string(i);
    ASSERT_TRUE(a->store().streams().CreateStream(stream).ok());
  }
  created = ScriptCalls(cli);
  for (int i = 0; i < kCount; ++i) {
    absl::Status stream;
    ASSERT_TRUE(a->store()
                    .CompleteExecutionAndStream("s" + std::to_string(i), {}, std::nullopt, stream)
                    .ok());
    ASSERT_TRUE(stream.ok()) << stream;
  }
  const int64_t completed = ScriptCalls(cli);
  EXPECT_GE(completed - created, kCount);
  EXPECT_LE(completed - created, kCount + kMargin);
  created = completed;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(a->executions().DeleteExecution("s" + std::to_string(i)).value());
  }
  const int64_t deleted = ScriptCalls(cli);
  EXPECT_GE(deleted - created, kCount);
  EXPECT_LE(deleted - created, kCount + kMargin);
  // What they wrote is what the general way writes: the conformance suite checks the rest.
  EXPECT_EQ(Cli({"EXISTS", Key(LocatorTag("s0"), "w")}).value(), "0\n");
}

TEST_P(ExecutionsProcessesTest, ADeadProcessLosesItsReservationWhenItsLeaseRunsOut) {
  constexpr auto kLease = 1000ms;
  auto a = Open(kLease);
  auto b = Open(kLease);
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(b->executions().TryReserve("e1", "w", "hb").value());
  EXPECT_FALSE(a->executions().TryReserve("e1", "w", "ha").value());

  // B dies without releasing: its lease is no longer renewed, nothing is deleted.
  b->redis().AbandonLeaseForTesting();
  const Clock::time_point died = Clock::now();
  b.reset();
  // Renewed a third of a lease ago at most, the lease still holds for a while.
  EXPECT_FALSE(a->executions().TryReserve("e1", "w", "ha").value());

  // A hears of the release once the lease has run out, and takes the reservation over.
  bool released = a->WaitForChange(
      [](const Change& change) { return IsRelease(change, "e1", "w"); }, kLease + 1s);
  ASSERT_TRUE(released) << "no release within the lease and a second";
  EXPECT_GE(Clock::now() - died, kLease / 2);
  EXPECT_TRUE(a->executions().TryReserve("e1", "w", "ha").value());
  absl::StatusOr<std::vector<ReservationRecord>> listed = a->executions().ListReservations("w", 10);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().holder, "ha");
}

TEST_P(ExecutionsProcessesTest, AProcessGoneBeforePublishingLeavesTheOthersAResync) {
  constexpr auto kLease = 1000ms;
  auto a = Open(kLease);
  auto b = Open(kLease);
  // B acknowledges a creation and dies before its change goes out on the bus.
  b->StopPublishing();
  ASSERT_TRUE(b->executions().CreateExecution(Record("e1")).ok());
  b->redis().AbandonLeaseForTesting();
  const Clock::time_point died = Clock::now();
  b.reset();
  // A never hears of e1; once B's lease has run out, its waiting calls are told to look again.
  ASSERT_TRUE(a->WaitForChange(
      [](const Change& change) { return change.kind == Change::Kind::kResync; }, kLease + 1s))
      << "no resync within the lease and a second";
  EXPECT_GE(Clock::now() - died, kLease / 2);
  EXPECT_EQ(a->redis().deaths_reported(), 1);
  EXPECT_FALSE(a->WaitForChange(
      [](const Change& change) {
        return change.kind == Change::Kind::kExecutionCreated && change.id == "e1";
      },
      0ms));
  // Looking again finds it.
  ExecutionFilter filter;
  filter.agent = "agent";
  absl::StatusOr<std::vector<std::string>> ids = a->executions().ListExecutionIds(filter, 10);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, std::vector<std::string>{"e1"});
}

TEST_P(ExecutionsProcessesTest, RefusalsByALiveProcessReadItsLeaseOncePerThirdOfALease) {
  // A lease far longer than the test: whatever A saw of B's lease stays fresh throughout.
  auto a = Open(60s);
  auto b = Open(60s);
  constexpr int kExecutions = 10;
  for (int i = 0; i < kExecutions; ++i) {
    const std::string id = "e" + std::to_string(i);
    ASSERT_TRUE(a->executions().CreateExecution(Record(id)).ok());
    ASSERT_TRUE(b->executions().TryReserve(id, "w", "hb").value());
  }
  for (int i = 0; i < kExecutions; ++i) {
    EXPECT_FALSE(a->executions().TryReserve("e" + std::to_string(i), "w", "ha").value());
  }
  EXPECT_EQ(a->redis().lease_lookups(), 1);
  EXPECT_EQ(a->redis().watched_holds(), static_cast<size_t>(kExecutions));
}

TEST_P(ExecutionsProcessesTest, ReleaseReportsTheRoutingFieldsOfTheExecution) {
  constexpr auto kLease = 1000ms;
  auto a = Open(kLease);
  auto b = Open(kLease);
  ExecutionRecord record = Record("e1", "inst-7");
  ASSERT_TRUE(a->executions().CreateExecution(record).ok());
  ASSERT_TRUE(b->executions().TryReserve("e1", "w", "hb").value());
  ASSERT_FALSE(a->executions().TryReserve("e1", "w", "ha").value());
  b->redis().AbandonLeaseForTesting();
  b.reset();
  Change seen;
  ASSERT_TRUE(a->WaitForChange(
      [&](const Change& change) {
        if (!IsRelease(change, "e1", "w")) return false;
        seen = change;
        return true;
      },
      kLease + 1s));
  EXPECT_EQ(seen.agent, "agent");
  EXPECT_EQ(seen.instance, "inst-7");
  EXPECT_EQ(seen.delegate, "Run");
}

TEST_P(ExecutionsProcessesTest, ACleanCloseHandsReservationsOverAtOnce) {
  // A lease far longer than the wait below: only the deleted lease can explain the release.
  auto a = Open(60s);
  auto b = Open(60s);
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(b->executions().TryReserve("e1", "w", "hb").value());
  ASSERT_FALSE(a->executions().TryReserve("e1", "w", "ha").value());
  b.reset();
  ASSERT_TRUE(a->WaitForChange([](const Change& c) { return IsRelease(c, "e1", "w"); }, 5s));
  EXPECT_TRUE(a->executions().TryReserve("e1", "w", "ha").value());
}

TEST_P(ExecutionsProcessesTest, AFinishedOrReleasedHoldIsNoLongerWatched) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(a->executions().CreateExecution(Record("e2")).ok());
  ASSERT_TRUE(b->executions().TryReserve("e1", "w", "hb").value());
  ASSERT_TRUE(b->executions().TryReserve("e2", "w", "hb").value());
  ASSERT_FALSE(a->executions().TryReserve("e1", "w", "ha").value());
  ASSERT_FALSE(a->executions().TryReserve("e2", "w", "ha").value());
  EXPECT_EQ(a->redis().watched_holds(), 2u);
  ASSERT_TRUE(a->executions().CompleteExecution("e1", {}, std::nullopt).ok());
  EXPECT_EQ(a->redis().watched_holds(), 1u);
  ASSERT_TRUE(b->executions().ReleaseReservation("e2", "w", "hb").ok());
  ASSERT_TRUE(a->executions().TryReserve("e2", "w", "ha").value());
  EXPECT_EQ(a->redis().watched_holds(), 0u);
}

TEST_P(ExecutionsProcessesTest, ACachedLocatorFollowsAnIdCreatedAgainElsewhere) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1", "first")).ok());
  ASSERT_EQ(b->executions().GetExecution("e1")->instance, "first");  // B caches the locator.
  ASSERT_TRUE(a->executions().DeleteExecution("e1").value());
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1", "second")).ok());
  absl::StatusOr<ExecutionRecord> record = b->executions().GetExecution("e1");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->instance, "second");
  EXPECT_TRUE(b->executions().TryReserve("e1", "w", "hb").value());
  EXPECT_TRUE(b->executions().CompleteExecution("e1", {"r"}, std::nullopt).ok());
  EXPECT_TRUE(a->executions().GetExecution("e1")->finished);
  // And once deleted by A, B's cached locator no longer finds it.
  ASSERT_TRUE(a->executions().DeleteExecution("e1").value());
  EXPECT_EQ(b->executions().GetExecution("e1").status().code(), absl::StatusCode::kNotFound);
  // Without an instance the execution has a slot of its own.
  ASSERT_TRUE(b->executions().CreateExecution(Record("e1", "")).ok());
  EXPECT_EQ(a->executions().GetExecution("e1")->instance, "");
}

TEST_P(ExecutionsProcessesTest, OnlyALocatorWithoutItsRecordGivesWayToAnotherAgent) {
  auto a = Open();
  auto b = Open();
  // What a create interrupted after its first step leaves: a locator naming another agent and
  // instance, and no record there (with no birth time: old).
  ASSERT_TRUE(Cli({"SET", Key(LocatorTag("e1"), "w"), "5:other11:{i:nowhere}"}).ok());
  EXPECT_TRUE(a->executions().CreateExecution(Record("e1")).value());
  EXPECT_EQ(b->executions().GetExecution("e1")->agent, "agent");
  // A fresh locator may be a create in progress elsewhere: it is not taken for debris.
  ASSERT_TRUE(
      Cli({"EVAL",
           "local t = redis.call('TIME') redis.call('SET', KEYS[1], ARGV[1]) "
           "redis.call('SET', KEYS[2], t[1] * 1000) return 1",
           "2", Key(LocatorTag("e2"), "w"), Key(LocatorTag("e2"), "wt"), "5:other11:{i:nowhere}"})
          .ok());
  EXPECT_EQ(a->executions().CreateExecution(Record("e2")).status().code(),
            absl::StatusCode::kAlreadyExists);
  // A live execution keeps its ID, whatever the other agent's instance.
  ExecutionRecord other = Record("e1", "");
  other.agent = "other";
  EXPECT_EQ(b->executions().CreateExecution(other).status().code(),
            absl::StatusCode::kAlreadyExists);
  other.instance = "inst";
  EXPECT_EQ(b->executions().CreateExecution(other).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_P(ExecutionsProcessesTest, AnInstanceSharesTheSlotOfItsStateDictionary) {
  auto a = Open();
  const std::string instance = "orders}{%-7";  // Characters the tag escapes.
  ASSERT_TRUE(a->executions().CreateExecution(Record("e1", instance)).ok());
  absl::StatusOr<std::pair<int, std::string>> slot = a->redis().SlotOfInstance(instance);
  ASSERT_TRUE(slot.ok()) << slot.status();
  EXPECT_EQ(slot->first, KeySlot(DictionaryTag(instance + "-")));
  // The server agrees: the record is stored in that slot, on that node.
  absl::StatusOr<std::string> keys =
      Cli({"CLUSTER", "GETKEYSINSLOT", std::to_string(slot->first), "100"}, slot->second);
  if (GetParam() == "redis_cluster") {
    ASSERT_TRUE(keys.ok()) << keys.status();
    EXPECT_THAT(*keys, ::testing::HasSubstr(":x:e1"));
  }
}

TEST_P(ExecutionsProcessesTest, ListingsGoOnPastWhatOneCallScansOrReads) {
  auto a = Open();
  // One script call scans at most 4096 entries: matches on both sides of that.
  auto create = [&](const std::string& id, const std::string& delegate) {
    ExecutionRecord record = Record(id);
    record.delegate = delegate;
    ASSERT_TRUE(a->executions().CreateExecution(record).ok());
  };
  create("first", "Run");
  for (int i = 0; i < 4200; ++i) create("other-" + std::to_string(i), "Other");
  create("second", "Run");
  create("third", "Run");
  ExecutionFilter by_agent;
  by_agent.agent = "agent";
  by_agent.delegate = "Run";
  ExecutionFilter by_instance = by_agent;
  by_instance.instance = "inst";
  for (const ExecutionFilter& filter : {by_agent, by_instance}) {
    absl::StatusOr<std::vector<std::string>> ids = a->executions().ListExecutionIds(filter, 10);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ::testing::ElementsAre("first", "second", "third"));
    ids = a->executions().ListExecutionIds(filter, 2);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ::testing::ElementsAre("first", "second"));
  }
  by_agent.delegate = "";
  absl::StatusOr<std::vector<std::string>> all =
      a->executions().ListExecutionIds(by_agent, std::numeric_limits<size_t>::max());
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 4203u);
  // Records are read a thousand per call.
  absl::StatusOr<std::vector<ExecutionRecord>> records =
      a->executions().ListExecutions(by_agent, std::numeric_limits<size_t>::max());
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4203u);
  EXPECT_EQ(records->at(2500).execution, "other-2499");
  EXPECT_EQ(records->back().execution, "third");
  EXPECT_EQ(records->back().delegate, "Run");
}

INSTANTIATE_TEST_SUITE_P(Backends, ExecutionsProcessesTest,
                         ::testing::Values(std::string("redis"), std::string("redis_cluster")),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace perper::storage::redis
