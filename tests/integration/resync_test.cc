// SPDX-License-Identifier: MIT
// Change::Kind::kResync over a real Fabric: when notifications may have been lost (a store
// shared by several Fabric processes lost its change subscription), every waiting call re-reads
// the store and sees what it missed. The tests lose notifications on purpose (a gate between
// the store and the hub drops them), change the store, then inject kResync into the hub.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/fabric/change_hub.h"
#include "perper/storage/change.h"
#include "perper/storage/store.h"
#include "tests/integration/executions_helpers.h"
#include "tests/integration/stream_test_helpers.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using storage::Change;

Change ResyncChange() {
  Change change;
  change.kind = Change::Kind::kResync;
  return change;
}

// Forwards the store's changes to the hub, or drops them while closed: notifications lost.
class LossyGate final : public storage::ChangeObserver {
 public:
  explicit LossyGate(storage::ChangeObserver* hub) : hub_(hub) {}
  void OnChange(const Change& change) override {
    if (open_.load()) hub_->OnChange(change);
  }
  void Close() { open_.store(false); }
  void Open() { open_.store(true); }

 private:
  storage::ChangeObserver* const hub_;
  std::atomic<bool> open_{true};
};

// A closed gate for the scope of a block: whatever the block changes is never notified.
class Lost {
 public:
  explicit Lost(LossyGate& gate) : gate_(gate) { gate_.Close(); }
  ~Lost() { gate_.Open(); }

 private:
  LossyGate& gate_;
};

class ResyncTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(fabric::FabricLimits()); }

  void Start(const fabric::FabricLimits& limits) {
    fabric_.reset();
    fabric_ = std::make_unique<InProcessFabric>("memory", limits);
    gate_ = std::make_unique<LossyGate>(&hub());
    store().SetObserver(gate_.get());
    channel_ = fabric_->NewChannel();
    executions_ = grpc2::FabricExecutions::NewStub(channel_);
    streams_ = grpc2::FabricStreams::NewStub(channel_);
  }

  fabric::ChangeHub& hub() { return fabric_->server().hub(); }
  storage::Store& store() { return fabric_->server().store(); }
  void Resync() { hub().OnChange(ResyncChange()); }
  // Waits until `n` calls are subscribed to the hub, i.e. are waiting for hints.
  bool WaitForSubscriptions(size_t n) {
    return WaitFor([&] { return hub().SubscriptionCountForTest() == n; });
  }

  // A GetResult call on another thread.
  std::future<grpc2::ExecutionsGetResultResponse> GetResultAsync(const std::string& id,
                                                                 bool wait_for_creation) {
    return std::async(std::launch::async, [this, id, wait_for_creation] {
      grpc2::ExecutionsGetResultRequest request;
      request.mutable_execution()->set_execution(id);
      request.set_wait_for_creation(wait_for_creation);
      grpc2::ExecutionsGetResultResponse response;
      grpc::Status status = executions_->GetResult(Context().get(), request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      return response;
    });
  }
  // Expects the call to answer, soon, with the one result `value`.
  static void ExpectResult(std::future<grpc2::ExecutionsGetResultResponse>& result, int64_t value) {
    ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    grpc2::ExecutionsGetResultResponse response = result.get();
    EXPECT_FALSE(response.deleted());
    ASSERT_EQ(response.results_size(), 1);
    EXPECT_EQ(IntOf(response.results(0)), value);
  }

  std::unique_ptr<LossyGate> gate_;  // Declared first: outlives the Fabric.
  std::unique_ptr<InProcessFabric> fabric_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc2::FabricExecutions::Stub> executions_;
  std::unique_ptr<grpc2::FabricStreams::Stub> streams_;
};

