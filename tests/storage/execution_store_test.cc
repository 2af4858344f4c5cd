// SPDX-License-Identifier: MIT
// Conformance of ExecutionStore on every backend: put-if-absent creation, completion,
// deletion, creation order, reservations, reported changes and durability across Reopen().
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include <gmock/gmock.h>

#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::Change;
using storage::ExecutionFilter;
using storage::ExecutionRecord;
using storage::ExecutionStore;
using ::testing::ElementsAre;

ExecutionRecord Record(const std::string& id, const std::string& agent = "agent",
                       const std::string& instance = "inst", const std::string& delegate = "Do",
                       std::vector<std::string> arguments = {"a1", "a2"}) {
  ExecutionRecord record;
  record.execution = id;
  record.agent = agent;
  record.instance = instance;
  record.delegate = delegate;
  record.arguments = std::move(arguments);
  return record;
}

std::vector<std::string> Ids(const std::vector<ExecutionRecord>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.execution);
  return ids;
}

ExecutionFilter AgentFilter(const std::string& agent) {
  ExecutionFilter filter;
  filter.agent = agent;
  return filter;
}

class ExecutionStoreTest : public StoreTest {};

TEST_P(ExecutionStoreTest, CreateThenGetReturnsTheRecord) {
  auto& s = store().executions();
  ASSERT_EQ(s.CreateExecution(Record("e1")).value(), true);
  auto record = s.GetExecution("e1");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->execution, "e1");
  EXPECT_EQ(record->agent, "agent");
  EXPECT_EQ(record->instance, "inst");
  EXPECT_EQ(record->delegate, "Do");
  EXPECT_THAT(record->arguments, ElementsAre("a1", "a2"));
  EXPECT_FALSE(record->finished);
  EXPECT_FALSE(record->error.has_value());
  EXPECT_GT(record->sequence, 0u);
}

