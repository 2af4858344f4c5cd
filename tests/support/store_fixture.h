// SPDX-License-Identifier: MIT
// The storage conformance fixture: every backend runs the same tests.
//
//   class ExecutionStoreTest : public perper::testing::StoreTest {};
//   TEST_P(ExecutionStoreTest, CreateTwiceIsIdempotent) { auto& s = store().executions(); ... }
//   INSTANTIATE_TEST_SUITE_P(Backends, ExecutionStoreTest, perper::testing::StoreBackends(),
//                            perper::testing::BackendName);
//
// Reopen() closes the store and opens it again on the same directory: durable backends must
// then hold every acknowledged write (the memory backend starts empty, so durability tests
// check IsDurable()). Changes the store reports are recorded in changes().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include <gtest/gtest.h>

#include "perper/storage/store.h"
#include "perper/storage/store_factory.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/redis_backends.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {

class RecordingObserver final : public storage::ChangeObserver {
 public:
  void OnChange(const storage::Change& change) override {
    absl::MutexLock lock(&mu_);
    changes_.push_back(change);
  }
  std::vector<storage::Change> Take() {
    absl::MutexLock lock(&mu_);
    return std::move(changes_);
  }

 private:
  absl::Mutex mu_;
  std::vector<storage::Change> changes_;
};

// Every backend: memory, rocksdb, and redis on one server and on a 3-master cluster.
inline ::testing::internal::ParamGenerator<std::string> StoreBackends() {
  return ::testing::Values(std::string("memory"), std::string("rocksdb"), std::string("redis"),
                           std::string("redis_cluster"));
}

// The backends that keep what they acknowledged when the store is reopened.
inline ::testing::internal::ParamGenerator<std::string> DurableBackends() {
  return ::testing::Values(std::string("rocksdb"), std::string("redis"),
                           std::string("redis_cluster"));
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (IsRedisBackend(GetParam())) {
      absl::Status reset = ResetRedisBackend(GetParam());
      ASSERT_TRUE(reset.ok()) << reset;
    }
    Open();
  }
  void TearDown() override { store_.reset(); }

  storage::Store& store() { return *store_; }
  bool IsDurable() const { return GetParam() != "memory"; }
  void Reopen() {
    store_.reset();
    Open();
  }
  // Changes reported since the last call.
  std::vector<storage::Change> TakeChanges() { return observer_.Take(); }

  // Creates the new stream `id`.
  void CreateStream(const std::string& id, bool ephemeral, int64_t stride = 0) {
    storage::StreamRecord record;
    record.stream = id;
    record.ephemeral = ephemeral;
    record.stride = stride;
    auto created = store().streams().CreateStream(record);
    ASSERT_TRUE(created.ok()) << created.status();
    ASSERT_TRUE(*created);
  }
  // Writes one item per key, valued "v{key}"; returns the keys the store reports.
  std::vector<int64_t> WriteKeys(const std::string& id, std::vector<int64_t> keys) {
    std::vector<storage::ItemToWrite> items;
    for (int64_t key : keys) items.push_back(storage::ItemToWrite{key, "v" + std::to_string(key)});
    auto written = store().streams().WriteItems(id, std::move(items));
    EXPECT_TRUE(written.ok()) << written.status();
    return written.ok() ? *written : std::vector<int64_t>{};
  }

 private:
  void Open() {
    absl::StatusOr<storage::StoreOptions> options =
        BackendStoreOptions(GetParam(), dir_.path() + "/data");
    ASSERT_TRUE(options.ok()) << options.status();
    auto store = storage::OpenStore(*options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    store_->SetObserver(&observer_);
  }

  TempDir dir_;
  RecordingObserver observer_;
  std::unique_ptr<storage::Store> store_;
};

}  // namespace perper::testing
