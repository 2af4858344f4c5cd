// SPDX-License-Identifier: MIT
// The perper-fabric binary's memory behind a stalled listener: writing far more than
// --max-stream-retained-bytes into an ephemeral stream whose listener only moves once the
// stream is full keeps RSS near the bound, and RSS comes back down once the listener drains
// the stream (the engine reports what collection frees, and the Fabric trims glibc's heap).
#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include "perper/storage/store.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

constexpr size_t kMiB = 1 << 20;
constexpr size_t kLimit = 32 * kMiB;
constexpr size_t kValueBytes = 64 << 10;
constexpr int kItemsPerCall = 16;
constexpr size_t kTotal = 256 * kMiB;  // Eight times the bound.
// What the process may hold beyond the retained items: gRPC's buffers of the calls in
// flight, the item being parsed and the allocator's slack (measured peaks: 62-72 MiB from a
// 22 MiB baseline); rocksdb adds its memtables (up to 4 of 8 MiB) and the write pool's
// arenas (measured peaks: 103-118 MiB from 24 MiB).
size_t Margin(const std::string& storage) { return (storage == "rocksdb" ? 96 : 48) * kMiB; }
// What may stay after the drain beyond the baseline: the allocator's slack, and with rocksdb its
// memtables, which keep the drained items' journal entries until they are flushed (up to 4 of
// 8 MiB, src/perper/storage/rocksdb/).
size_t DrainedMargin(const std::string& storage) {
  return (storage == "rocksdb" ? 16 + 4 * 8 : 16) * kMiB;
}

size_t RssBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

class StreamMemoryTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamMemoryTest, RssStaysNearTheBoundAndDropsAfterTheDrain) {
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer, RSS is mostly its shadow memory and the quarantine of freed blocks:
  // it says nothing about what the Fabric keeps. The ordinary build runs this test.
  GTEST_SKIP() << "RSS is not the Fabric's under AddressSanitizer";
#endif
  TempDir data;
  FabricProcess fabric({"--storage", GetParam(), "--data-dir", data.path() + "/db", "--sync",
                        "false", "--max-stream-retained-bytes", std::to_string(kLimit),
                        "--stream-write-wait-ms", "60000", "--log-level", "warn"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();
  auto channel = fabric.NewChannel();
  auto streams = grpc2::FabricStreams::NewStub(channel);
  auto introspection = grpc2::FabricIntrospection::NewStub(channel);
  google::protobuf::Empty empty;

  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("big");
  create.set_ephemeral(true);
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  auto move = [&](int64_t position) {
    grpc2::StreamsMoveListenerRequest request;
    request.mutable_stream()->set_stream("big");
    request.set_listener_name("slow");
    request.set_reached_key(position);
    return streams->MoveListener(Context().get(), request, &empty);
  };
  ASSERT_TRUE(move(storage::kPositionNotStarted).ok());
  auto summary = [&] {
    grpc2::IntrospectionListStreamsRequest request;
    request.set_stream_prefix("big");
    request.set_limit(1);
    grpc2::IntrospectionListStreamsResponse response;
    EXPECT_TRUE(introspection->ListStreams(Context().get(), request, &response).ok());
    return response.streams_size() == 1 ? response.streams(0) : grpc2::StreamSummary();
  };
  const size_t baseline = RssBytes(fabric.pid());

  grpc2::StreamsWriteItemsRequest write;
  write.mutable_stream()->set_stream("big");
  for (int i = 0; i < kItemsPerCall; ++i) {
    auto* item = write.add_items();
    item->set_auto_key(true);
    *item->mutable_value() = BytesValue(std::string(kValueBytes, 'x'));
  }
  std::atomic<size_t> written{0};
  std::atomic<int> failures{0};
  std::thread writer([&] {
    while (written.load() < kTotal) {
      grpc2::StreamsWriteItemsResponse response;
      grpc::Status status =
          streams->WriteItems(Context(std::chrono::seconds(60)).get(), write, &response);
      if (!status.ok()) {
        ++failures;
        ADD_FAILURE() << status.error_message();
        return;
      }
      written += kItemsPerCall * kValueBytes;
    }
  });

  // The listener stalls until the stream is full, then passes everything; again and again.
  const size_t per_item = kValueBytes + 64 + storage::kRetainedItemOverhead;
  const size_t full_items = (kLimit - kItemsPerCall * per_item) / per_item;
  size_t peak = 0;
  int stalls = 0;
  while (written.load() < kTotal && failures.load() == 0) {
    grpc2::StreamSummary full;
    bool filled = WaitFor(
        [&] {
          peak = std::max(peak, RssBytes(fabric.pid()));
          full = summary();
          return full.item_count() >= full_items || written.load() >= kTotal;
        },
        std::chrono::seconds(60));
    ASSERT_TRUE(filled) << "items " << full.item_count() << ", written " << written.load();
    if (full.item_count() >= full_items) ++stalls;
    ASSERT_TRUE(move(full.last_key()).ok());
  }
  writer.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_GE(stalls, 6);
  EXPECT_LE(peak, baseline + kLimit + Margin(GetParam()))
      << "baseline " << baseline / kMiB << " MiB, peak " << peak / kMiB << " MiB";

  // Drain: the listener passes the last item too; RSS returns near the baseline (measured:
  // 24 and 27-32 MiB against 22 and 24 at the start, memory and rocksdb; without the trim it
  // stayed at 56 and 107 MiB for 15 s).
  ASSERT_TRUE(move(summary().last_key() + 1).ok());
  EXPECT_EQ(summary().item_count(), 0u);
  size_t rss = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        rss = RssBytes(fabric.pid());
        return rss <= baseline + DrainedMargin(GetParam());
      },
      std::chrono::seconds(15)))
      << "baseline " << baseline / kMiB << " MiB, peak " << peak / kMiB << " MiB, after the drain "
      << rss / kMiB << " MiB";
  std::printf("[%s] RSS baseline %zu MiB, peak %zu MiB, after the drain %zu MiB, %d stalls\n",
              GetParam().c_str(), baseline / kMiB, peak / kMiB, rss / kMiB, stalls);
}

// The Fabric's own memory: with `redis` the items live in redis-server, and the retention bound
// is checked on every backend by stream_retention_test and the store suites instead.
INSTANTIATE_TEST_SUITE_P(Backends, StreamMemoryTest,
                         ::testing::Values(std::string("memory"), std::string("rocksdb")),
                         BackendName);

}  // namespace
}  // namespace perper::testing