TEST_P(ExecutionStoreTest, IdenticalCreateIsAcceptedDifferentIsAlreadyExists) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).value());
  auto again = s.CreateExecution(Record("e1"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  auto different = s.CreateExecution(Record("e1", "agent", "inst", "Do", {"other"}));
  EXPECT_EQ(different.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(different.status().message()), ::testing::HasSubstr("e1"));
  auto other_delegate = s.CreateExecution(Record("e1", "agent", "inst", "Other"));
  EXPECT_EQ(other_delegate.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_P(ExecutionStoreTest, EmptyIdIsInvalid) {
  EXPECT_EQ(store().executions().CreateExecution(Record("")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(ExecutionStoreTest, UnknownExecutionIsNotFound) {
  auto& s = store().executions();
  EXPECT_EQ(s.GetExecution("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.CompleteExecution("nope", {}, std::nullopt).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.TryReserve("nope", "", "h").status().code(), absl::StatusCode::kNotFound);
  auto deleted = s.DeleteExecution("nope");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
}

TEST_P(ExecutionStoreTest, FirstCompletionWins) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(s.CompleteExecution("e1", {"r1"}, std::nullopt).ok());
  absl::Status second = s.CompleteExecution("e1", {"r2"}, "boom");
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.message()), ::testing::HasSubstr("e1"));
  auto record = s.GetExecution("e1");
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->finished);
  EXPECT_THAT(record->results, ElementsAre("r1"));
  EXPECT_FALSE(record->error.has_value());
}

// Ages and durations in listings: the store notes when it created and finished a record (in
// the store's clock: Redis's with the redis backend, so a few ms apart from this process's).
TEST_P(ExecutionStoreTest, CreationAndCompletionTimesAreKept) {
  auto& s = store().executions();
  const int64_t before = absl::ToUnixMillis(absl::Now()) - 1000;
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  auto created = s.GetExecution("e1");
  ASSERT_TRUE(created.ok());
  EXPECT_GE(created->created_ms, before);
  EXPECT_LE(created->created_ms, absl::ToUnixMillis(absl::Now()) + 1000);
  EXPECT_EQ(created->finished_ms, 0);
  ASSERT_TRUE(s.CompleteExecution("e1", {"r1"}, std::nullopt).ok());
  auto finished = s.GetExecution("e1");
  ASSERT_TRUE(finished.ok());
  EXPECT_EQ(finished->created_ms, created->created_ms);
  EXPECT_GE(finished->finished_ms, created->created_ms);
  EXPECT_LE(finished->finished_ms, absl::ToUnixMillis(absl::Now()) + 1000);
  auto listed = s.ListExecutions(AgentFilter("agent"), 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 0u);  // finished: not listed without include_finished
  ExecutionFilter all = AgentFilter("agent");
  all.include_finished = true;
  listed = s.ListExecutions(all, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].created_ms, created->created_ms);
  EXPECT_EQ((*listed)[0].finished_ms, finished->finished_ms);
}

TEST_P(ExecutionStoreTest, CompletionWithErrorKeepsTheError) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(s.CompleteExecution("e1", {}, "failed badly").ok());
  auto record = s.GetExecution("e1");
  ASSERT_TRUE(record.ok());
  ASSERT_TRUE(record->error.has_value());
  EXPECT_EQ(*record->error, "failed badly");
}

TEST_P(ExecutionStoreTest, ListFiltersAndKeepsCreationOrder) {
  auto& s = store().executions();
  // IDs whose byte order differs from creation order.
  for (const std::string id : {"z", "b", "y", "a", "x"}) {
    ASSERT_TRUE(s.CreateExecution(Record(id)).ok());
  }
  ASSERT_TRUE(s.CreateExecution(Record("other-agent", "agent2")).ok());
  ASSERT_TRUE(s.CreateExecution(Record("other-inst", "agent", "inst2")).ok());
  ASSERT_TRUE(s.CreateExecution(Record("other-del", "agent", "inst", "Else")).ok());
  ASSERT_TRUE(s.CompleteExecution("y", {}, std::nullopt).ok());

  ExecutionFilter filter = AgentFilter("agent");
  filter.instance = "inst";
  filter.delegate = "Do";
  EXPECT_THAT(Ids(s.ListExecutions(filter, 100).value()), ElementsAre("z", "b", "a", "x"));
  filter.include_finished = true;
  EXPECT_THAT(Ids(s.ListExecutions(filter, 100).value()), ElementsAre("z", "b", "y", "a", "x"));
  EXPECT_THAT(Ids(s.ListExecutions(filter, 2).value()), ElementsAre("z", "b"));
  EXPECT_THAT(Ids(s.ListExecutions(AgentFilter("agent"), 100).value()),
              ElementsAre("z", "b", "a", "x", "other-inst", "other-del"));
  ExecutionFilter any;
  any.any_agent = true;
  EXPECT_EQ(s.ListExecutions(any, 100).value().size(), 7u);
}

TEST_P(ExecutionStoreTest, ChangesCarryRoutingFields) {
  auto& s = store().executions();
  TakeChanges();
  ASSERT_TRUE(s.CreateExecution(Record("e1", "ag", "in", "de")).ok());
  ASSERT_FALSE(s.CreateExecution(Record("e1", "ag", "in", "de")).value());  // Nothing reported.
  ASSERT_TRUE(s.CompleteExecution("e1", {}, std::nullopt).ok());
  ASSERT_TRUE(s.DeleteExecution("e1").value());
  std::vector<Change> changes = TakeChanges();
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].kind, Change::Kind::kExecutionCreated);
  EXPECT_EQ(changes[1].kind, Change::Kind::kExecutionCompleted);
  EXPECT_EQ(changes[2].kind, Change::Kind::kExecutionDeleted);
  for (const Change& c : changes) {
    EXPECT_EQ(c.id, "e1");
    EXPECT_EQ(c.agent, "ag");
    EXPECT_EQ(c.instance, "in");
    EXPECT_EQ(c.delegate, "de");
  }
}

