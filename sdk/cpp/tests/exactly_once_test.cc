// SPDX-License-Identifier: MIT
// Restart-safe pipelines against a real perper-fabric process: a producer that resumes from its
// stream's progress, and consumers that keep their results in a dictionary and move their
// listener in the same atomic step, so every item counts exactly once, also across a consumer
// process killed with SIGKILL and restarted.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/agent/agent.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include "sdk/cpp/tests/child_process.h"
#include "sdk/cpp/tests/drive.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"

namespace perper {
namespace {

using ::perper::testing::ChildProcess;
using ::perper::testing::DriveAgent;
using ::perper::testing::FabricProcess;
using ::perper::testing::WaitFor;
using ::testing::ElementsAre;
using namespace std::chrono_literals;

// Writes the values `from` .. `to` under the keys 0, 1, ..., through a plain stub.
void WriteValues(const std::string& address, const std::string& stream, int64_t from, int64_t to,
                 bool complete) {
  auto stub = grpc2::FabricStreams::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  for (int64_t i = from; i <= to;) {
    grpc2::StreamsWriteItemsRequest request;
    request.mutable_stream()->set_stream(stream);
    for (int64_t end = std::min(to + 1, i + 500); i < end; ++i) {
      auto* item = request.add_items();
      item->set_key(i - from);
      *item->mutable_value() = ToAny(i);
    }
    grpc::ClientContext context;
    grpc2::StreamsWriteItemsResponse response;
    ASSERT_TRUE(stub->WriteItems(&context, request, &response).ok());
  }
  if (complete) {
    grpc::ClientContext context;
    grpc2::StreamsCompleteRequest request;
    request.mutable_stream()->set_stream(stream);
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Complete(&context, request, &empty).ok());
  }
}

void CreateStream(const std::string& address, const std::string& stream) {
  auto stub = grpc2::FabricStreams::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  grpc2::StreamsCreateRequest request;
  request.mutable_stream()->set_stream(stream);
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub->Create(&context, request, &empty).ok());
}

// The int64 value of `key` in `dictionary`, or nullopt, through a plain stub.
std::optional<int64_t> ReadInt(const std::string& address, const std::string& dictionary,
                               const std::string& key) {
  auto stub = grpc2::FabricStatesDictionary::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  grpc2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  *request.mutable_key() = ToAny(key);
  request.set_get_existing_value(true);
  grpc2::StatesDictionaryOperateResponse response;
  if (!stub->Operate(&context, request, &response).ok() || IsNull(response.previous_value())) {
    return std::nullopt;
  }
  auto value = FromAny<int64_t>(response.previous_value());
  return value.ok() ? std::optional<int64_t>(*value) : std::nullopt;
}

// The loop of docs/sdk-cpp.md, "Exactly-once consumers": the running total and count of the
// stream's values in `state`, one step per item. Returns the first error, or OK once the
// stream completed.
Task<absl::Status> Average(Stream stream, Dictionary state) {
  StreamReader<int64_t> reader = stream.listen<int64_t>("average");
  while (true) {
    absl::StatusOr<std::optional<StreamItem<int64_t>>> item = co_await reader.next_item();
    if (!item.ok()) {
      co_return item.status();
    }
    if (!item->has_value()) {
      co_return absl::OkStatus();
    }
    absl::StatusOr<std::optional<int64_t>> total = co_await state.get<int64_t>("total");
    absl::StatusOr<std::optional<int64_t>> count = co_await state.get<int64_t>("count");
    if (!total.ok() || !count.ok()) {
      co_return total.ok() ? count.status() : total.status();
    }
    absl::StatusOr<StepResult> step =
        co_await stream.step("average", (*item)->key,
                             state.changes()
                                 .set("total", total->value_or(0) + (*item)->value)
                                 .set("count", count->value_or(0) + 1));
    if (!step.ok()) {
      co_return step.status();
    }
  }
}

class ExactlyOnceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  std::unique_ptr<FabricProcess> fabric_;
};

