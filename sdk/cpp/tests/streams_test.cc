// SPDX-License-Identifier: MIT
// Streams in the agent SDK against a real perper-fabric process over gRPC on loopback: stream
// producers (batched writes, keys, packed and persistent streams, actions, errors), starting
// them on this or another instance and as a declared cycle, and readers (live and replayed
// references, named listeners that resume, reconnecting after a Fabric restart).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include "sdk/cpp/src/perper/agent/counters.h"
#include "sdk/cpp/tests/drive.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper {
namespace {

using ::perper::testing::DriveAgent;
using ::perper::testing::FabricProcess;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// What reading a stream to its end gave.
template <typename T>
struct Read {
  std::vector<StreamItem<T>> items;
  absl::Status end;  // OK when the stream completed

  std::vector<T> values() const {
    std::vector<T> out;
    for (const auto& item : items) {
      out.push_back(item.value);
    }
    return out;
  }
  std::vector<int64_t> keys() const {
    std::vector<int64_t> out;
    for (const auto& item : items) {
      out.push_back(item.key);
    }
    return out;
  }
};

// Reads `reader` until the stream ends, or `limit` items.
template <typename T>
Task<Read<T>> ReadAll(StreamReader<T>& reader, std::size_t limit = SIZE_MAX) {
  Read<T> read;
  while (read.items.size() < limit) {
    absl::StatusOr<std::optional<StreamItem<T>>> item = co_await reader.next_item();
    if (!item.ok()) {
      read.end = item.status();
      break;
    }
    if (!item->has_value()) {
      break;
    }
    read.items.push_back(**std::move(item));
  }
  co_return read;
}

// The key of the i-th write of the basic sample's generator: 1, 2, 0, 4, 5, 3, ...
int64_t ShuffledKey(int64_t i, int64_t count) {
  int64_t key = (i / 3) * 3 + (i + 1) % 3;
  return key >= count ? i : key;
}

struct Observations {
  std::promise<void> action_ran;
  std::atomic<bool> probe_started{false};
};

Agent StreamsAgent(std::shared_ptr<Observations> observations) {
  Agent app("Streams");
  app.stream("Count", [](StreamWriter<int64_t>& out, int64_t n) -> Task<absl::Status> {
    for (int64_t i = 0; i < n; ++i) {
      if (absl::Status written = co_await out.write(i); !written.ok()) {
        co_return written;
      }
    }
    co_return absl::OkStatus();
  });
  app.stream(
      "Keyed",
      [](StreamWriter<std::string>& out, int64_t n) -> Task<absl::Status> {
        for (int64_t i = 0; i < n; ++i) {
          int64_t key = ShuffledKey(i, n);
          if (absl::Status written = co_await out.write(key, "message " + std::to_string(key));
              !written.ok()) {
            co_return written;
          }
        }
        co_return absl::OkStatus();
      },
      StreamOptions{.ephemeral = false, .stride = 1});
  app.stream("Throws", [](Context& ctx, StreamWriter<int64_t>& out) -> Task<void> {
    (void)co_await out.write(1);
    (void)co_await out.write(2);
    throw std::runtime_error("generator broke");
  });
  app.stream("Fails", [](StreamWriter<int64_t>& out) -> Task<absl::Status> {
    (void)co_await out.write(7);
    co_return absl::FailedPreconditionError("out of input");
  });
  app.stream(
      "Action",
      [observations](StreamWriter<int64_t>& out) -> Task<void> {
        (void)co_await out.write(1);
        (void)co_await out.flush();
        observations->action_ran.set_value();
      },
      StreamOptions{.action = true});
  // An ephemeral stream (not an action): its producer waits for a first listener.
  app.stream("Probe", [observations](StreamWriter<int64_t>& out) -> Task<void> {
    observations->probe_started = true;
    (void)co_await out.write(5);
  });
  app.stream(
      "Many",
      [](StreamWriter<int64_t>& out, int64_t n) -> Task<absl::Status> {
        for (int64_t i = 0; i < n; ++i) {
          if (absl::Status written = co_await out.write(i); !written.ok()) {
            co_return written;
          }
        }
        co_return absl::OkStatus();
      },
      StreamOptions{.max_pending = 8});
  // Ping and Pong consume each other: Ping writes 1, then n + 1 for each n from Pong, until it
  // receives 10; Pong (an action) writes n + 1 for each n from Ping.
  auto bounce = [](bool ping) {
    return [ping](Context& ctx, StreamWriter<int64_t>& out,
                  grpc2::model::PerperStream other) -> Task<absl::Status> {
      if (ping) {
        (void)co_await out.write(1);
      }
      StreamReader<int64_t> reader = ctx.stream(other).listen<int64_t>();
      while (true) {
        absl::StatusOr<std::optional<int64_t>> n = co_await reader.next();
        if (!n.ok()) {
          co_return n.status();
        }
        if (!n->has_value() || (ping && **n >= 10)) {
          co_return absl::OkStatus();
        }
        (void)co_await out.write(**n + 1);
      }
    };
  };
  app.stream("Ping", bounce(true));
  app.stream("Pong", bounce(false), StreamOptions{.action = true});
  // Starts Count on this instance and sums it.
  app.on("SumOwn", [](Context& ctx, int64_t n) -> Task<absl::StatusOr<int64_t>> {
    absl::StatusOr<Stream> stream = co_await ctx.stream("Count", n);
    if (!stream.ok()) {
      co_return stream.status();
    }
    StreamReader<int64_t> reader = stream->listen<int64_t>();
    Read<int64_t> read = co_await ReadAll(reader);
    if (!read.end.ok()) {
      co_return read.end;
    }
    int64_t sum = 0;
    for (int64_t v : read.values()) {
      sum += v;
    }
    co_return sum;
  });
  // The same through the ambient context: the sum of Count(n), the size of a list it pushed the
  // sum to, and the sum of a declared Count(3).
  app.on("Ambient", [](int64_t n) -> Task<absl::StatusOr<std::tuple<int64_t, int64_t, int64_t>>> {
    absl::StatusOr<Stream> stream = co_await perper::stream("Count", n);
    absl::StatusOr<DeclaredStream> declared = co_await perper::declare_stream("Count");
    if (!stream.ok() || !declared.ok()) {
      co_return absl::InternalError("start failed");
    }
    absl::StatusOr<Stream> three = co_await declared->start(int64_t{3});
    if (!three.ok()) {
      co_return three.status();
    }
    int64_t sums[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      StreamReader<int64_t> reader = (i == 0 ? *stream : *three).listen<int64_t>();
      Read<int64_t> read = co_await ReadAll(reader);
      for (int64_t v : read.values()) {
        sums[i] += v;
      }
    }
    List list = perper::list("ambient");
    (void)co_await list.push_back(sums[0]);
    absl::StatusOr<int64_t> count = co_await list.count();
    co_return std::make_tuple(sums[0], count.value_or(-1), sums[1]);
  });
  // Runs the Ping/Pong cycle and returns what Ping wrote.
  app.on("Cycle", [](Context& ctx) -> Task<absl::StatusOr<std::string>> {
    absl::StatusOr<DeclaredStream> ping = co_await ctx.declare_stream("Ping");
    if (!ping.ok()) {
      co_return ping.status();
    }
    absl::StatusOr<Stream> pong = co_await ctx.stream("Pong", ping->stream().model());
    if (!pong.ok()) {
      co_return pong.status();
    }
    absl::StatusOr<Stream> started = co_await ping->start(pong->model());
    if (!started.ok()) {
      co_return started.status();
    }
    StreamReader<int64_t> reader = started->listen<int64_t>();
    Read<int64_t> read = co_await ReadAll(reader);
    if (!read.end.ok()) {
      co_return read.end;
    }
    std::string out;
    for (int64_t v : read.values()) {
      out += std::to_string(v) + " ";
    }
    co_return out;
  });
  return app;
}

class StreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
    runtime_ = std::make_unique<Runtime>(app_, Options());
    ASSERT_TRUE(runtime_->Start().ok());
  }

  void TearDown() override {
    if (runtime_ != nullptr) {
      runtime_->RequestStop();
      EXPECT_EQ(runtime_->Wait(), 0);
    }
  }

  RunOptions Options() const {
    RunOptions options;
    options.fabric_endpoint = fabric_->address();
    return options;
  }

  std::shared_ptr<Observations> observations_ = std::make_shared<Observations>();
  Agent app_ = StreamsAgent(observations_);
  std::unique_ptr<FabricProcess> fabric_;
  std::unique_ptr<Runtime> runtime_;
};

