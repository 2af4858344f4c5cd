// SPDX-License-Identifier: MIT
// ListenAndReserve and Reserve over real gRPC: credits, one holder per (execution, workgroup),
// hand-over when a call ends, spread over members, and the interlock between the two RPCs.
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

#include "tests/integration/executions_helpers.h"

namespace perper::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ReservationsTest : public FabricTest {
 protected:
  storage::ExecutionStore& StoreExecutions() { return fabric().server().store().executions(); }
  std::set<std::string> Reserved(const std::string& workgroup) {
    std::set<std::string> ids;
    for (const auto& r : Ok(StoreExecutions().ListReservations(workgroup, 1000)))
      ids.insert(r.execution);
    return ids;
  }
};

// Reads every message of a ReserveCall on its own thread.
class Collector {
 public:
  explicit Collector(ReserveCall& call) : call_(call) {
    thread_ = std::thread([this] {
      grpc2::ExecutionsListenResponse response;
      while (call_.Read(&response)) {
        if (response.start_of_stream()) continue;
        absl::MutexLock lock(&mu_);
        ids_.push_back(response.execution().execution() + (response.deleted() ? "-deleted" : ""));
      }
    });
  }
  ~Collector() { Stop(); }
  void Stop() {
    if (thread_.joinable()) {
      call_.TryCancel();
      thread_.join();
      call_.Cancel();
    }
  }
  std::vector<std::string> ids() {
    absl::MutexLock lock(&mu_);
    return ids_;
  }

 private:
  ReserveCall& call_;
  absl::Mutex mu_;
  std::vector<std::string> ids_;
  std::thread thread_;
};

TEST_P(ReservationsTest, FirstMessageMustCarryAFilterWithAnAgent) {
  auto stub = Executions();
  {
    auto context = Context();
    auto stream = stub->ListenAndReserve(context.get());
    grpc2::ExecutionsListenAndReserveRequest no_filter;
    no_filter.set_reserve_next(1);
    stream->Write(no_filter);
    grpc2::ExecutionsListenResponse response;
    EXPECT_FALSE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("filter"));
  }
  {
    ReserveCall call(*stub, "", 1);
    grpc2::ExecutionsListenResponse response;
    EXPECT_FALSE(call.Read(&response));
    grpc::Status status = call.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("filter.instance_filter.agent"));
  }
}

TEST_P(ReservationsTest, StartOfStreamComesOnceAfterTheInitialScan) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(CreateExecution(*stub, "e2", "ag", "in", "Do").ok());
  ReserveCall call(*stub, "ag", 10);
  std::vector<std::string> got;
  grpc2::ExecutionsListenResponse response;
  while (got.size() < 4 && call.Read(&response)) {
    got.push_back(response.start_of_stream() ? "start" : response.execution().execution());
    if (got.size() == 3) {
      ASSERT_TRUE(CreateExecution(*stub, "e3", "ag", "in", "Do").ok());
    }
  }
  EXPECT_THAT(got, ElementsAre("e1", "e2", "start", "e3"));
}

TEST_P(ReservationsTest, DeliversNoMoreThanTheCreditsGranted) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 2, "w");
  for (const std::string id : {"e1", "e2", "e3"}) {
    ASSERT_TRUE(CreateExecution(*stub, id, "ag", "in", "Do").ok());
  }
  EXPECT_EQ(call.NextExecution(), "e1");
  EXPECT_EQ(call.NextExecution(), "e2");
  EXPECT_EQ(Reserved("w"), (std::set<std::string>{"e1", "e2"}));  // e3 waits for a credit.
  ASSERT_TRUE(call.Grant(1));
  EXPECT_EQ(call.NextExecution(), "e3");
  EXPECT_EQ(Reserved("w"), (std::set<std::string>{"e1", "e2", "e3"}));
}

TEST_P(ReservationsTest, DeletionIsSignalledAndGivesNoCreditBack) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 1, "w");
  call.ExpectStart();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(call.NextExecution(), "e1");
  ASSERT_TRUE(DeleteExecution(*stub, "e1").ok());
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(call.Read(&response));
  EXPECT_EQ(response.execution().execution(), "e1");
  EXPECT_TRUE(response.deleted());
  ASSERT_TRUE(CreateExecution(*stub, "e2", "ag", "in", "Do").ok());
  EXPECT_TRUE(Reserved("w").empty());  // No credit left: e2 is not taken.
  ASSERT_TRUE(call.Grant(1));
  EXPECT_EQ(call.NextExecution(), "e2");
}

