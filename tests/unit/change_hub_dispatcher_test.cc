// SPDX-License-Identifier: MIT
// ChangeHub's dispatcher: with it, OnChange returns before subscribers run, each subscriber hears
// its changes in order while a busy one does not hold the others, a writer waits for room but a
// delivery that writes never does, and nothing is delivered once it stopped.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include <gtest/gtest.h>

#include "perper/fabric/change_hub.h"

namespace perper::fabric {
namespace {

using storage::Change;

Change ItemsWritten(const std::string& stream, int64_t key = 0) {
  Change change;
  change.kind = Change::Kind::kStreamItemsWritten;
  change.id = stream;
  change.key = key;
  return change;
}

// Records the streams of the changes it hears; the first delivery waits for `release`.
class Recorder {
 public:
  std::shared_ptr<GuardedSubscriber> subscriber() {
    return std::make_shared<GuardedSubscriber>([this](const Change& change) {
      release_.WaitForNotification();
      absl::MutexLock lock(&mu_);
      seen_.push_back(change.id);
      keys_.push_back(change.key);
      thread_ = std::this_thread::get_id();
    });
  }
  void Release() { release_.Notify(); }
  bool WaitForCount(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }
  std::vector<std::string> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  std::vector<int64_t> keys() {
    absl::MutexLock lock(&mu_);
    return keys_;
  }
  std::thread::id thread() {
    absl::MutexLock lock(&mu_);
    return thread_;
  }

 private:
  absl::Notification release_;
  absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> keys_ ABSL_GUARDED_BY(mu_);
  std::thread::id thread_ ABSL_GUARDED_BY(mu_);
};

TEST(ChangeHubDispatcherTest, WithoutItSubscribersRunOnTheCommittingThread) {
  ChangeHub hub;
  Recorder recorder;
  recorder.Release();
  auto subscription = hub.Subscribe(Topic::kStream, "s", recorder.subscriber());
  hub.OnChange(ItemsWritten("s"));
  EXPECT_EQ(recorder.seen(), std::vector<std::string>{"s"});
  EXPECT_EQ(recorder.thread(), std::this_thread::get_id());
}

TEST(ChangeHubDispatcherTest, OnChangeReturnsWhileSubscribersAreBusyAndEachHearsInOrder) {
  ChangeHub hub;
  hub.StartDispatcher();
  Recorder a_recorder, b_recorder;
  auto a = hub.Subscribe(Topic::kStream, "a", a_recorder.subscriber());
  auto b = hub.Subscribe(Topic::kStream, "b", b_recorder.subscriber());
  // The subscribers block until released: these return all the same.
  for (int i = 0; i < 50; ++i) hub.OnChange(ItemsWritten(i % 2 == 0 ? "a" : "b", i));
  EXPECT_TRUE(a_recorder.seen().empty());
  EXPECT_TRUE(b_recorder.seen().empty());
  a_recorder.Release();
  b_recorder.Release();
  ASSERT_TRUE(a_recorder.WaitForCount(25));
  ASSERT_TRUE(b_recorder.WaitForCount(25));
  std::vector<int64_t> a_expected, b_expected;
  for (int i = 0; i < 50; ++i) (i % 2 == 0 ? a_expected : b_expected).push_back(i);
  EXPECT_EQ(a_recorder.keys(), a_expected);
  EXPECT_EQ(b_recorder.keys(), b_expected);
  EXPECT_NE(a_recorder.thread(), std::this_thread::get_id());
}

TEST(ChangeHubDispatcherTest, ABusySubscriberDoesNotHoldAnother) {
  ChangeHub hub;
  hub.StartDispatcher();
  Recorder busy, free;
  free.Release();
  auto a = hub.Subscribe(Topic::kStream, "a", busy.subscriber());
  auto b = hub.Subscribe(Topic::kStream, "b", free.subscriber());
  hub.OnChange(ItemsWritten("a"));  // Blocks its delivery until released.
  hub.OnChange(ItemsWritten("b"));
  ASSERT_TRUE(free.WaitForCount(1)) << "the second subscriber waited for the first";
  EXPECT_TRUE(busy.seen().empty());
  busy.Release();
  EXPECT_TRUE(busy.WaitForCount(1));
}

TEST(ChangeHubDispatcherTest, ADeliveryThatWritesNeverWaitsForRoom) {
  ChangeHub hub;
  hub.StartDispatcher(/*max_queued=*/1);
  Recorder recorder;
  recorder.Release();
  auto t = hub.Subscribe(Topic::kStream, "t", recorder.subscriber());
  // Each change on "s" commits three on "t" from within its delivery: past the bound of 1.
  auto writer = std::make_shared<GuardedSubscriber>([&hub](const Change& change) {
    for (int i = 0; i < 3; ++i) hub.OnChange(ItemsWritten("t", change.key * 3 + i));
  });
  auto s = hub.Subscribe(Topic::kStream, "s", writer);
  for (int i = 0; i < 5; ++i) hub.OnChange(ItemsWritten("s", i));
  ASSERT_TRUE(recorder.WaitForCount(15));
  std::vector<int64_t> expected;
  for (int i = 0; i < 15; ++i) expected.push_back(i);
  EXPECT_EQ(recorder.keys(), expected);
  writer->Close();
}

TEST(ChangeHubDispatcherTest, AFullQueueHoldsTheWriterUntilDeliveryCatchesUp) {
  ChangeHub hub;
  hub.StartDispatcher(/*max_queued=*/4);
  Recorder recorder;
  auto s = hub.Subscribe(Topic::kStream, "s", recorder.subscriber());
  std::atomic<int> sent{0};
  std::thread writer([&] {
    for (int i = 0; i < 20; ++i) {
      hub.OnChange(ItemsWritten("s"));
      ++sent;
    }
  });
  // The dispatcher holds one batch in a blocked delivery and the queue takes 4 more; the writer
  // cannot have sent all 20.
  absl::SleepFor(absl::Milliseconds(200));  // Gives a wrong, unbounded queue time to show.
  EXPECT_LT(sent.load(), 20);
  recorder.Release();
  writer.join();
  EXPECT_TRUE(recorder.WaitForCount(20));
}

TEST(ChangeHubDispatcherTest, NothingIsDeliveredAfterStop) {
  ChangeHub hub;
  hub.StartDispatcher();
  Recorder recorder;
  recorder.Release();
  auto s = hub.Subscribe(Topic::kStream, "s", recorder.subscriber());
  hub.OnChange(ItemsWritten("s"));
  ASSERT_TRUE(recorder.WaitForCount(1));
  hub.StopDispatcher();
  hub.OnChange(ItemsWritten("s"));
  hub.StopDispatcher();  // Idempotent.
  EXPECT_EQ(recorder.seen().size(), 1u);
}

}  // namespace
}  // namespace perper::fabric
