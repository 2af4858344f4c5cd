// SPDX-License-Identifier: MIT
// The dispatcher's strands alone: the work of one instance runs one piece at a time in the order
// posted, while different instances run in parallel.
#include "sdk/cpp/src/perper/agent/dispatcher.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <gtest/gtest.h>

namespace perper::internal {
namespace {

// An io_context run by four threads until destroyed.
class Threads {
 public:
  Threads() {
    for (auto& thread : threads_) {
      thread = std::thread([this] { io_.run(); });
    }
  }
  ~Threads() {
    work_.reset();
    for (auto& thread : threads_) {
      thread.join();
    }
  }
  asio::io_context& io() { return io_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread threads_[4];
};

TEST(InstanceStrandsTest, AnInstanceKeepsItsStrand) {
  asio::io_context io;
  InstanceStrands strands(io);
  Strand a = strands.Of("a");
  EXPECT_TRUE(strands.Of("a") == a);
  EXPECT_FALSE(strands.Of("b") == a);
  EXPECT_EQ(strands.size(), 2u);
}

TEST(InstanceStrandsTest, TheWorkOfAnInstanceRunsInOrderAndNeverOverlaps) {
  constexpr int kPerInstance = 2000;
  const std::vector<std::string> instances = {"a", "b", "c"};
  struct Instance {
    std::vector<int> order;  // only touched on the instance's strand
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
  };
  std::vector<Instance> seen(instances.size());
  std::atomic<int> left{kPerInstance * static_cast<int>(instances.size())};
  absl::Notification all_done;
  {
    Threads threads;
    InstanceStrands strands(threads.io());
    // Looked up for each piece of work, as the dispatcher does for each execution.
    for (int n = 0; n < kPerInstance; ++n) {
      for (size_t i = 0; i < instances.size(); ++i) {
        asio::post(strands.Of(instances[i]), [&, i, n] {
          Instance& instance = seen[i];
          if (instance.inside.fetch_add(1) != 0) instance.overlaps.fetch_add(1);
          instance.order.push_back(n);
          instance.inside.fetch_sub(1);
          if (left.fetch_sub(1) == 1) all_done.Notify();
        });
      }
    }
    ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }
  for (size_t i = 0; i < instances.size(); ++i) {
    EXPECT_EQ(seen[i].overlaps.load(), 0) << instances[i];
    ASSERT_EQ(seen[i].order.size(), static_cast<size_t>(kPerInstance)) << instances[i];
    for (int n = 0; n < kPerInstance; ++n) {
      ASSERT_EQ(seen[i].order[n], n) << instances[i];
    }
  }
}

TEST(InstanceStrandsTest, DifferentInstancesRunInParallel) {
  Threads threads;
  InstanceStrands strands(threads.io());
  absl::Notification b_ran;
  std::atomic<bool> a_saw_b{false};
  absl::Notification a_done;
  // a's work waits for b's: with one strand for both, b could not run until a returned.
  asio::post(strands.Of("a"), [&] {
    a_saw_b = b_ran.WaitForNotificationWithTimeout(absl::Seconds(10));
    a_done.Notify();
  });
  asio::post(strands.Of("b"), [&] { b_ran.Notify(); });
  ASSERT_TRUE(a_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(a_saw_b.load());
}

}  // namespace
}  // namespace perper::internal