TEST_F(StreamsTest, AProducerStreamReachesItsConsumerAndCompletes) {
  absl::StatusOr<Stream> stream = absl::UnknownError("not run");
  Read<int64_t> read;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    stream = co_await ctx.agent("Streams", "s-1").stream("Count", 300);
    if (stream.ok()) {
      StreamReader<int64_t> reader = stream->listen<int64_t>("", /*capacity=*/16);
      read = co_await ReadAll(reader);
    }
  }));
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_THAT(stream->id(), StartsWith("Count-stream-"));
  EXPECT_EQ(stream->model().start_key(), 0);
  EXPECT_TRUE(read.end.ok()) << read.end;
  std::vector<int64_t> expected;
  for (int64_t i = 0; i < 300; ++i) {
    expected.push_back(i);
  }
  EXPECT_EQ(read.values(), expected);
}

TEST_F(StreamsTest, AThrowingOrFailingProducerFailsItsStreamWithTheMessage) {
  Read<int64_t> thrown;
  Read<int64_t> failed;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> a = co_await ctx.agent("Streams", "s-1").stream("Throws");
    absl::StatusOr<Stream> b = co_await ctx.agent("Streams", "s-1").stream("Fails");
    if (a.ok() && b.ok()) {
      StreamReader<int64_t> ra = a->listen<int64_t>();
      thrown = co_await ReadAll(ra);
      StreamReader<int64_t> rb = b->listen<int64_t>();
      failed = co_await ReadAll(rb);
    }
  }));
  EXPECT_THAT(thrown.values(), ElementsAre(1, 2));
  EXPECT_EQ(thrown.end.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(thrown.end.message(), HasSubstr("generator broke"));
  EXPECT_THAT(failed.values(), ElementsAre(7));
  EXPECT_EQ(failed.end.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(failed.end.message(), HasSubstr("out of input"));
}

TEST_F(StreamsTest, APackedStreamWrittenOutOfOrderIsReadInKeyOrder) {
  Read<std::string> all;
  Read<std::string> from_five;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.agent("Streams", "s-1").stream("Keyed", 28);
    if (stream.ok()) {
      EXPECT_EQ(stream->model().stride(), 1);
      StreamReader<std::string> reader = stream->listen<std::string>();
      all = co_await ReadAll(reader);
      // Persistent: a later reader replays from any key.
      StreamReader<std::string> replay = stream->replay(5).listen<std::string>();
      from_five = co_await ReadAll(replay);
    }
  }));
  ASSERT_TRUE(all.end.ok()) << all.end;
  ASSERT_EQ(all.items.size(), 28u);
  for (int64_t k = 0; k < 28; ++k) {
    EXPECT_EQ(all.items[k].key, k);
    EXPECT_EQ(all.items[k].value, "message " + std::to_string(k));
  }
  ASSERT_TRUE(from_five.end.ok()) << from_five.end;
  ASSERT_EQ(from_five.items.size(), 23u);
  EXPECT_EQ(from_five.items.front().key, 5);
  EXPECT_EQ(from_five.items.back().key, 27);
}

