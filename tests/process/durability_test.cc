// SPDX-License-Identifier: MIT
// kill -9 of a Fabric under load loses no acknowledged write: executions, completions, stream
// items, stream completion, listener positions and dictionary entries all survive, and a named
// listener resumes where it was.
#include <signal.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

constexpr int kWriters = 4;

// What the Fabric acknowledged before it was killed.
struct Acknowledged {
  std::mutex mu;
  std::set<std::string> executions;
  std::set<std::string> completed;
  std::set<int64_t> item_keys;
  std::set<std::string> dictionary_keys;
  int64_t listener_position = kNoPosition;
  static constexpr int64_t kNoPosition = -1;
  std::atomic<int> operations{0};
};

void Writer(int id, std::shared_ptr<grpc::Channel> channel, Acknowledged* acked,
            std::atomic<bool>* stop) {
  auto executions = grpc2::FabricExecutions::NewStub(channel);
  auto streams = grpc2::FabricStreams::NewStub(channel);
  auto dictionary = grpc2::FabricStatesDictionary::NewStub(channel);
  google::protobuf::Empty empty;
  for (int i = 0; !stop->load(); ++i) {
    std::string execution = "exec-" + std::to_string(id) + "-" + std::to_string(i);
    grpc2::ExecutionsCreateRequest create;
    create.mutable_execution()->set_execution(execution);
    create.mutable_instance()->set_agent("Agent");
    create.mutable_instance()->set_instance("instance-1");
    create.set_delegate("Work");
    *create.add_arguments() = Int64Value(i);
    if (!executions->Create(Context(std::chrono::seconds(2)).get(), create, &empty).ok()) return;
    {
      std::lock_guard<std::mutex> lock(acked->mu);
      acked->executions.insert(execution);
    }
    if (i % 2 == 0) {
      grpc2::ExecutionsCompleteRequest complete;
      complete.mutable_execution()->set_execution(execution);
      *complete.add_results() = Int64Value(i * 10);
      if (!executions->Complete(Context(std::chrono::seconds(2)).get(), complete, &empty).ok()) {
        return;
      }
      std::lock_guard<std::mutex> lock(acked->mu);
      acked->completed.insert(execution);
    }

    int64_t key = int64_t{id} * 1000000 + i;
    grpc2::StreamsWriteItemRequest write;
    write.mutable_stream()->set_stream("items");
    write.set_key(key);
    *write.mutable_value() = Int64Value(key);
    if (!streams->WriteItem(Context(std::chrono::seconds(2)).get(), write, &empty).ok()) return;
    {
      std::lock_guard<std::mutex> lock(acked->mu);
      acked->item_keys.insert(key);
    }

    if (id == 0) {
      grpc2::StreamsMoveListenerRequest move;
      move.mutable_stream()->set_stream("items");
      move.set_listener_name("reader");
      move.set_reached_key(key);
      if (!streams->MoveListener(Context(std::chrono::seconds(2)).get(), move, &empty).ok()) {
        return;
      }
      std::lock_guard<std::mutex> lock(acked->mu);
      acked->listener_position = key;
    }

    std::string dict_key = "key-" + std::to_string(id) + "-" + std::to_string(i);
    grpc2::StatesDictionaryOperateRequest set;
    set.mutable_dictionary()->set_dictionary("dict");
    *set.mutable_key() = StringValue(dict_key);
    set.set_set_new_value(true);
    *set.mutable_new_value() = Int64Value(i);
    grpc2::StatesDictionaryOperateResponse set_response;
    if (!dictionary->Operate(Context(std::chrono::seconds(2)).get(), set, &set_response).ok()) {
      return;
    }
    {
      std::lock_guard<std::mutex> lock(acked->mu);
      acked->dictionary_keys.insert(dict_key);
    }
    acked->operations.fetch_add(1);
  }
}

