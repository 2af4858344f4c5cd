// SPDX-License-Identifier: MIT
// What the listen calls' fast path promises, over real gRPC: an unpacked listen call reads the
// store through VisitItems (the stored bytes, no copy per item), one store read per batch of up
// to 256 items, and never through ReadItems; values of every size, including ones larger than
// what a call keeps buffered between batches, arrive byte for byte.
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/stream_test_helpers.h"
#include "tests/support/wrapped_store_fabric.h"

namespace perper::testing {
namespace {

using storage::ItemToWrite;
using storage::ListenerRecord;
using storage::StreamItem;
using storage::StreamRecord;

// A StreamStore that forwards to another and counts how items are read.
class CountingStreams final : public storage::StreamStore {
 public:
  explicit CountingStreams(storage::StreamStore& inner) : inner_(inner) {}

  std::atomic<int64_t> read_items_calls{0};
  std::atomic<int64_t> visit_items_calls{0};

  absl::StatusOr<bool> CreateStream(StreamRecord record) override {
    return inner_.CreateStream(std::move(record));
  }
  absl::StatusOr<StreamRecord> GetStream(std::string_view stream) override {
    return inner_.GetStream(stream);
  }
  absl::StatusOr<std::vector<int64_t>> WriteItems(std::string_view stream,
                                                  std::vector<ItemToWrite> items) override {
    return inner_.WriteItems(stream, std::move(items));
  }
  absl::StatusOr<std::vector<StreamItem>> ReadItems(std::string_view stream, int64_t from_key,
                                                    size_t max_items, size_t max_bytes) override {
    ++read_items_calls;
    return inner_.ReadItems(stream, from_key, max_items, max_bytes);
  }
  absl::StatusOr<size_t> VisitItems(
      std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
      absl::FunctionRef<void(int64_t key, std::string_view value)> visit) override {
    ++visit_items_calls;
    return inner_.VisitItems(stream, from_key, max_items, max_bytes, visit);
  }
  absl::StatusOr<std::optional<int64_t>> LastKey(std::string_view stream) override {
    return inner_.LastKey(stream);
  }
  absl::StatusOr<storage::StreamProgress> GetProgress(std::string_view stream) override {
    return inner_.GetProgress(stream);
  }
  absl::Status CompleteStream(std::string_view stream, std::optional<std::string> error) override {
    return inner_.CompleteStream(stream, std::move(error));
  }
  absl::StatusOr<bool> DeleteStream(std::string_view stream) override {
    return inner_.DeleteStream(stream);
  }
  absl::StatusOr<ListenerRecord> RegisterListener(std::string_view stream, std::string_view name,
                                                  int64_t position, bool transient) override {
    return inner_.RegisterListener(stream, name, position, transient);
  }
  absl::Status MoveListener(std::string_view stream, std::string_view name,
                            int64_t position) override {
    return inner_.MoveListener(stream, name, position);
  }
  absl::StatusOr<bool> DeleteListener(std::string_view stream, std::string_view name) override {
    return inner_.DeleteListener(stream, name);
  }
  absl::StatusOr<std::vector<ListenerRecord>> ListListeners(std::string_view stream) override {
    return inner_.ListListeners(stream);
  }
  absl::StatusOr<std::vector<storage::StreamSummary>> ListStreams(std::string_view prefix,
                                                                  size_t limit) override {
    return inner_.ListStreams(prefix, limit);
  }

 private:
  storage::StreamStore& inner_;
};

// A Fabric in this process on a counting store of the given backend.
class CountingFabric {
 public:
  explicit CountingFabric(const std::string& kind)
      : fabric_(kind, [this](WrappedStore& store) {
          streams_ = std::make_unique<CountingStreams>(store.inner().streams());
          store.set_streams(streams_.get());
        }) {}

  CountingStreams& streams() { return *streams_; }
  std::unique_ptr<grpc2::FabricStreams::Stub> Streams() {
    return grpc2::FabricStreams::NewStub(fabric_.channel());
  }

