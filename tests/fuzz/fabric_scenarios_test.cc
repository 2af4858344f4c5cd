// SPDX-License-Identifier: MIT
// Adversarial sequences against an in-process Fabric on each backend (label: fuzz): objects
// deleted under open calls, instance trees and cycles torn down, state deleted right after it is
// written, client streams without a first message, completions on the reservation call, and IDs
// longer than any status message should be. Every call has a deadline, so a hang fails the test
// instead of blocking it.
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

#include "tests/fuzz/fuzz_support.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/redis_backends.h"

namespace perper::testing::fuzz {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::AnyOf;
using ::testing::Le;

constexpr milliseconds kAnswerWithin = seconds(5);
constexpr size_t kMaxStatusMessage = 1024;

class FabricScenariosTest : public FabricTest {
 protected:
  void SetUp() override {
    FabricTest::SetUp();
    worker_ = std::make_unique<ExecutionWorker>(fabric().NewChannel(), 7);
  }
  void TearDown() override {
    worker_.reset();
    FabricTest::TearDown();
  }

  grpc::Status CreateAndStart(const std::string& id, const std::string& parent) {
    grpc2::InstancesCreateAndStartRequest request;
    request.mutable_instance()->set_instance(id);
    request.mutable_instance()->set_agent(kServedAgents[0]);
    if (!parent.empty()) {
      request.mutable_parent()->set_instance(parent);
      request.mutable_parent()->set_agent(kServedAgents[0]);
    }
    grpc2::ExecutionsGetResultResponse response;
    return Instances()->CreateAndStart(Context(kAnswerWithin).get(), request, &response);
  }

  grpc::Status StopAndDelete(const std::string& id) {
    grpc2::InstancesStopAndDeleteRequest request;
    request.mutable_instance()->set_instance(id);
    request.mutable_instance()->set_agent(kServedAgents[0]);
    grpc2::ExecutionsGetResultResponse response;
    return Instances()->StopAndDelete(Context(kAnswerWithin).get(), request, &response);
  }