// An execution's end ends the stream it produces (same ID) with its error; the stream's own
// answer says whether there was one to complete.
TEST_P(ExecutionStoreTest, AnExecutionsEndCompletesTheStreamOfItsId) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("producer")).ok());
  ASSERT_TRUE(s.CreateExecution(Record("failing")).ok());
  ASSERT_TRUE(s.CreateExecution(Record("lone")).ok());
  for (const std::string stream : {"producer", "failing"}) {
    storage::StreamRecord record;
    record.stream = stream;
    ASSERT_TRUE(store().streams().CreateStream(record).ok());
  }
  TakeChanges();
  absl::Status stream;
  ASSERT_TRUE(store().CompleteExecutionAndStream("producer", {"r"}, std::nullopt, stream).ok());
  EXPECT_TRUE(stream.ok()) << stream;
  EXPECT_TRUE(store().streams().GetStream("producer").value().completed);
  EXPECT_FALSE(store().streams().GetStream("producer").value().error.has_value());
  EXPECT_TRUE(s.GetExecution("producer").value().finished);
  std::vector<Change> changes = TakeChanges();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].kind, Change::Kind::kExecutionCompleted);
  EXPECT_EQ(changes[1].kind, Change::Kind::kStreamCompleted);
  EXPECT_EQ(changes[1].id, "producer");

  ASSERT_TRUE(store().CompleteExecutionAndStream("failing", {}, "it broke", stream).ok());
  EXPECT_TRUE(stream.ok()) << stream;
  EXPECT_EQ(store().streams().GetStream("failing").value().error,
            std::optional<std::string>("it broke"));
  EXPECT_EQ(s.GetExecution("failing").value().error, std::optional<std::string>("it broke"));

  ASSERT_TRUE(store().CompleteExecutionAndStream("lone", {}, std::nullopt, stream).ok());
  EXPECT_EQ(stream.code(), absl::StatusCode::kNotFound) << stream;
  TakeChanges();
  // A second end is refused, and the stream is left as the first one left it.
  EXPECT_EQ(store().CompleteExecutionAndStream("producer", {}, "late", stream).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store().streams().GetStream("producer").value().error.has_value());
  EXPECT_EQ(store().CompleteExecutionAndStream("absent", {}, std::nullopt, stream).code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(TakeChanges().empty());
}

TEST_P(ExecutionStoreTest, OneHolderPerExecutionAndWorkgroup) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1", "ag")).ok());
  EXPECT_TRUE(s.TryReserve("e1", "w", "h1").value());
  EXPECT_TRUE(s.TryReserve("e1", "w", "h1").value());   // Already held by h1.
  EXPECT_FALSE(s.TryReserve("e1", "w", "h2").value());  // Another holder.
  EXPECT_TRUE(s.TryReserve("e1", "v", "h2").value());   // Another workgroup.
  auto listed = s.ListReservations("w", 10).value();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].execution, "e1");
  EXPECT_EQ(listed[0].holder, "h1");

  TakeChanges();
  s.ReleaseReservation("e1", "w", "h2");  // Not the holder: nothing happens.
  EXPECT_TRUE(TakeChanges().empty());
  EXPECT_FALSE(s.TryReserve("e1", "w", "h2").value());
  s.ReleaseReservation("e1", "w", "h1");
  std::vector<Change> changes = TakeChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, Change::Kind::kReservationReleased);
  EXPECT_EQ(changes[0].id, "e1");
  EXPECT_EQ(changes[0].workgroup, "w");
  EXPECT_EQ(changes[0].agent, "ag");
  EXPECT_TRUE(s.TryReserve("e1", "w", "h2").value());
}