TEST_F(StreamsTest, AnActionStreamRunsWithoutAListenerAndAnEphemeralOneWaitsForOne) {
  absl::StatusOr<Stream> probe = absl::UnknownError("not run");
  absl::StatusOr<Stream> action = absl::UnknownError("not run");
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    // Both producers run on instance s-1, Probe's dispatched first.
    probe = co_await ctx.agent("Streams", "s-1").stream("Probe");
    action = co_await ctx.agent("Streams", "s-1").stream("Action");
  }));
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_TRUE(action.ok()) << action.status();
  EXPECT_EQ(observations_->action_ran.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(observations_->probe_started);
  Read<int64_t> from_action;
  Read<int64_t> from_probe;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    StreamReader<int64_t> reader = ctx.stream(action->model()).listen<int64_t>();
    from_action = co_await ReadAll(reader);
    StreamReader<int64_t> probe_reader = ctx.stream(probe->model()).listen<int64_t>();
    from_probe = co_await ReadAll(probe_reader);
  }));
  EXPECT_TRUE(from_action.end.ok()) << from_action.end;
  EXPECT_THAT(from_action.values(), ElementsAre(1));
  EXPECT_TRUE(observations_->probe_started);
  EXPECT_THAT(from_probe.values(), ElementsAre(5));
}

