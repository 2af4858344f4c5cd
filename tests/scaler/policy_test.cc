// SPDX-License-Identifier: MIT
// The restart back-off, crash-loop detection and pool target policies.
#include <gtest/gtest.h>

#include "perper/scaler/pool_policy.h"
#include "perper/scaler/restart_policy.h"

namespace perper::scaler {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

TEST(RestartPolicyTest, BackOffDoublesUpToTheCap) {
  RestartPolicy policy;
  absl::Time now = kStart;
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 8; ++i) {
    delays.push_back(policy.OnExit(now, absl::Milliseconds(50)));
    now += delays.back();
  }
  EXPECT_EQ(delays[0], absl::Milliseconds(200));
  EXPECT_EQ(delays[1], absl::Milliseconds(400));
  EXPECT_EQ(delays[2], absl::Milliseconds(800));
  EXPECT_EQ(delays[3], absl::Milliseconds(1600));
  EXPECT_EQ(delays[5], absl::Milliseconds(6400));
  EXPECT_EQ(delays[6], absl::Seconds(10));
  EXPECT_EQ(delays[7], absl::Seconds(10));
}

TEST(RestartPolicyTest, AHealthyRunResetsTheBackOff) {
  RestartPolicy policy;
  EXPECT_EQ(policy.OnExit(kStart, absl::Milliseconds(10)), absl::Milliseconds(200));
  EXPECT_EQ(policy.OnExit(kStart + absl::Seconds(1), absl::Milliseconds(10)),
            absl::Milliseconds(400));
  EXPECT_EQ(policy.OnExit(kStart + absl::Seconds(60), absl::Seconds(30)), absl::Milliseconds(200));
}

TEST(RestartPolicyTest, FiveQuickExitsAreACrashLoop) {
  RestartPolicy policy;
  absl::Time now = kStart;
  for (int i = 0; i < 4; ++i) {
    policy.OnExit(now, absl::Milliseconds(10));
    EXPECT_FALSE(policy.in_crash_loop()) << i;
    now += absl::Seconds(1);
  }
  policy.OnExit(now, absl::Milliseconds(10));
  EXPECT_TRUE(policy.in_crash_loop());
  EXPECT_EQ(policy.recent_exits(), 5);
}

TEST(RestartPolicyTest, ExitsSpreadOverTimeAreNotACrashLoop) {
  RestartPolicy policy;
  absl::Time now = kStart;
  for (int i = 0; i < 10; ++i) {
    policy.OnExit(now, absl::Seconds(20));
    EXPECT_FALSE(policy.in_crash_loop()) << i;
    now += absl::Seconds(20);
  }
}

TEST(PoolPolicyTest, ScalesUpAtOnceWithinBounds) {
  PoolPolicy policy(/*min=*/1, /*max=*/4, /*executions_per_process=*/2, absl::Seconds(5));
  EXPECT_EQ(policy.Target(0, 0, kStart), 1);    // the minimum
  EXPECT_EQ(policy.Target(3, 1, kStart), 2);    // ceil(3 / 2)
  EXPECT_EQ(policy.Target(100, 2, kStart), 4);  // the maximum
}

TEST(PoolPolicyTest, ScalesDownOnlyAfterTheIdlePeriod) {
  PoolPolicy policy(/*min=*/0, /*max=*/3, /*executions_per_process=*/1, absl::Seconds(2));
  EXPECT_EQ(policy.Target(0, 3, kStart), 3);
  EXPECT_EQ(policy.Target(0, 3, kStart + absl::Seconds(1)), 3);
  EXPECT_EQ(policy.Target(0, 3, kStart + absl::Seconds(2)), 0);  // down to zero
}

TEST(PoolPolicyTest, LoadDuringTheIdlePeriodRestartsIt) {
  PoolPolicy policy(/*min=*/0, /*max=*/3, /*executions_per_process=*/1, absl::Seconds(2));
  EXPECT_EQ(policy.Target(1, 3, kStart), 3);
  EXPECT_EQ(policy.Target(3, 3, kStart + absl::Seconds(1)), 3);  // busy again
  EXPECT_EQ(policy.Target(1, 3, kStart + absl::Milliseconds(2500)), 3);
  EXPECT_EQ(policy.Target(1, 3, kStart + absl::Milliseconds(4500)), 1);
}

}  // namespace
}  // namespace perper::scaler