TEST_P(ExecutionStoreTest, ReadAndReserveReservesOnlyWhatMatchesAndShowsIt) {
  using Outcome = ExecutionStore::ReserveOutcome;
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1", "ag", "in", "De", {"x", "y"})).ok());
  ExecutionFilter filter;
  filter.agent = "ag";
  filter.instance = "other";
  int visits = 0;
  auto ignore = [&](const ExecutionRecord&) { ++visits; };
  // Not matching: not reserved, so another holder still can.
  EXPECT_EQ(s.ReadAndReserve("e1", filter, "w", "h1", ignore).value(), Outcome::kSkipped);
  filter.instance = "in";
  filter.delegate = "Other";
  EXPECT_EQ(s.ReadAndReserve("e1", filter, "w", "h1", ignore).value(), Outcome::kSkipped);
  filter.delegate.clear();
  EXPECT_TRUE(s.ListReservations("w", 10).value().empty());

  ExecutionRecord seen;
  EXPECT_EQ(s.ReadAndReserve("e1", filter, "w", "h1",
                             [&](const ExecutionRecord& record) { seen = record; })
                .value(),
            Outcome::kReserved);
  EXPECT_EQ(seen.execution, "e1");
  EXPECT_EQ(seen.instance, "in");
  EXPECT_EQ(seen.delegate, "De");
  EXPECT_EQ(seen.arguments, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(seen.sequence, s.GetExecution("e1").value().sequence);
  EXPECT_FALSE(s.TryReserve("e1", "w", "h2").value());
  EXPECT_EQ(s.ReadAndReserve("e1", filter, "w", "h1", ignore).value(), Outcome::kReserved);
  EXPECT_EQ(s.ReadAndReserve("e1", filter, "w", "h2", ignore).value(), Outcome::kHeldByOther);

  ASSERT_TRUE(s.CompleteExecution("e1", {"r"}, std::nullopt).ok());
  EXPECT_EQ(s.ReadAndReserve("e1", filter, "v", "h1", ignore).value(), Outcome::kSkipped);
  EXPECT_EQ(s.ReadAndReserve("absent", filter, "w", "h1", ignore).value(), Outcome::kSkipped);
}

TEST_P(ExecutionStoreTest, ReadAndReserveManyAnswersEachAsReadAndReserveWould) {
  using Outcome = ExecutionStore::ReserveOutcome;
  auto& s = store().executions();
  for (const char* id : {"m1", "m2", "m3", "m4", "m5"}) {
    ASSERT_TRUE(s.CreateExecution(Record(id, "ag", "in", "De", {std::string(id) + "-arg"})).ok());
  }
  ASSERT_TRUE(s.CreateExecution(Record("other", "ag", "elsewhere", "De")).ok());
  ASSERT_TRUE(s.TryReserve("m2", "w", "h2").value());                // held by another
  ASSERT_TRUE(s.CompleteExecution("m3", {"r"}, std::nullopt).ok());  // finished
  ASSERT_TRUE(s.TryReserve("m4", "w", "h1").value());                // held already by h1
  ExecutionFilter filter;
  filter.agent = "ag";
  filter.instance = "in";
  // Twice the batch of a feed: the first read of an ID may cache what the second uses.
  for (int round = 0; round < 2; ++round) {
    std::map<size_t, ExecutionRecord> seen;
    std::vector<std::string> ids = {"m1", "m2", "m3", "m4", "absent", "other", "m5"};
    absl::StatusOr<std::vector<Outcome>> outcomes = s.ReadAndReserveMany(
        ids, filter, "w", "h1", [&](size_t i, const ExecutionRecord& record) { seen[i] = record; });
    ASSERT_TRUE(outcomes.ok()) << outcomes.status();
    EXPECT_EQ(*outcomes,
              (std::vector<Outcome>{Outcome::kReserved, Outcome::kHeldByOther, Outcome::kSkipped,
                                    Outcome::kReserved, Outcome::kSkipped, Outcome::kSkipped,
                                    Outcome::kReserved}))
        << "round " << round;
    for (size_t i : {0u, 3u, 6u}) {
      ASSERT_TRUE(seen.count(i)) << ids[i];
      EXPECT_EQ(seen[i].execution, ids[i]);
      EXPECT_EQ(seen[i].arguments, std::vector<std::string>{ids[i] + "-arg"});
      EXPECT_EQ(seen[i].sequence, s.GetExecution(ids[i]).value().sequence);
    }
  }
  std::vector<std::string> held;
  const std::vector<storage::ReservationRecord> reservations = s.ListReservations("w", 10).value();
  for (const storage::ReservationRecord& r : reservations) {
    held.push_back(r.execution + "/" + r.holder);
  }
  std::sort(held.begin(), held.end());
  EXPECT_EQ(held, (std::vector<std::string>{"m1/h1", "m2/h2", "m4/h1", "m5/h1"}));
  EXPECT_TRUE(
      s.ReadAndReserveMany({}, filter, "w", "h1", [](size_t, const ExecutionRecord&) {})->empty());
}

TEST_P(ExecutionStoreTest, DeleteDropsEveryReservation) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(s.TryReserve("e1", "w", "h1").value());
  ASSERT_TRUE(s.TryReserve("e1", "v", "h1").value());
  ASSERT_TRUE(s.DeleteExecution("e1").value());
  EXPECT_TRUE(s.ListReservations("w", 10).value().empty());
  EXPECT_TRUE(s.ListReservations("v", 10).value().empty());
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  EXPECT_TRUE(s.TryReserve("e1", "w", "h2").value());  // The old holder is gone.
}