TEST_F(StreamsTest, WritesAreBatchedWithBackpressureAndKeepTheirOrder) {
  Read<int64_t> read;
  std::size_t max_queued = 0;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.agent("Streams", "s-1").stream("Many", 3000);
    if (stream.ok()) {
      StreamReader<int64_t> reader = stream->listen<int64_t>("", /*capacity=*/4);
      read = co_await ReadAll(reader);
      max_queued = reader.MaxQueuedForTest();
    }
  }));
  EXPECT_TRUE(read.end.ok()) << read.end;
  ASSERT_EQ(read.items.size(), 3000u);
  for (int64_t i = 0; i < 3000; ++i) {
    ASSERT_EQ(read.items[i].value, i);
    if (i > 0) {
      ASSERT_GT(read.items[i].key, read.items[i - 1].key);
    }
  }
  EXPECT_LE(max_queued, 4u);
}

TEST_F(StreamsTest, AHandlerStartsStreamsOnItsOwnInstanceAndRunsADeclaredCycle) {
  Result<int64_t> sum;
  Result<std::string> cycle;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    sum = co_await ctx.agent("Streams", "s-2").call<int64_t>("SumOwn", 10);
    cycle = co_await ctx.agent("Streams", "s-2").call<std::string>("Cycle");
  }));
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 45);
  ASSERT_TRUE(cycle.ok()) << cycle.status();
  EXPECT_EQ(*cycle, "1 3 5 7 9 ");
}

TEST_F(StreamsTest, TheAmbientContextStartsStreamsAndReachesLists) {
  Result<std::tuple<int64_t, int64_t, int64_t>> result;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    result = co_await ctx.agent("Streams", "s-3")
                 .call<std::tuple<int64_t, int64_t, int64_t>>("Ambient", 5);
  }));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, std::make_tuple(10, 1, 3));
}

TEST_F(StreamsTest, LiveReferencesSeeOnlyNewItemsAndReplayStartsAtAKey) {
  Read<std::string> all;
  Read<std::string> live;
  Read<std::string> replayed;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.blank_stream(/*ephemeral=*/false);
    if (!stream.ok()) {
      co_return;
    }
    for (const char* v : {"a", "b", "c"}) {
      (void)co_await stream->write(std::string(v));
    }
    StreamReader<std::string> live_reader = stream->live().listen<std::string>();
    // The live call is subscribed once it is registered as a listener.
    (void)co_await stream->wait_for_listener();
    for (const char* v : {"d", "e"}) {
      (void)co_await stream->write(std::string(v));
    }
    (void)co_await stream->complete();
    live = co_await ReadAll(live_reader);
    StreamReader<std::string> all_reader = stream->listen<std::string>();
    all = co_await ReadAll(all_reader);
    if (all.items.size() == 5) {
      StreamReader<std::string> replay_reader =
          stream->replay(all.items[1].key).listen<std::string>();
      replayed = co_await ReadAll(replay_reader);
    }
  }));
  EXPECT_THAT(all.values(), ElementsAre("a", "b", "c", "d", "e"));
  EXPECT_THAT(live.values(), ElementsAre("d", "e"));
  EXPECT_THAT(replayed.values(), ElementsAre("b", "c", "d", "e"));
}

