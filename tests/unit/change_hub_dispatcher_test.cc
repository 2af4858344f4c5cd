// SPDX-License-Identifier: MIT
// ChangeHub's dispatcher: with it, OnChange returns before subscribers run, deliveries keep the
// order of the changes, and nothing is delivered once it stopped.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "perper/fabric/change_hub.h"

namespace perper::fabric {
namespace {

using storage::Change;

Change ItemsWritten(const std::string& stream) {
  Change change;
  change.kind = Change::Kind::kStreamItemsWritten;
  change.id = stream;
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
  std::thread::id thread() {
    absl::MutexLock lock(&mu_);
    return thread_;
  }

 private:
  absl::Notification release_;
  absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
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

TEST(ChangeHubDispatcherTest, OnChangeReturnsWhileASubscriberIsBusyAndOrderIsKept) {
  ChangeHub hub;
  hub.StartDispatcher();
  Recorder recorder;
  auto a = hub.Subscribe(Topic::kStream, "a", recorder.subscriber());
  auto b = hub.Subscribe(Topic::kStream, "b", recorder.subscriber());
  // The subscriber blocks until released: these return all the same.
  for (int i = 0; i < 50; ++i) hub.OnChange(ItemsWritten(i % 2 == 0 ? "a" : "b"));
  EXPECT_TRUE(recorder.seen().empty());
  recorder.Release();
  ASSERT_TRUE(recorder.WaitForCount(50));
  std::vector<std::string> expected;
  for (int i = 0; i < 50; ++i) expected.push_back(i % 2 == 0 ? "a" : "b");
  EXPECT_EQ(recorder.seen(), expected);
  EXPECT_NE(recorder.thread(), std::this_thread::get_id());
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