TEST_P(ExecutionStoreTest, CompletionDropsEveryReservationAndNoneCanBeTaken) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(s.TryReserve("e1", "w", "h1").value());
  ASSERT_TRUE(s.TryReserve("e1", "v", "h1").value());
  TakeChanges();
  ASSERT_TRUE(s.CompleteExecution("e1", {"r"}, std::nullopt).ok());
  EXPECT_TRUE(s.ListReservations("w", 10).value().empty());
  EXPECT_TRUE(s.ListReservations("v", 10).value().empty());
  // Nobody could take a finished execution, so no release is reported.
  for (const Change& change : TakeChanges()) {
    EXPECT_NE(change.kind, Change::Kind::kReservationReleased);
  }
  absl::StatusOr<bool> reserved = s.TryReserve("e1", "w", "h2");
  EXPECT_EQ(reserved.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(s.ListReservations("w", 10).value().empty());
  s.ReleaseReservation("e1", "w", "h1");  // The old holder's release is a no-op.
  EXPECT_TRUE(TakeChanges().empty());
}

TEST_P(ExecutionStoreTest, RecreatedIdGetsALaterSequence) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  uint64_t first = s.GetExecution("e1")->sequence;
  ASSERT_TRUE(s.DeleteExecution("e1").value());
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  EXPECT_GT(s.GetExecution("e1")->sequence, first);
}

// Restart and reopen tests need a durable backend.
class ExecutionStoreDurabilityTest : public ExecutionStoreTest {};

TEST_P(ExecutionStoreDurabilityTest, CreatedCompletedAndDeletedSurviveReopen) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("open", "ag", "in", "de", {"x", ""})).ok());
  ASSERT_TRUE(s.CreateExecution(Record("done")).ok());
  ASSERT_TRUE(s.CompleteExecution("done", {"r1", "r2"}, std::nullopt).ok());
  ASSERT_TRUE(s.CreateExecution(Record("failed")).ok());
  ASSERT_TRUE(s.CompleteExecution("failed", {}, "bad").ok());
  ASSERT_TRUE(s.CreateExecution(Record("gone")).ok());
  ASSERT_TRUE(s.DeleteExecution("gone").value());
  Reopen();
  auto& r = store().executions();
  auto open = r.GetExecution("open");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->agent, "ag");
  EXPECT_EQ(open->instance, "in");
  EXPECT_EQ(open->delegate, "de");
  EXPECT_THAT(open->arguments, ElementsAre("x", ""));
  EXPECT_FALSE(open->finished);
  EXPECT_GT(open->created_ms, 0);
  auto done = r.GetExecution("done");
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->finished);
  EXPECT_THAT(done->results, ElementsAre("r1", "r2"));
  EXPECT_GE(done->finished_ms, done->created_ms);
  EXPECT_GT(done->created_ms, 0);
  EXPECT_FALSE(done->error.has_value());
  auto failed = r.GetExecution("failed");
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->error.value_or(""), "bad");
  EXPECT_EQ(r.GetExecution("gone").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.CompleteExecution("done", {}, std::nullopt).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(ExecutionStoreDurabilityTest, CreationOrderContinuesAfterReopen) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("c")).ok());
  ASSERT_TRUE(s.CreateExecution(Record("a")).ok());
  Reopen();
  auto& r = store().executions();
  ASSERT_TRUE(r.CreateExecution(Record("b")).ok());
  EXPECT_THAT(Ids(r.ListExecutions(AgentFilter("agent"), 10).value()), ElementsAre("c", "a", "b"));
  EXPECT_GT(r.GetExecution("b")->sequence, r.GetExecution("a")->sequence);
}

TEST_P(ExecutionStoreDurabilityTest, ReservationsAreNotDurable) {
  auto& s = store().executions();
  ASSERT_TRUE(s.CreateExecution(Record("e1")).ok());
  ASSERT_TRUE(s.TryReserve("e1", "w", "h1").value());
  Reopen();
  auto& r = store().executions();
  EXPECT_TRUE(r.ListReservations("w", 10).value().empty());
  EXPECT_TRUE(r.TryReserve("e1", "w", "h2").value());
}

INSTANTIATE_TEST_SUITE_P(Backends, ExecutionStoreTest, StoreBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, ExecutionStoreDurabilityTest, DurableBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