TEST_F(StreamsTest, ANamedListenerResumesAtItsSavedPosition) {
  Read<int64_t> first;
  Read<int64_t> second;
  absl::Status closed;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.blank_stream(/*ephemeral=*/false);
    if (!stream.ok()) {
      co_return;
    }
    for (int64_t i = 1; i <= 10; ++i) {
      (void)co_await stream->write(i);
    }
    StreamReader<int64_t> reader = stream->listen<int64_t>("consumer");
    first = co_await ReadAll(reader, 4);
    closed = co_await reader.close();
    (void)co_await stream->complete();
    // A new consumer with the same name: the item at the saved position comes again.
    StreamReader<int64_t> resumed = stream->listen<int64_t>("consumer");
    second = co_await ReadAll(resumed);
  }));
  EXPECT_TRUE(closed.ok()) << closed;
  EXPECT_THAT(first.values(), ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(second.end.ok()) << second.end;
  EXPECT_THAT(second.values(), ElementsAre(4, 5, 6, 7, 8, 9, 10));
}

// Writes `count` items (the values 0 .. count-1) with WriteItems batches of 500, and completes
// the stream, through a plain stub.
void WriteAndComplete(const std::string& address, const std::string& stream, int64_t count) {
  auto stub = grpc2::FabricStreams::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  for (int64_t i = 0; i < count;) {
    grpc2::StreamsWriteItemsRequest request;
    request.mutable_stream()->set_stream(stream);
    for (int64_t end = std::min(count, i + 500); i < end; ++i) {
      auto* item = request.add_items();
      item->set_auto_key(true);
      *item->mutable_value() = ToAny(i);
    }
    grpc::ClientContext context;
    grpc2::StreamsWriteItemsResponse response;
    ASSERT_TRUE(stub->WriteItems(&context, request, &response).ok());
  }
  grpc::ClientContext context;
  grpc2::StreamsCompleteRequest request;
  request.mutable_stream()->set_stream(stream);
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub->Complete(&context, request, &empty).ok());
}

// The readers ask for several items per response: thousands of stored items come in far fewer
// messages, in key order, within the reader's bound; a named listener's position is the last
// item its consumer took (not the last one received), so a later reader resumes there.
TEST_F(StreamsTest, ReadersTakeSeveralItemsPerResponseInOrderWithinTheirBound) {
  constexpr int64_t kItems = 3000;
  internal::Counters& counters = internal::ProcessCounters();
  Read<int64_t> anonymous;
  Read<int64_t> small;
  Read<int64_t> named_first;
  Read<int64_t> named_rest;
  absl::Status closed;
  uint64_t responses = 0;
  uint64_t items = 0;
  std::size_t max_queued = 0;
  std::size_t small_max_queued = 0;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    absl::StatusOr<Stream> stream = co_await ctx.blank_stream(/*ephemeral=*/false);
    if (!stream.ok()) {
      co_return;
    }
    WriteAndComplete(fabric_->address(), stream->id(), kItems);
    uint64_t responses_before = counters.listen_responses.load();
    uint64_t items_before = counters.listen_items.load();
    StreamReader<int64_t> reader = stream->listen<int64_t>("", /*capacity=*/512);
    anonymous = co_await ReadAll(reader);
    responses = counters.listen_responses.load() - responses_before;
    items = counters.listen_items.load() - items_before;
    max_queued = reader.MaxQueuedForTest();
    // A small bound: two items per response at most, never more than four waiting.
    StreamReader<int64_t> small_reader = stream->listen<int64_t>("", /*capacity=*/4);
    small = co_await ReadAll(small_reader);
    small_max_queued = small_reader.MaxQueuedForTest();
    // A named listener (ListenItemsAndMove): its consumer takes 1000 items, then stops.
    StreamReader<int64_t> named = stream->listen<int64_t>("batched", /*capacity=*/512);
    named_first = co_await ReadAll(named, 1000);
    closed = co_await named.close();
    StreamReader<int64_t> resumed = stream->listen<int64_t>("batched", /*capacity=*/512);
    named_rest = co_await ReadAll(resumed);
  }));
  std::vector<int64_t> expected;
  for (int64_t i = 0; i < kItems; ++i) {
    expected.push_back(i);
  }
  ASSERT_TRUE(anonymous.end.ok()) << anonymous.end;
  EXPECT_EQ(anonymous.values(), expected);
  for (std::size_t i = 1; i < anonymous.items.size(); ++i) {
    ASSERT_GT(anonymous.items[i].key, anonymous.items[i - 1].key);
  }
  EXPECT_EQ(items, static_cast<uint64_t>(kItems));
  EXPECT_GT(responses, 0u);
  EXPECT_LE(responses * 2, items) << responses << " responses for " << items << " items";
  EXPECT_LE(max_queued, 512u);
  ASSERT_TRUE(small.end.ok()) << small.end;
  EXPECT_EQ(small.values(), expected);
  EXPECT_LE(small_max_queued, 4u);
  EXPECT_TRUE(closed.ok()) << closed;
  ASSERT_EQ(named_first.items.size(), 1000u);
  EXPECT_EQ(named_first.items.back().value, 999);
  ASSERT_TRUE(named_rest.end.ok()) << named_rest.end;
  // At-least-once from the last item taken: 999 again, then the rest, none skipped.
  ASSERT_FALSE(named_rest.items.empty());
  EXPECT_EQ(named_rest.items.front().key, named_first.items.back().key);
  EXPECT_EQ(std::vector<int64_t>(expected.begin() + 999, expected.end()), named_rest.values());
}