  std::vector<std::string> InstanceIds() {
    grpc2::IntrospectionListInstancesRequest request;
    grpc2::IntrospectionListInstancesResponse response;
    grpc::Status status =
        Introspection()->ListInstances(Context(kAnswerWithin).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> ids;
    for (const auto& instance : response.instances()) ids.push_back(instance.instance());
    return ids;
  }

  // Runs `step(t, round)` for rounds 0 .. rounds-1 on each of `threads` threads at once; a thread
  // stops at its first status that is not OK, which fails the test.
  void InThreads(int threads, int rounds,
                 const std::function<grpc::Status(int t, int round)>& step) {
    std::vector<std::thread> running;
    std::atomic<int> failures{0};
    for (int t = 0; t < threads; ++t) {
      running.emplace_back([&, t] {
        for (int round = 0; round < rounds; ++round) {
          grpc::Status status = step(t, round);
          if (!status.ok()) {
            ADD_FAILURE() << "thread " << t << " round " << round << ": " << status.error_code()
                          << " " << status.error_message();
            ++failures;
            return;
          }
        }
      });
    }
    for (std::thread& thread : running) thread.join();
    EXPECT_EQ(failures.load(), 0);
  }

  std::unique_ptr<ExecutionWorker> worker_;
};

TEST_P(FabricScenariosTest, StreamDeletedUnderListenerEndsTheCallWithNotFound) {
  auto streams = Streams();
  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("s");
  google::protobuf::Empty empty;
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  grpc2::StreamsListenItemsRequest listen;
  listen.mutable_stream()->set_stream("s");
  listen.set_listener_name("L");
  auto context = Context(kAnswerWithin * 2);
  auto reader = streams->ListenItems(context.get(), listen);
  for (int64_t key = 1; key <= 3; ++key) {
    grpc2::StreamsWriteItemRequest write;
    write.mutable_stream()->set_stream("s");
    write.set_key(key);
    *write.mutable_value() = Int64Value(key);
    ASSERT_TRUE(streams->WriteItem(Context().get(), write, &empty).ok());
  }
  grpc2::StreamsListenItemsResponse item;
  for (int64_t key = 1; key <= 3; ++key) {
    ASSERT_TRUE(reader->Read(&item));
    EXPECT_EQ(item.key(), key);
  }
  grpc2::StreamsDeleteRequest remove;
  remove.mutable_stream()->set_stream("s");
  ASSERT_TRUE(streams->Delete(Context(kAnswerWithin).get(), remove, &empty).ok());
  EXPECT_FALSE(reader->Read(&item));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
}

TEST_P(FabricScenariosTest, ExecutionCreatedAndDeletedWhileListening) {
  auto executions = Executions();
  grpc2::ExecutionsListenRequest listen;
  listen.mutable_instance_filter()->set_agent("Idle");
  auto context = Context(kAnswerWithin * 2);
  auto reader = executions->Listen(context.get(), listen);
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_TRUE(response.start_of_stream());
  google::protobuf::Empty empty;
  for (int round = 0; round < 20; ++round) {
    std::string id = "x" + std::to_string(round);
    grpc2::ExecutionsCreateRequest create;
    create.mutable_execution()->set_execution(id);
    create.mutable_instance()->set_agent("Idle");
    create.mutable_instance()->set_instance("in");
    create.set_delegate("f");
    ASSERT_TRUE(executions->Create(Context().get(), create, &empty).ok());
    // Seen before it is deleted: where hints are delivered apart from the writer (redis), an
    // execution deleted before the listener read it is, rightly, never sent at all.
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_EQ(response.execution().execution(), id);
    EXPECT_FALSE(response.deleted());
    grpc2::ExecutionsDeleteRequest remove;
    remove.mutable_execution()->set_execution(id);
    ASSERT_TRUE(executions->Delete(Context(kAnswerWithin).get(), remove, &empty).ok());
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_EQ(response.execution().execution(), id);
    EXPECT_TRUE(response.deleted());
  }
  context->TryCancel();
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
}

TEST_P(FabricScenariosTest, StopAndDeleteOfAnInstanceWithChildren) {
  ASSERT_TRUE(CreateAndStart("p", "").ok());
  ASSERT_TRUE(CreateAndStart("c1", "p").ok());
  ASSERT_TRUE(CreateAndStart("c2", "p").ok());
  ASSERT_TRUE(CreateAndStart("g1", "c1").ok());
  grpc::Status status = StopAndDelete("p");
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_TRUE(InstanceIds().empty()) << ::testing::PrintToString(InstanceIds());
}

TEST_P(FabricScenariosTest, StopAndDeleteOfInstancesThatAreEachOthersParents) {
  ASSERT_TRUE(CreateAndStart("x", "y").ok());
  // y -> x is listed already: x as y's parent would close the cycle, and is refused.
  grpc::Status created = CreateAndStart("y", "x");
  EXPECT_EQ(created.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << created.error_message();
  grpc::Status status = StopAndDelete("x");
  EXPECT_NE(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << "StopAndDelete of a parent cycle did not answer within 5 s";
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_TRUE(InstanceIds().empty()) << ::testing::PrintToString(InstanceIds());
}

TEST_P(FabricScenariosTest, StateDeletedRightAfterWriting) {
  auto dictionary = Dictionary();
  auto list = List();
  google::protobuf::Empty empty;
  for (int round = 0; round < 10; ++round) {
    bool keep_cache = round % 2 == 1;
    grpc2::StatesDictionaryOperateRequest set;
    set.mutable_dictionary()->set_dictionary("d");
    *set.mutable_key() = StringValue("k" + std::to_string(round));
    set.set_set_new_value(true);
    *set.mutable_new_value() = Int64Value(round);
    grpc2::StatesDictionaryOperateResponse set_response;
    ASSERT_TRUE(dictionary->Operate(Context().get(), set, &set_response).ok());
    grpc2::StatesDictionaryDeleteRequest remove;
    remove.mutable_dictionary()->set_dictionary("d");
    remove.set_keep_cache(keep_cache);
    ASSERT_TRUE(dictionary->Delete(Context().get(), remove, &empty).ok());
    grpc2::StatesDictionaryCountItemsRequest count;
    count.mutable_dictionary()->set_dictionary("d");
    grpc2::StatesDictionaryCountItemsResponse counted;
    ASSERT_TRUE(dictionary->CountItems(Context().get(), count, &counted).ok());
    EXPECT_EQ(counted.count(), 0);

    grpc2::StatesListOperateRequest push;
    push.mutable_list()->set_list("l");
    push.set_at_back(true);
    *push.add_insert_values() = Int64Value(round);
    grpc2::StatesListOperateResponse push_response;
    ASSERT_TRUE(list->Operate(Context().get(), push, &push_response).ok());
    grpc2::StatesListDeleteRequest remove_list;
    remove_list.mutable_list()->set_list("l");
    remove_list.set_keep_cache(keep_cache);
    ASSERT_TRUE(list->Delete(Context().get(), remove_list, &empty).ok());
    grpc2::StatesListCountItemsRequest count_list;
    count_list.mutable_list()->set_list("l");
    grpc2::StatesListCountItemsResponse list_counted;
    ASSERT_TRUE(list->CountItems(Context().get(), count_list, &list_counted).ok());
    EXPECT_EQ(list_counted.count(), 0u);
  }
}

TEST_P(FabricScenariosTest, StateDeletedWhileOthersWriteTheSameName) {
  InThreads(4, 40, [&](int t, int round) {
    auto dictionary = grpc2::FabricStatesDictionary::NewStub(channel());
    auto list = grpc2::FabricStatesList::NewStub(channel());
    google::protobuf::Empty empty;
    grpc::Status status;
    if ((round + t) % 3 == 0) {
      grpc2::StatesDictionaryDeleteRequest remove;
      remove.mutable_dictionary()->set_dictionary("shared");
      remove.set_keep_cache(round % 2 == 0);
      status = dictionary->Delete(Context().get(), remove, &empty);
      if (status.ok()) {
        grpc2::StatesListDeleteRequest remove_list;
        remove_list.mutable_list()->set_list("shared");
        remove_list.set_keep_cache(round % 2 == 1);
        status = list->Delete(Context().get(), remove_list, &empty);
      }
    } else {
      grpc2::StatesDictionaryOperateRequest set;
      set.mutable_dictionary()->set_dictionary("shared");
      *set.mutable_key() = Int64Value(t * 1000 + round);
      set.set_set_new_value(true);
      *set.mutable_new_value() = Int64Value(round);
      grpc2::StatesDictionaryOperateResponse response;
      status = dictionary->Operate(Context().get(), set, &response);
      if (status.ok()) {
        grpc2::StatesListOperateRequest push;
        push.mutable_list()->set_list("shared");
        push.set_at_front(true);
        *push.add_insert_values() = Int64Value(round);
        grpc2::StatesListOperateResponse pushed;
        status = list->Operate(Context().get(), push, &pushed);
      }
    }
    return status;
  });
}

// Steps of one listener from several threads while the dictionary and the stream are deleted
// and created again under them: every step answers promptly, with OK or NOT_FOUND (the stream
// gone), and the Fabric stays consistent (each applied step moved the listener forward).
TEST_P(FabricScenariosTest, StepsWhileTheirStreamAndDictionaryAreDeleted) {
  const bool redis = IsRedisBackend(GetParam());
  InThreads(4, 40, [&](int t, int round) {
    auto streams = grpc2::FabricStreams::NewStub(channel());
    auto dictionary = grpc2::FabricStatesDictionary::NewStub(channel());
    google::protobuf::Empty empty;
    grpc::Status status;
    switch ((round + t) % 5) {
      case 0: {
        grpc2::StreamsDeleteRequest remove;
        remove.mutable_stream()->set_stream("stepped");
        status = streams->Delete(Context(kAnswerWithin).get(), remove, &empty);
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) status = grpc::Status::OK;
        break;
      }
      case 1: {
        grpc2::StatesDictionaryDeleteRequest remove;
        remove.mutable_dictionary()->set_dictionary("stepped-state");
        status = dictionary->Delete(Context(kAnswerWithin).get(), remove, &empty);
        break;
      }
      case 2: {
        grpc2::StreamsCreateRequest create;
        create.mutable_stream()->set_stream("stepped");
        create.set_ephemeral(true);
        status = streams->Create(Context(kAnswerWithin).get(), create, &empty);
        break;
      }
      default: {
        grpc2::StreamsStepRequest step;
        step.mutable_stream()->set_stream("stepped");
        step.set_listener_name("consumer");
        step.set_reached_key(round);
        step.mutable_dictionary()->set_dictionary("stepped-state");
        grpc2::StatesDictionaryOperateRequest* op = step.add_operations();
        *op->mutable_key() = StringValue("last");
        op->set_get_existing_value(true);
        op->set_set_new_value(true);
        *op->mutable_new_value() = Int64Value(round);
        grpc2::StreamsStepResponse response;
        status = streams->Step(Context(kAnswerWithin).get(), step, &response);
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          status = grpc::Status::OK;  // The stream is gone for now.
        } else if (status.ok() && response.applied() && response.position() != round &&
                   !(redis && response.position() > round)) {
          // With redis a step's fence and its listener live in two slots: once the deletion of
          // the dictionary dropped its fences, a step of an earlier round applies while another
          // thread's step already moved the listener further, which stays there
          // (docs/cluster.md, "Scripts and round trips").
          status = grpc::Status(grpc::StatusCode::INTERNAL, "an applied step is elsewhere");
        } else if (status.ok() && response.already_taken() && response.position() < round) {
          status = grpc::Status(grpc::StatusCode::INTERNAL, "taken below its position");
        }
      }
    }
    return status;
  });
}

TEST_P(FabricScenariosTest, ListenAndReserveWithoutAFirstMessageEndsWithInvalidArgument) {
  auto executions = Executions();
  auto context = Context(kAnswerWithin);
  auto stream = executions->ListenAndReserve(context.get());
  stream->WritesDone();
  grpc2::ExecutionsListenResponse response;
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "(DEADLINE_EXCEEDED is 4: the call stayed open) " << status.error_message();
}

TEST_P(FabricScenariosTest, ListenItemsAndMoveWithoutAFirstMessageEndsWithInvalidArgument) {
  auto streams = Streams();
  auto context = Context(kAnswerWithin);
  auto stream = streams->ListenItemsAndMove(context.get());
  stream->WritesDone();
  grpc2::StreamsListenItemsResponse response;
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "(DEADLINE_EXCEEDED is 4: the call stayed open) " << status.error_message();
}

TEST_P(FabricScenariosTest, CompletionsOnTheReservationCallReleaseTheReservations) {
  auto executions = Executions();
  google::protobuf::Empty empty;
  grpc2::ExecutionsCreateRequest create;
  create.mutable_execution()->set_execution("r1");
  create.mutable_instance()->set_agent("Reserved");
  create.mutable_instance()->set_instance("in");
  create.set_delegate("f");
  ASSERT_TRUE(executions->Create(Context().get(), create, &empty).ok());

  auto context = Context(kAnswerWithin * 2);
  auto stream = executions->ListenAndReserve(context.get());
  grpc2::ExecutionsListenAndReserveRequest first;
  first.mutable_filter()->mutable_instance_filter()->set_agent("Reserved");
  first.set_workgroup("w");
  first.set_reserve_next(1);
  ASSERT_TRUE(stream->Write(first));
  grpc2::ExecutionsListenResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.execution().execution(), "r1");

