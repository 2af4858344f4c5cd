// SPDX-License-Identifier: MIT
// Values of 16 MiB work end to end with the default limits: as an execution's argument and
// result, a stream item and a state value, byte for byte. Larger ones get RESOURCE_EXHAUSTED
// naming the limit, and the Fabric keeps serving.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using ::testing::HasSubstr;

constexpr size_t kSixteenMiB = 16 * 1024 * 1024;

std::string Payload(size_t size, char seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(seed + i * 31);
  return bytes;
}

std::string BytesOf(const google::protobuf::Any& any) {
  google::protobuf::BytesValue value;
  EXPECT_TRUE(any.UnpackTo(&value)) << any.type_url();
  return value.value();
}

class LargeValuesTest : public FabricTest {};

TEST_P(LargeValuesTest, SixteenMiBArgumentAndResultRoundTrip) {
  auto executions = Executions();
  std::string argument = Payload(kSixteenMiB, 'a');
  std::string result = Payload(kSixteenMiB, 'r');
  google::protobuf::Empty empty;

  auto listen_context = Context(std::chrono::seconds(60));
  grpc2::ExecutionsListenRequest listen;
  listen.mutable_instance_filter()->set_agent("Big");
  auto reader = executions->Listen(listen_context.get(), listen);
  grpc2::ExecutionsListenResponse delivered;
  ASSERT_TRUE(reader->Read(&delivered));
  ASSERT_TRUE(delivered.start_of_stream());

  grpc2::ExecutionsCreateRequest create;
  create.mutable_execution()->set_execution("big-1");
  create.mutable_instance()->set_agent("Big");
  create.set_delegate("Echo");
  *create.add_arguments() = BytesValue(argument);
  grpc::Status status = executions->Create(Context(std::chrono::seconds(60)).get(), create, &empty);
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_TRUE(reader->Read(&delivered));
  ASSERT_EQ(delivered.arguments_size(), 1);
  EXPECT_TRUE(BytesOf(delivered.arguments(0)) == argument);
  listen_context->TryCancel();
  reader->Finish();

  grpc2::ExecutionsCompleteRequest complete;
  complete.mutable_execution()->set_execution("big-1");
  *complete.add_results() = BytesValue(result);
  status = executions->Complete(Context(std::chrono::seconds(60)).get(), complete, &empty);
  ASSERT_TRUE(status.ok()) << status.error_message();

  grpc2::ExecutionsGetResultRequest get;
  get.mutable_execution()->set_execution("big-1");
  grpc2::ExecutionsGetResultResponse response;
  status = executions->GetResult(Context(std::chrono::seconds(60)).get(), get, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_TRUE(BytesOf(response.results(0)) == result);
}

TEST_P(LargeValuesTest, SixteenMiBStreamItemAndStateValueRoundTrip) {
  auto streams = Streams();
  google::protobuf::Empty empty;
  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("big");
  create.set_ephemeral(false);
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  std::string item = Payload(kSixteenMiB, 'i');
  grpc2::StreamsWriteItemRequest write;
  write.mutable_stream()->set_stream("big");
  write.set_key(1);
  *write.mutable_value() = BytesValue(item);
  grpc::Status status = streams->WriteItem(Context(std::chrono::seconds(60)).get(), write, &empty);
  ASSERT_TRUE(status.ok()) << status.error_message();
  {
    auto context = Context(std::chrono::seconds(60));
    grpc2::StreamsListenItemsRequest listen;
    listen.mutable_stream()->set_stream("big");
    listen.mutable_stream()->set_start_key(0);
    auto reader = streams->ListenItems(context.get(), listen);
    grpc2::StreamsListenItemsResponse received;
    ASSERT_TRUE(reader->Read(&received));
    EXPECT_EQ(received.key(), 1);
    EXPECT_TRUE(BytesOf(received.value()) == item);
    context->TryCancel();
    reader->Finish();
  }

  auto dictionary = Dictionary();
  std::string value = Payload(kSixteenMiB, 'v');
  grpc2::StatesDictionaryOperateRequest set;
  set.mutable_dictionary()->set_dictionary("big-state");
  *set.mutable_key() = StringValue("k");
  set.set_set_new_value(true);
  *set.mutable_new_value() = BytesValue(value);
  grpc2::StatesDictionaryOperateResponse set_response;
  status = dictionary->Operate(Context(std::chrono::seconds(60)).get(), set, &set_response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  grpc2::StatesDictionaryOperateRequest get;
  get.mutable_dictionary()->set_dictionary("big-state");
  *get.mutable_key() = StringValue("k");
  get.set_get_existing_value(true);
  grpc2::StatesDictionaryOperateResponse got;
  ASSERT_TRUE(dictionary->Operate(Context(std::chrono::seconds(60)).get(), get, &got).ok());
  EXPECT_TRUE(BytesOf(got.previous_value()) == value);
}

TEST_P(LargeValuesTest, ValueOverTheDefaultLimitIsRefusedByName) {
  auto streams = Streams();
  google::protobuf::Empty empty;
  grpc2::StreamsCreateRequest create;
  create.mutable_stream()->set_stream("too-big");
  ASSERT_TRUE(streams->Create(Context().get(), create, &empty).ok());
  grpc2::StreamsWriteItemRequest write;
  write.mutable_stream()->set_stream("too-big");
  write.set_key(1);
  *write.mutable_value() = BytesValue(Payload(fabric::FabricLimits{}.max_value_bytes, 'x'));
  grpc::Status status = streams->WriteItem(Context(std::chrono::seconds(60)).get(), write, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("17825792"));
  // The Fabric goes on serving.
  write.set_key(2);
  *write.mutable_value() = Int64Value(2);
  EXPECT_TRUE(streams->WriteItem(Context().get(), write, &empty).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, LargeValuesTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