TEST(StreamsRestartTest, AReaderResumesWithoutAGapAfterTheFabricRestarts) {
  testing::TempDir data;
  auto fabric = std::make_unique<FabricProcess>(
      std::vector<std::string>{"--storage", "rocksdb", "--data-dir", data.path()});
  ASSERT_TRUE(fabric->Start()) << fabric->Log();
  const std::string address = fabric->address();
  std::unique_ptr<FabricProcess> restarted;
  // Writes an item (or completes the stream) through a plain stub that waits for the Fabric.
  auto stub = grpc2::FabricStreams::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  auto write = [&](const std::string& stream, int64_t value) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + 20s);
    grpc2::StreamsWriteItemRequest request;
    request.mutable_stream()->set_stream(stream);
    request.set_auto_key(true);
    *request.mutable_value() = ToAny(value);
    google::protobuf::Empty empty;
    return stub->WriteItem(&context, request, &empty).ok();
  };

  Read<int64_t> read;
  int calls = 0;
  int exit_code = 0;
  ASSERT_TRUE(DriveAgent(
      address,
      [&](Context& ctx) -> Task<void> {
        absl::StatusOr<Stream> stream = co_await ctx.blank_stream(/*ephemeral=*/false);
        if (!stream.ok()) {
          co_return;
        }
        for (int64_t i = 1; i <= 5; ++i) {
          EXPECT_TRUE(write(stream->id(), i));
        }
        StreamReader<int64_t> reader = stream->listen<int64_t>("", /*capacity=*/1);
        Read<int64_t> before = co_await ReadAll(reader, 3);
        // The Fabric dies and comes back on the same address with the same data.
        fabric->Kill(SIGKILL);
        fabric->Wait();
        restarted = std::make_unique<FabricProcess>(std::vector<std::string>{
            "--storage", "rocksdb", "--data-dir", data.path(), "--listen", address});
        EXPECT_TRUE(restarted->Start()) << restarted->Log();
        for (int64_t i = 6; i <= 8; ++i) {
          EXPECT_TRUE(write(stream->id(), i));
        }
        {
          grpc::ClientContext context;
          context.set_wait_for_ready(true);
          grpc2::StreamsCompleteRequest request;
          request.mutable_stream()->set_stream(stream->id());
          google::protobuf::Empty empty;
          EXPECT_TRUE(stub->Complete(&context, request, &empty).ok());
        }
        Read<int64_t> after = co_await ReadAll(reader);
        read.items = before.items;
        read.items.insert(read.items.end(), after.items.begin(), after.items.end());
        read.end = after.end;
        calls = reader.CallsForTest();
      },
      60s, &exit_code));
  // The exit code is not checked: the driver's own listen call may end with the Fabric.
  EXPECT_TRUE(read.end.ok()) << read.end;
  EXPECT_THAT(read.values(), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_GE(calls, 2);
}

}  // namespace
}  // namespace perper