  grpc2::ExecutionsListenAndReserveRequest done;
  grpc2::ExecutionsCompleteRequest* completion = done.add_completions();
  completion->mutable_execution()->set_execution("r1");
  *completion->add_results() = Int64Value(1);
  ASSERT_TRUE(stream->Write(done));
  auto introspection = Introspection();
  bool released = WaitFor(
      [&] {
        grpc2::IntrospectionListReservationsRequest request;
        request.set_workgroup("w");
        grpc2::IntrospectionListReservationsResponse reservations;
        grpc::Status status =
            introspection->ListReservations(Context().get(), request, &reservations);
        return status.ok() && reservations.reservations_size() == 0;
      },
      kAnswerWithin);
  EXPECT_TRUE(released) << "r1 was completed on the reservation call but is still reserved";
  context->TryCancel();
  stream->Finish();
}

TEST_P(FabricScenariosTest, LongIdsKeepStatusMessagesSmall) {
  const std::string id(8000, 'q');
  google::protobuf::Empty empty;
  std::vector<std::pair<std::string, grpc::Status>> statuses;
  {
    grpc2::ExecutionsCompleteRequest request;
    request.mutable_execution()->set_execution(id);
    statuses.emplace_back("Executions.Complete",
                          Executions()->Complete(Context().get(), request, &empty));
  }
  {
    grpc2::StreamsWriteItemRequest request;
    request.mutable_stream()->set_stream(id);
    request.set_auto_key(true);
    *request.mutable_value() = Int64Value(1);
    statuses.emplace_back("Streams.WriteItem",
                          Streams()->WriteItem(Context().get(), request, &empty));
  }
  {
    grpc2::StreamsMoveListenerRequest request;
    request.mutable_stream()->set_stream(id);
    request.set_listener_name(id);
    request.set_reached_key(1);
    statuses.emplace_back("Streams.MoveListener",
                          Streams()->MoveListener(Context().get(), request, &empty));
  }
  {
    grpc2::StatesListOperateRequest request;
    request.mutable_list()->set_list(id);
    request.set_index(5);
    request.set_get_values(true);
    request.set_values_count(1);
    grpc2::StatesListOperateResponse response;
    statuses.emplace_back("StatesList.Operate",
                          List()->Operate(Context().get(), request, &response));
  }
  for (const auto& [call, status] : statuses) {
    // The Fabric's own answer (a message too large for the client's metadata limit would reach
    // the client as another code).
    EXPECT_THAT(status.error_code(),
                AnyOf(grpc::StatusCode::NOT_FOUND, grpc::StatusCode::INVALID_ARGUMENT,
                      grpc::StatusCode::OUT_OF_RANGE))
        << call << ": " << status.error_message().substr(0, 300);
    EXPECT_THAT(status.error_message().size(), Le(kMaxStatusMessage))
        << call << ": code " << status.error_code();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, FabricScenariosTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing::fuzz