TEST_P(ReservationsTest, EachExecutionGoesToOneMemberOfAWorkgroup) {
  constexpr int kCount = 40;
  auto stub = Executions();
  ReserveCall a(*stub, "ag", 100, "w");
  ReserveCall b(*stub, "ag", 100, "w");
  ReserveCall other_group(*stub, "ag", 100, "v");
  a.ExpectStart();
  b.ExpectStart();
  other_group.ExpectStart();
  Collector ca(a), cb(b), cv(other_group);
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(CreateExecution(*stub, "e" + std::to_string(i), "ag", "in", "Do").ok());
  }
  ASSERT_TRUE(WaitFor(
      [&] { return ca.ids().size() + cb.ids().size() == kCount && cv.ids().size() == kCount; }));
  std::set<std::string> all;
  for (const auto& id : ca.ids()) EXPECT_TRUE(all.insert(id).second) << id;
  for (const auto& id : cb.ids()) EXPECT_TRUE(all.insert(id).second) << id;
  EXPECT_EQ(all.size(), static_cast<size_t>(kCount));
  // Spread: both members with credits received work.
  EXPECT_GT(ca.ids().size(), 0u);
  EXPECT_GT(cb.ids().size(), 0u);
  EXPECT_EQ(Reserved("w").size(), static_cast<size_t>(kCount));
}

TEST_P(ReservationsTest, TwoMembersWithOneCreditEachBothGetWork) {
  auto stub = Executions();
  ReserveCall a(*stub, "ag", 1);
  ReserveCall b(*stub, "ag", 1);
  a.ExpectStart();
  b.ExpectStart();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(CreateExecution(*stub, "e2", "ag", "in", "Do").ok());
  std::set<std::string> got{a.NextExecution(), b.NextExecution()};
  EXPECT_EQ(got, (std::set<std::string>{"e1", "e2"}));
}

TEST_P(ReservationsTest, ExecutionsOfAnEndedCallGoToAnotherMember) {
  auto stub = Executions();
  auto a = std::make_unique<ReserveCall>(*stub, "ag", 10, "w");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(a->NextExecution(), "e1");
  ReserveCall b(*stub, "ag", 10, "w");
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(b.Read(&response));
  EXPECT_TRUE(response.start_of_stream());  // e1 is held by a, so b gets nothing yet.
  a.reset();                                // The call ends: a's reservations are released.
  ASSERT_TRUE(b.Read(&response));
  EXPECT_EQ(response.execution().execution(), "e1");
  EXPECT_FALSE(response.deleted());
}

TEST_P(ReservationsTest, FinishedExecutionsAreNotDispatchedAgain) {
  auto stub = Executions();
  auto a = std::make_unique<ReserveCall>(*stub, "ag", 10, "w");
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_EQ(a->NextExecution(), "e1");
  ReserveCall b(*stub, "ag", 10, "w");
  ASSERT_TRUE(CompleteExecution(*stub, "e1").ok());
  a.reset();
  ASSERT_TRUE(CreateExecution(*stub, "sentinel", "ag", "in", "Do").ok());
  EXPECT_EQ(b.NextExecution(), "sentinel");
}

TEST_P(ReservationsTest, HalfCloseDoesNotEndTheCall) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 5);
  ASSERT_TRUE(call.stream().WritesDone());
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  EXPECT_EQ(call.NextExecution(), "e1");
}

TEST_P(ReservationsTest, FiltersByInstanceAndDelegate) {
  auto stub = Executions();
  ReserveCall call(*stub, "ag", 10, "", "Run", "i1");
  ASSERT_TRUE(CreateExecution(*stub, "x1", "ag", "i2", "Run").ok());
  ASSERT_TRUE(CreateExecution(*stub, "x2", "ag", "i1", "Stop").ok());
  ASSERT_TRUE(CreateExecution(*stub, "x3", "ag", "i1", "Run").ok());
  EXPECT_EQ(call.NextExecution(), "x3");
}