 private:
  std::unique_ptr<CountingStreams> streams_;  // Outlives the server.
  WrappedStoreFabric fabric_;
};

// Writes `values` under keys first_key, first_key + 1, ... in one WriteItems.
grpc::Status WriteValues(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                         int64_t first_key, const std::vector<std::string>& values) {
  grpc2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream(stream);
  for (size_t i = 0; i < values.size(); ++i) {
    auto* item = request.add_items();
    item->set_key(first_key + static_cast<int64_t>(i));
    *item->mutable_value() = BytesValue(values[i]);
  }
  grpc2::StreamsWriteItemsResponse response;
  return stub.WriteItems(Context().get(), request, &response);
}

std::string ValueOf(int64_t key) { return "value-" + std::to_string(key); }

class StreamCostsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamCostsTest, ReplayReadsTheStoreOncePerBatchWithoutCopies) {
  CountingFabric fabric(GetParam());
  auto stub = fabric.Streams();
  ASSERT_TRUE(CreateStream(*stub, "s", false).ok());
  constexpr int kItems = 1000;
  std::vector<std::string> values;
  for (int key = 0; key < kItems; ++key) values.push_back(ValueOf(key));
  ASSERT_TRUE(WriteValues(*stub, "s", 0, values).ok());
  ASSERT_TRUE(Complete(*stub, "s").ok());

  int64_t visits_before = fabric.streams().visit_items_calls.load();
  Listen listen(*stub, ListenRequest("s"));
  for (int key = 0; key < kItems; ++key) {
    google::protobuf::Any value;
    ASSERT_EQ(listen.NextKey(&value), std::optional<int64_t>(key));
    ASSERT_EQ(value.SerializeAsString(), BytesValue(ValueOf(key)).SerializeAsString());
  }
  EXPECT_TRUE(listen.Finish().ok());
  EXPECT_TRUE(listen.extra_keys().empty());
  // Batches of 256: 4 reads with items, and at most a few empty ones at the end.
  int64_t visits = fabric.streams().visit_items_calls.load() - visits_before;
  EXPECT_GE(visits, 4);
  EXPECT_LE(visits, 8) << visits << " store reads for " << kItems << " items";
  EXPECT_EQ(fabric.streams().read_items_calls.load(), 0);
}

TEST_P(StreamCostsTest, LiveItemsAreReadWithoutCopies) {
  CountingFabric fabric(GetParam());
  auto stub = fabric.Streams();
  ASSERT_TRUE(CreateStream(*stub, "live", false).ok());
  Listen listen(*stub, ListenRequest("live"));
  ASSERT_TRUE(WaitForListener(*stub, "live").ok());
  constexpr int kBatches = 10;
  constexpr int kPerBatch = 50;
  for (int b = 0; b < kBatches; ++b) {
    std::vector<std::string> values;
    for (int i = 0; i < kPerBatch; ++i) values.push_back(ValueOf(b * kPerBatch + i));
    ASSERT_TRUE(WriteValues(*stub, "live", b * kPerBatch, values).ok());
  }
  for (int key = 0; key < kBatches * kPerBatch; ++key) {
    google::protobuf::Any value;
    ASSERT_EQ(listen.NextKey(&value), std::optional<int64_t>(key));
    ASSERT_EQ(value.SerializeAsString(), BytesValue(ValueOf(key)).SerializeAsString());
  }
  ASSERT_TRUE(Complete(*stub, "live").ok());
  EXPECT_TRUE(listen.Finish().ok());
  EXPECT_GT(fabric.streams().visit_items_calls.load(), 0);
  EXPECT_EQ(fabric.streams().read_items_calls.load(), 0);
}

TEST_P(StreamCostsTest, LargeAndSmallValuesInTurnArriveIntact) {
  // A call keeps its response buffers between batches, except those that held a large value;
  // values on either side of that threshold, in turn, must come out byte for byte.
  CountingFabric fabric(GetParam());
  auto stub = fabric.Streams();
  ASSERT_TRUE(CreateStream(*stub, "mixed", false).ok());
  std::vector<std::string> values;
  for (int round = 0; round < 3; ++round) {
    values.push_back(std::string(200 << 10, static_cast<char>('a' + round)));
    values.push_back("small-" + std::to_string(round));
    values.push_back(std::string(70 << 10, static_cast<char>('A' + round)));
    values.push_back("");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_TRUE(WriteValues(*stub, "mixed", static_cast<int64_t>(i), {values[i]}).ok());
  }
  ASSERT_TRUE(Complete(*stub, "mixed").ok());
  for (int pass = 0; pass < 2; ++pass) {
    Listen listen(*stub, ListenRequest("mixed"));
    for (size_t i = 0; i < values.size(); ++i) {
      google::protobuf::Any value;
      ASSERT_EQ(listen.NextKey(&value), std::optional<int64_t>(static_cast<int64_t>(i)));
      google::protobuf::BytesValue bytes;
      ASSERT_TRUE(value.UnpackTo(&bytes)) << "item " << i;
      ASSERT_EQ(bytes.value(), values[i]) << "item " << i;
    }
    EXPECT_TRUE(listen.Finish().ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StreamCostsTest, ::testing::Values("memory", "rocksdb"));

}  // namespace
}  // namespace perper::testing
