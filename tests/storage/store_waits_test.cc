// SPDX-License-Identifier: MIT
// What each backend declares its calls wait for (Store::WritesWait, Store::ReadsWait). The
// Fabric decides from these alone where writes run (its write pool) and who delivers hints (the
// hub's thread); fabric_costs_test shows the write pool at work.
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

class StoreWaitsTest : public StoreTest {};

TEST_P(StoreWaitsTest, DeclaresWhatItsCallsWaitFor) {
  const std::string& backend = GetParam();
  // rocksdb syncs its writes by default: each waits for its fsync. Redis: a round trip.
  EXPECT_EQ(store().WritesWait(), backend != "memory") << backend;
  EXPECT_EQ(store().ReadsWait(), IsRedisBackend(backend)) << backend;
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreWaitsTest, StoreBackends(), BackendName);

TEST(RocksDbWaitsTest, UnsyncedWritesDoNotWait) {
  TempDir dir;
  storage::StoreOptions options;
  options.kind = "rocksdb";
  options.data_dir = dir.path() + "/data";
  options.sync_writes = false;
  auto store = storage::OpenStore(options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->WritesWait());
  EXPECT_FALSE((*store)->ReadsWait());
}

}  // namespace
}  // namespace perper::testing