TEST(DurabilityTest, KillDashNineLosesNoAcknowledgedWrite) {
  TempDir data;
  std::vector<std::string> args = {"--storage",         "rocksdb",     "--data-dir",
                                   data.path() + "/db", "--log-level", "warn"};
  FabricProcess first(args);
  ASSERT_TRUE(first.Start()) << first.Log();
  auto channel = first.NewChannel();
  auto streams = grpc2::FabricStreams::NewStub(channel);
  google::protobuf::Empty empty;

  // A persistent stream under load, and a completed one.
  for (const char* name : {"items", "finished"}) {
    grpc2::StreamsCreateRequest create;
    create.mutable_stream()->set_stream(name);
    create.set_ephemeral(false);
    ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  }
  grpc2::StreamsWriteItemRequest write;
  write.mutable_stream()->set_stream("finished");
  write.set_key(7);
  *write.mutable_value() = StringValue("last words");
  ASSERT_TRUE(streams->WriteItem(Context().get(), write, &empty).ok());
  grpc2::StreamsCompleteRequest complete;
  complete.mutable_stream()->set_stream("finished");
  ASSERT_TRUE(streams->Complete(Context().get(), complete, &empty).ok());

  Acknowledged acked;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int id = 0; id < kWriters; ++id) {
    writers.emplace_back(Writer, id, first.NewChannel(), &acked, &stop);
  }
  // Kill mid-load, once a good number of operations has been acknowledged.
  ASSERT_TRUE(WaitFor([&] { return acked.operations.load() >= 400; }, std::chrono::seconds(60)))
      << first.Log();
  first.Kill(SIGKILL);
  EXPECT_EQ(first.Wait(), 128 + SIGKILL);
  stop = true;
  for (auto& t : writers) t.join();

  FabricProcess second(args);
  ASSERT_TRUE(second.Start()) << second.Log();
  channel = second.NewChannel();

  // Executions and completions.
  auto introspection = grpc2::FabricIntrospection::NewStub(channel);
  grpc2::IntrospectionListExecutionsRequest list;
  list.set_agent("Agent");
  list.set_include_finished(true);
  list.set_limit(100000);
  grpc2::IntrospectionListExecutionsResponse listed;
  ASSERT_TRUE(introspection->ListExecutions(Context().get(), list, &listed).ok());
  std::set<std::string> present;
  std::set<std::string> finished;
  for (const auto& e : listed.executions()) {
    present.insert(e.execution().execution());
    if (e.finished()) finished.insert(e.execution().execution());
  }
  for (const std::string& id : acked.executions) EXPECT_TRUE(present.count(id)) << id;
  for (const std::string& id : acked.completed) EXPECT_TRUE(finished.count(id)) << id;
  // A completed execution's result is there too.
  auto executions = grpc2::FabricExecutions::NewStub(channel);
  grpc2::ExecutionsGetResultRequest get;
  get.mutable_execution()->set_execution("exec-0-0");
  grpc2::ExecutionsGetResultResponse result;
  ASSERT_TRUE(executions->GetResult(Context().get(), get, &result).ok());
  ASSERT_EQ(result.results_size(), 1);
  EXPECT_EQ(IntOf(result.results(0)), 0);

  // Stream items: replay from the first key sees every acknowledged key.
  streams = grpc2::FabricStreams::NewStub(channel);
  {
    std::set<int64_t> seen;
    auto context = Context(std::chrono::seconds(20));
    grpc2::StreamsListenItemsRequest listen;
    listen.mutable_stream()->set_stream("items");
    listen.mutable_stream()->set_start_key(0);
    auto reader = streams->ListenItems(context.get(), listen);
    grpc2::StreamsListenItemsResponse item;
    int64_t max_acked = *acked.item_keys.rbegin();
    while (reader->Read(&item)) {
      EXPECT_EQ(IntOf(item.value()), item.key());
      seen.insert(item.key());
      if (item.key() >= max_acked) break;
    }
    context->TryCancel();
    for (int64_t key : acked.item_keys) EXPECT_TRUE(seen.count(key)) << key;
  }

  // The named listener resumes from its saved position (at least the acknowledged one).
  {
    auto context = Context(std::chrono::seconds(20));
    grpc2::StreamsListenItemsRequest listen;
    listen.mutable_stream()->set_stream("items");
    listen.mutable_stream()->set_start_key(0);
    listen.set_listener_name("reader");
    auto reader = streams->ListenItems(context.get(), listen);
    grpc2::StreamsListenItemsResponse item;
    ASSERT_TRUE(reader->Read(&item));
    EXPECT_GE(item.key(), acked.listener_position);
    EXPECT_LT(item.key(), 1000000);  // Writer 0's keys: the listener's own position.
    context->TryCancel();
    reader->Finish();
  }

  // The completed stream still ends after its last item.
  {
    auto context = Context(std::chrono::seconds(20));
    grpc2::StreamsListenItemsRequest listen;
    listen.mutable_stream()->set_stream("finished");
    listen.mutable_stream()->set_start_key(0);
    auto reader = streams->ListenItems(context.get(), listen);
    grpc2::StreamsListenItemsResponse item;
    ASSERT_TRUE(reader->Read(&item));
    EXPECT_EQ(item.key(), 7);
    EXPECT_EQ(StringOf(item.value()), "last words");
    EXPECT_FALSE(reader->Read(&item));
    EXPECT_TRUE(reader->Finish().ok());
  }

  // Dictionary entries.
  auto dictionary = grpc2::FabricStatesDictionary::NewStub(channel);
  grpc2::StatesDictionaryListItemsRequest items;
  items.mutable_dictionary()->set_dictionary("dict");
  auto context = Context();
  auto reader = dictionary->ListItems(context.get(), items);
  grpc2::StatesDictionaryListItemsResponse entry;
  std::set<std::string> keys;
  while (reader->Read(&entry)) keys.insert(StringOf(entry.key()));
  ASSERT_TRUE(reader->Finish().ok());
  for (const std::string& key : acked.dictionary_keys) EXPECT_TRUE(keys.count(key)) << key;

  second.Kill(SIGTERM);
  EXPECT_EQ(second.Wait(), 0);
}

}  // namespace
}  // namespace perper::testing