TEST(ChangeHubResyncTest, ReachesEverySubscriberOfEveryTopicOnce) {
  fabric::ChangeHub hub;
  std::atomic<int> first{0}, second{0}, third{0};
  auto count = [](std::atomic<int>& n) {
    return std::make_shared<fabric::GuardedSubscriber>([&n](const Change& change) {
      if (change.kind == Change::Kind::kResync) ++n;
    });
  };
  auto a = count(first);
  auto b = count(second);
  auto c = count(third);
  auto s1 = hub.Subscribe(fabric::Topic::kAgentExecutions, "agent", a);
  auto s2 = hub.Subscribe(fabric::Topic::kExecution, "e1", b);
  auto s3 = hub.Subscribe(fabric::Topic::kStream, "s", c);
  auto s4 = hub.Subscribe(fabric::Topic::kStreamListeners, "s", c);  // The same subscriber.
  hub.OnChange(ResyncChange());
  EXPECT_EQ(first.load(), 1);
  EXPECT_EQ(second.load(), 1);
  EXPECT_EQ(third.load(), 1);
}

TEST_F(ResyncTest, ListenSeesMissedCreationAndDeletionAndNothingTwice) {
  ASSERT_TRUE(CreateExecution(*executions_, "e1", "A", "i", "run").ok());
  ListenCall listen(*executions_, "A");
  EXPECT_THAT(listen.ReadInitial(), ::testing::ElementsAre("e1"));
  {
    Lost lost(*gate_);
    ASSERT_TRUE(CreateExecution(*executions_, "e2", "A", "i", "run").ok());
    ASSERT_TRUE(DeleteExecution(*executions_, "e1").ok());
  }
  Resync();
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    grpc2::ExecutionsListenResponse response;
    ASSERT_TRUE(listen.Read(&response));
    seen.insert(response.execution().execution() + (response.deleted() ? "-deleted" : ""));
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("e1-deleted", "e2"));
  // A second resync finds nothing new: the next message is the next real change.
  Resync();
  ASSERT_TRUE(CreateExecution(*executions_, "e3", "A", "i", "run").ok());
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(listen.Read(&response));
  EXPECT_EQ(response.execution().execution(), "e3");
  EXPECT_FALSE(response.deleted());
}

TEST_F(ResyncTest, ListenAndReserveRetriesAReservationWhoseReleaseWasMissed) {
  ASSERT_TRUE(CreateExecution(*executions_, "e1", "A", "i", "run").ok());
  ASSERT_TRUE(store().executions().TryReserve("e1", "wg", "other-holder").value());
  ReserveCall call(*executions_, "A", /*credits=*/1, "wg");
  // The scan tried e1 before start_of_stream: the call now waits for its release.
  call.ExpectStart();
  {
    Lost lost(*gate_);
    ASSERT_TRUE(store().executions().ReleaseReservation("e1", "wg", "other-holder").ok());
  }
  Resync();
  EXPECT_EQ(call.NextExecution(), "e1");
}

TEST_F(ResyncTest, ListenAndReserveSeesAMissedCreation) {
  ReserveCall call(*executions_, "A", /*credits=*/1, "wg");
  call.ExpectStart();
  {
    Lost lost(*gate_);
    ASSERT_TRUE(CreateExecution(*executions_, "e1", "A", "i", "run").ok());
  }
  Resync();
  EXPECT_EQ(call.NextExecution(), "e1");
}

TEST_F(ResyncTest, ReserveRetriesWhenTheReleaseWasMissed) {
  ASSERT_TRUE(CreateExecution(*executions_, "e1", "A", "i", "run").ok());
  ASSERT_TRUE(store().executions().TryReserve("e1", "wg", "other-holder").value());
  auto context = Context();
  grpc2::ExecutionsReserveRequest request;
  request.mutable_execution()->set_execution("e1");
  request.set_workgroup("wg");
  auto reader = executions_->Reserve(context.get(), request);
  ASSERT_TRUE(WaitForSubscriptions(1));
  {
    Lost lost(*gate_);
    ASSERT_TRUE(store().executions().ReleaseReservation("e1", "wg", "other-holder").ok());
  }
  Resync();
  google::protobuf::Empty held;
  EXPECT_TRUE(reader->Read(&held));  // Held by this call now.
  context->TryCancel();
  (void)reader->Finish();
}