// --- Reserve --------------------------------------------------------------------------------

class ReserveStream {
 public:
  ReserveStream(grpc2::FabricExecutions::Stub& stub, const std::string& execution,
                const std::string& workgroup)
      : context_(Context()) {
    grpc2::ExecutionsReserveRequest request;
    request.mutable_execution()->set_execution(execution);
    request.set_workgroup(workgroup);
    reader_ = stub.Reserve(context_.get(), request);
  }
  ~ReserveStream() { End(); }
  bool Held() {
    google::protobuf::Empty empty;
    return reader_->Read(&empty);
  }
  grpc::Status Finish() {
    ended_ = true;
    return reader_->Finish();
  }
  void End() {
    if (ended_) return;
    ended_ = true;
    context_->TryCancel();
    google::protobuf::Empty empty;
    while (reader_->Read(&empty)) {
    }
    (void)reader_->Finish();
  }

 private:
  bool ended_ = false;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<google::protobuf::Empty>> reader_;
};

TEST_P(ReservationsTest, ReserveRejectsUnknownFinishedAndEmpty) {
  auto stub = Executions();
  {
    ReserveStream unknown(*stub, "nope", "w");
    EXPECT_FALSE(unknown.Held());
    grpc::Status status = unknown.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(status.error_message(), HasSubstr("nope"));
  }
  {
    ReserveStream empty(*stub, "", "w");
    EXPECT_FALSE(empty.Held());
    EXPECT_EQ(empty.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ASSERT_TRUE(CompleteExecution(*stub, "e1").ok());
  {
    ReserveStream finished(*stub, "e1", "w");
    EXPECT_FALSE(finished.Held());
    grpc::Status status = finished.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("e1"));
  }
}

TEST_P(ReservationsTest, ReserveWaitsForTheHolderAndHoldsUntilTheCallEnds) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  auto first = std::make_unique<ReserveStream>(*stub, "e1", "w");
  ASSERT_TRUE(first->Held());
  ASSERT_EQ(Reserved("w").size(), 1u);
  std::string first_holder = StoreExecutions().ListReservations("w", 10).value()[0].holder;
  ReserveStream other_group(*stub, "e1", "v");
  EXPECT_TRUE(other_group.Held());  // Another workgroup is independent.
  ReserveStream second(*stub, "e1", "w");
  // The second waits: the holder is still the first.
  EXPECT_EQ(StoreExecutions().ListReservations("w", 10).value()[0].holder, first_holder);
  first.reset();
  EXPECT_TRUE(second.Held());
  auto now = StoreExecutions().ListReservations("w", 10).value();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0].holder, first_holder);
}

TEST_P(ReservationsTest, ReserveAndListenAndReserveInterlock) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  auto held = std::make_unique<ReserveStream>(*stub, "e1", "w");
  ASSERT_TRUE(held->Held());
  ReserveCall member(*stub, "ag", 5, "w");
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(member.Read(&response));
  EXPECT_TRUE(response.start_of_stream());  // e1 is held by Reserve.
  held.reset();
  EXPECT_EQ(member.NextExecution(), "e1");
  // And the other way round: Reserve waits while the member holds it.
  ReserveStream waiting(*stub, "e1", "w");
  member.Cancel();
  EXPECT_TRUE(waiting.Held());
}

TEST_P(ReservationsTest, ReserveEndsWhenTheExecutionIsDeletedWhileWaiting) {
  auto stub = Executions();
  ASSERT_TRUE(CreateExecution(*stub, "e1", "ag", "in", "Do").ok());
  ReserveStream first(*stub, "e1", "w");
  ASSERT_TRUE(first.Held());
  ReserveStream second(*stub, "e1", "w");
  ASSERT_TRUE(DeleteExecution(*stub, "e1").ok());
  EXPECT_FALSE(second.Held());
  EXPECT_EQ(second.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(first.Held());
  EXPECT_TRUE(first.Finish().ok());  // Nothing left to hold.
}

INSTANTIATE_TEST_SUITE_P(Backends, ReservationsTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
