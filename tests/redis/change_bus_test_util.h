// SPDX-License-Identifier: MIT
// Helpers of the ChangeBus tests: an observer that records what a bus delivers, and changes
// aimed at a chosen bucket.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <gtest/gtest.h>

#include "perper/storage/change.h"
#include "perper/storage/redis/change_bus.h"

namespace perper::storage::redis {

// Records the changes a bus delivers (kResync counted apart). Thread-safe.
class RecordingObserver : public ChangeObserver {
 public:
  void OnChange(const Change& change) override {
    absl::MutexLock lock(&mu_);
    if (change.kind == Change::Kind::kResync) {
      ++resyncs_;
    } else {
      changes_.push_back(change);
    }
  }

  bool WaitForCount(size_t count, std::chrono::milliseconds timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return changes_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::FromChrono(timeout));
  }

  bool WaitForResyncs(int count, std::chrono::milliseconds timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return resyncs_ >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::FromChrono(timeout));
  }

  std::vector<Change> Changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }
  size_t Count() {
    absl::MutexLock lock(&mu_);
    return changes_.size();
  }
  int ResyncCount() {
    absl::MutexLock lock(&mu_);
    return resyncs_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);
  int resyncs_ ABSL_GUARDED_BY(mu_) = 0;
};

inline void ExpectSameChange(const Change& got, const Change& want) {
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.agent, want.agent);
  EXPECT_EQ(got.instance, want.instance);
  EXPECT_EQ(got.delegate, want.delegate);
  EXPECT_EQ(got.workgroup, want.workgroup);
  EXPECT_EQ(got.key, want.key);
}

inline Change StreamChange(Change::Kind kind, std::string stream, int64_t key) {
  Change change;
  change.kind = kind;
  change.id = std::move(stream);
  change.key = key;
  return change;
}

// A stream name whose changes go to `bucket`.
inline std::string StreamInBucket(int bucket) {
  for (int i = 0;; ++i) {
    std::string name = "stream-" + std::to_string(i);
    if (ChangeBus::Bucket(StreamChange(Change::Kind::kStreamCreated, name, 0)) == bucket)
      return name;
  }
}

// Two buses on one deployment, standing for two processes.
struct BusPair {
  // Creates both with `options`, setting their process IDs; use with ASSERT_NO_FATAL_FAILURE.
  void Start(ChangeBusOptions options) {
    options.process_id = "aaaaaaaaaaaaaaaa";
    auto created_a = ChangeBus::Create(options, &seen_by_a);
    ASSERT_TRUE(created_a.ok()) << created_a.status();
    options.process_id = "bbbbbbbbbbbbbbbb";
    auto created_b = ChangeBus::Create(options, &seen_by_b);
    ASSERT_TRUE(created_b.ok()) << created_b.status();
    a = *std::move(created_a);
    b = *std::move(created_b);
  }

  RecordingObserver seen_by_a;
  RecordingObserver seen_by_b;
  std::unique_ptr<ChangeBus> a;
  std::unique_ptr<ChangeBus> b;
};

// Publishes one change of `kind` with `key` on each bucket; returns them.
inline std::vector<Change> PublishOnEveryBucket(ChangeBus& bus, Change::Kind kind, int64_t key) {
  std::vector<Change> sent;
  for (int b = 0; b < kChangeBuckets; ++b) {
    sent.push_back(StreamChange(kind, StreamInBucket(b), key));
    bus.Publish(sent.back());
  }
  return sent;
}

// Polls `condition` (such as a bus's counters, which have no waiting API) until it holds.
template <typename Condition>
bool WaitUntil(Condition condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// The port of "host:port".
inline int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  return port;
}

}  // namespace perper::storage::redis