TEST_F(ExactlyOnceTest, TheStepLoopCountsEachItemOnceAcrossReruns) {
  CreateStream(fabric_->address(), "numbers");
  WriteValues(fabric_->address(), "numbers", 1, 100, /*complete=*/true);
  absl::Status first = absl::UnknownError("not run");
  absl::Status again = absl::UnknownError("not run");
  absl::StatusOr<StepResult> retaken = absl::UnknownError("not run");
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    grpc2::model::PerperStream model;
    model.set_stream("numbers");
    Stream stream = ctx.stream(model);
    first = co_await Average(stream, ctx.dictionary("averages"));
    // A consumer run again: the item at the listener's position comes again, and its step is
    // already taken.
    again = co_await Average(stream, ctx.dictionary("averages"));
    retaken = co_await stream.step("average", 50,
                                   ctx.dictionary("averages").changes().set("total", int64_t{-1}));
  }));
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_TRUE(again.ok()) << again;
  EXPECT_EQ(ReadInt(fabric_->address(), "averages", "total"), 5050);
  EXPECT_EQ(ReadInt(fabric_->address(), "averages", "count"), 100);
  ASSERT_TRUE(retaken.ok()) << retaken.status();
  EXPECT_FALSE(retaken->applied);
  EXPECT_TRUE(retaken->already_taken);
  EXPECT_EQ(retaken->position, 99);
}

TEST_F(ExactlyOnceTest, AStepAppliesNothingOnAFailedCompareOrAnotherPosition) {
  CreateStream(fabric_->address(), "s");
  WriteValues(fabric_->address(), "s", 1, 5, /*complete=*/false);
  absl::StatusOr<StepResult> first, mismatch, failed_compare, fenced, bad_value;
  std::optional<int64_t> a_after_failure;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    grpc2::model::PerperStream model;
    model.set_stream("s");
    Stream stream = ctx.stream(model);
    Dictionary d = ctx.dictionary("d");
    const std::string l = "l";
    first = co_await stream.step(l, 0, d.changes().set("a", int64_t{1}));
    mismatch = co_await stream.step(l, 2, d.changes().set("a", int64_t{2}), /*expected=*/1);
    failed_compare = co_await stream.step(
        l, 1, d.changes().set("b", int64_t{1}).compare_and_set("a", int64_t{7}, int64_t{3}));
    a_after_failure = (co_await d.get<int64_t>("a")).value_or(std::nullopt);
    fenced = co_await stream.step(
        l, 1, d.changes().compare_and_set("a", int64_t{1}, int64_t{3}).remove("b"), 0);
    Changes big = d.changes();
    big.set("m", std::map<std::string, int64_t>{{"big", int64_t{1} << 60}});
    bad_value = co_await stream.step(l, 2, std::move(big));
  }));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->applied);
  EXPECT_EQ(first->position, 0);
  ASSERT_TRUE(mismatch.ok()) << mismatch.status();
  EXPECT_FALSE(mismatch->applied);
  EXPECT_TRUE(mismatch->position_mismatch);
  EXPECT_EQ(mismatch->position, 0);
  ASSERT_TRUE(failed_compare.ok()) << failed_compare.status();
  EXPECT_FALSE(failed_compare->applied);
  EXPECT_FALSE(failed_compare->already_taken);
  EXPECT_FALSE(failed_compare->position_mismatch);
  EXPECT_EQ(failed_compare->position, 0);
  EXPECT_EQ(a_after_failure, 1);
  EXPECT_EQ(ReadInt(fabric_->address(), "d", "b"), std::nullopt);
  ASSERT_TRUE(fenced.ok()) << fenced.status();
  EXPECT_TRUE(fenced->applied);
  EXPECT_EQ(fenced->position, 1);
  EXPECT_EQ(ReadInt(fabric_->address(), "d", "a"), 3);
  ASSERT_FALSE(bad_value.ok());
  EXPECT_EQ(bad_value.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ExactlyOnceTest, TheReadersOwnAcknowledgementsNeverUndoAStep) {
  CreateStream(fabric_->address(), "s");
  WriteValues(fabric_->address(), "s", 0, 19, /*complete=*/false);
  absl::StatusOr<StepResult> ahead, after_acks;
  absl::Status closed;
  std::vector<int64_t> resumed_keys;
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    grpc2::model::PerperStream model;
    model.set_stream("s");
    Stream stream = ctx.stream(model);
    StreamReader<int64_t> reader = stream.listen<int64_t>("l", /*capacity=*/2);
    for (int i = 0; i < 3; ++i) {
      (void)co_await reader.next_item();  // keys 0, 1, 2 delivered
    }
    // The consumer steps ahead of what the reader delivered (a batch it accounted for).
    ahead = co_await stream.step("l", 10);
    (void)co_await reader.next_item();  // acknowledges 2 on the call
    closed = co_await reader.close();   // stores the last delivered key, 3
    after_acks = co_await stream.step("l", 10);
    StreamReader<int64_t> resumed = stream.listen<int64_t>("l");
    for (int i = 0; i < 2; ++i) {
      auto item = co_await resumed.next_item();
      if (item.ok() && item->has_value()) {
        resumed_keys.push_back((*item)->key);
      }
    }
  }));
  ASSERT_TRUE(ahead.ok()) << ahead.status();
  EXPECT_TRUE(ahead->applied);
  EXPECT_TRUE(closed.ok()) << closed;
  ASSERT_TRUE(after_acks.ok()) << after_acks.status();
  EXPECT_TRUE(after_acks->already_taken);
  EXPECT_EQ(after_acks->position, 10);
  EXPECT_THAT(resumed_keys, ElementsAre(10, 11));
}