TEST_F(ResyncTest, GetResultSeesAMissedCompletion) {
  ASSERT_TRUE(CreateExecution(*executions_, "e1", "A", "i", "run").ok());
  auto result = GetResultAsync("e1", /*wait_for_creation=*/false);
  ASSERT_TRUE(WaitForSubscriptions(1));
  {
    Lost lost(*gate_);
    ASSERT_TRUE(CompleteExecution(*executions_, "e1", {Int64Value(7)}).ok());
  }
  Resync();
  ExpectResult(result, 7);
}

TEST_F(ResyncTest, ResyncDoesNotCountAsSeenForWaitForCreation) {
  auto result = GetResultAsync("late", /*wait_for_creation=*/true);
  ASSERT_TRUE(WaitForSubscriptions(1));
  // Not created yet: a resync must not make the waiter report it deleted.
  Resync();
  ASSERT_TRUE(CreateExecution(*executions_, "late", "A", "i", "run").ok());
  ASSERT_TRUE(CompleteExecution(*executions_, "late", {Int64Value(5)}).ok());
  ExpectResult(result, 5);
}

TEST_F(ResyncTest, ListenItemsSeesMissedItemsAndAMissedDeletion) {
  ASSERT_TRUE(CreateStream(*streams_, "s", /*ephemeral=*/false).ok());
  ASSERT_TRUE(WriteKeys(*streams_, "s", {1}).ok());
  Listen listen(*streams_, ListenRequest("s"));
  ASSERT_EQ(listen.NextKey(), 1);
  {
    Lost lost(*gate_);
    ASSERT_TRUE(WriteKeys(*streams_, "s", {2, 3}).ok());
  }
  Resync();
  EXPECT_THAT(listen.NextKeys(2), ::testing::ElementsAre(2, 3));
  {
    Lost lost(*gate_);
    ASSERT_TRUE(DeleteStream(*streams_, "s").ok());
  }
  Resync();
  grpc::Status status = listen.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << Message(status);
  EXPECT_TRUE(listen.extra_keys().empty());
}

TEST_F(ResyncTest, WaitForListenerSeesAMissedListener) {
  ASSERT_TRUE(CreateStream(*streams_, "s", /*ephemeral=*/true).ok());
  auto waited = std::async(std::launch::async, [&] { return WaitForListener(*streams_, "s"); });
  ASSERT_TRUE(WaitForSubscriptions(1));
  {
    Lost lost(*gate_);
    ASSERT_TRUE(MoveListener(*streams_, "s", "late", 0).ok());
  }
  Resync();
  ASSERT_EQ(waited.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  grpc::Status status = waited.get();
  EXPECT_TRUE(status.ok()) << Message(status);
}

TEST_F(ResyncTest, HeldWriteSeesAMissedListenerMove) {
  constexpr size_t kLimit = 16 * 1024;
  fabric::FabricLimits limits;
  limits.max_stream_retained_bytes = kLimit;
  limits.stream_write_wait = std::chrono::seconds(20);
  Start(limits);
  ASSERT_TRUE(CreateStream(*streams_, "s", /*ephemeral=*/true).ok());
  ASSERT_TRUE(MoveListener(*streams_, "s", "slow", 0).ok());
  // Fill the stream until a write is refused, then hold one.
  auto value = BytesValue(std::string(1000, 'v'));
  int64_t key = 0;
  for (;;) {
    ++key;
    auto summary = store().streams().ListStreams("s", 1);
    ASSERT_TRUE(summary.ok() && summary->size() == 1u);
    if ((*summary)[0].retained_bytes + storage::RetainedBytes(value.SerializeAsString()) > kLimit)
      break;
    ASSERT_TRUE(WriteItem(*streams_, "s", key, value).ok());
  }
  auto held = std::async(std::launch::async, [&] { return WriteItem(*streams_, "s", key, value); });
  ASSERT_TRUE(WaitForSubscriptions(1));  // The held write waits for listener changes.
  {
    Lost lost(*gate_);
    ASSERT_TRUE(MoveListener(*streams_, "s", "slow", key - 1).ok());
  }
  Resync();
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  grpc::Status status = held.get();
  EXPECT_TRUE(status.ok()) << Message(status);
}

}  // namespace
}  // namespace perper::testing