TEST_F(ExactlyOnceTest, AProducerResumesFromItsStreamsProgress) {
  Agent app("Producer");
  // Writes the values 0 .. n-1 with auto keys, starting after what was written before.
  app.stream(
      "Resumable",
      [](Context& ctx, StreamWriter<int64_t>& out, int64_t n) -> Task<absl::Status> {
        absl::StatusOr<StreamProgress> progress = co_await ctx.stream_progress();
        if (!progress.ok()) {
          co_return progress.status();
        }
        for (int64_t i = static_cast<int64_t>(progress->written_count); i < n; ++i) {
          if (absl::Status written = co_await out.write(i); !written.ok()) {
            co_return written;
          }
        }
        co_return absl::OkStatus();
      },
      StreamOptions{.ephemeral = false});
  RunOptions options;
  options.fabric_endpoint = fabric_->address();
  Runtime runtime(app, options);
  ASSERT_TRUE(runtime.Start().ok());

  // The stream of the producer's execution, with three items from an earlier run.
  const std::string id = "Resumable-stream-1";
  CreateStream(fabric_->address(), id);
  absl::StatusOr<StreamProgress> empty = absl::UnknownError("not run");
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    grpc2::model::PerperStream model;
    model.set_stream(id);
    empty = co_await ctx.stream(model).progress();
  }));
  WriteValues(fabric_->address(), id, 0, 2, /*complete=*/false);
  {
    auto stub = grpc2::FabricExecutions::NewStub(fabric_->NewChannel());
    grpc2::ExecutionsCreateRequest request;
    request.mutable_execution()->set_execution(id);
    request.mutable_instance()->set_agent("Producer");
    request.mutable_instance()->set_instance("p-1");
    request.set_delegate("Resumable-stream");
    grpc2::model::PerperStream model;
    model.set_stream(id);
    *request.add_arguments() = ToAny(model);
    *request.add_arguments() = ToAny(int64_t{5});
    grpc::ClientContext context;
    google::protobuf::Empty response;
    ASSERT_TRUE(stub->Create(&context, request, &response).ok());
  }
  absl::StatusOr<StreamProgress> after = absl::UnknownError("not run");
  std::vector<int64_t> values;
  int64_t last_key = 0;
  absl::StatusOr<StreamProgress> unknown = absl::UnknownError("not run");
  ASSERT_TRUE(DriveAgent(fabric_->address(), [&](Context& ctx) -> Task<void> {
    grpc2::model::PerperStream model;
    model.set_stream(id);
    Stream stream = ctx.stream(model);
    StreamReader<int64_t> reader = stream.listen<int64_t>();
    while (true) {
      absl::StatusOr<std::optional<StreamItem<int64_t>>> item = co_await reader.next_item();
      if (!item.ok() || !item->has_value()) {
        break;
      }
      values.push_back((*item)->value);
      last_key = (*item)->key;
    }
    after = co_await stream.progress();
    grpc2::model::PerperStream missing;
    missing.set_stream("no-such-stream");
    unknown = co_await ctx.stream(missing).progress();
  }));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->last_key, std::nullopt);
  EXPECT_EQ(empty->written_count, 0u);
  EXPECT_FALSE(empty->completed);
  // The producer wrote only what the earlier run had not.
  EXPECT_THAT(values, ElementsAre(0, 1, 2, 3, 4));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->last_key, last_key);
  EXPECT_EQ(after->written_count, 5u);
  EXPECT_TRUE(after->completed);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  runtime.RequestStop();
  EXPECT_EQ(runtime.Wait(), 0);
}

// The consumer process of the test below: this binary run again with a filter selecting this
// test and the Fabric's address in PERPER_TEST_CONSUMER_FABRIC. Its Deploy runs the average
// loop over the stream "numbers" and stops the process when the stream completed.
TEST(ExactlyOnceConsumerProcess, Run) {
  const char* endpoint = std::getenv("PERPER_TEST_CONSUMER_FABRIC");
  if (endpoint == nullptr) {
    GTEST_SKIP() << "the consumer process of AConsumerKilledMidwayAndRestartedCountsEachItemOnce";
  }
  Agent app("Averager");
  app.on_deploy([](Context& ctx) -> Task<void> {
    grpc2::model::PerperStream model;
    model.set_stream("numbers");
    absl::Status status = co_await Average(ctx.stream(model), ctx.dictionary("averages"));
    if (!status.ok()) {
      std::fprintf(stderr, "consumer failed: %s\n", status.ToString().c_str());
    }
    ctx.stop_process(status.ok() ? 0 : 3);
  });
  RunOptions options;
  options.fabric_endpoint = endpoint;
  Runtime runtime(app, options);
  ASSERT_TRUE(runtime.Start().ok());
  EXPECT_EQ(runtime.Wait(), 0);
}

std::string ThisBinary() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n > 0 ? std::string(path, n) : std::string();
}

TEST_F(ExactlyOnceTest, AConsumerKilledMidwayAndRestartedCountsEachItemOnce) {
  constexpr int64_t kItems = 3000;
  const std::string address = fabric_->address();
  CreateStream(address, "numbers");
  WriteValues(address, "numbers", 1, kItems, /*complete=*/true);
  const std::vector<std::string> env{"PERPER_TEST_CONSUMER_FABRIC=" + address};
  const std::vector<std::string> args{"--gtest_filter=ExactlyOnceConsumerProcess.Run"};
  auto count = [&] { return ReadInt(address, "averages", "count").value_or(0); };
  {
    ChildProcess consumer(ThisBinary(), env, args);
    ASSERT_TRUE(WaitFor([&] { return count() >= 300; }, 60s)) << consumer.Output();
    consumer.Kill(SIGKILL);
    EXPECT_EQ(consumer.Wait(10s), 128 + SIGKILL);
  }
  int64_t at_kill = count();
  EXPECT_LT(at_kill, kItems) << "the consumer finished before it was killed";
  ChildProcess restarted(ThisBinary(), env, args);
  ASSERT_EQ(restarted.Wait(120s), 0) << restarted.Output();
  EXPECT_EQ(ReadInt(address, "averages", "count"), kItems);
  EXPECT_EQ(ReadInt(address, "averages", "total"), kItems * (kItems + 1) / 2);
}

}  // namespace
}  // namespace perper
