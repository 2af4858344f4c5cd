// SPDX-License-Identifier: MIT
// fabric_tour: a scripted Perper application speaking the grpc2 protocol directly, to show what
// the Fabric does before any SDK is involved.
//
// A "Calculator" agent (a thread with a ListenAndReserve loop) serves calls; the main thread
// calls it through FabricInstances.Call, streams a sentence item by item to a listener that ends
// when the stream completes, and keeps a counter in a state dictionary.
//
//   fabric_tour 127.0.0.1:40400
#include <cstdio>
#include <string>
#include <thread>

#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/grpcpp.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace {

using google::protobuf::Any;
using google::protobuf::Empty;
namespace grpc2 = perper::grpc2;

Any Int(int64_t v) {
  google::protobuf::Int64Value value;
  value.set_value(v);
  Any any;
  any.PackFrom(value);
  return any;
}

int64_t AsInt(const Any& any) {
  google::protobuf::Int64Value value;
  any.UnpackTo(&value);
  return value.value();
}

Any Text(const std::string& v) {
  google::protobuf::StringValue value;
  value.set_value(v);
  Any any;
  any.PackFrom(value);
  return any;
}

std::string AsText(const Any& any) {
  google::protobuf::StringValue value;
  any.UnpackTo(&value);
  return value.value();
}

bool Check(const grpc::Status& status, const char* what) {
  if (status.ok()) return true;
  std::fprintf(stderr, "fabric_tour: %s failed: %s\n", what, status.error_message().c_str());
  return false;
}

// The Calculator agent: reserves executions of agent "Calculator", answers "Add" with the sum of
// its arguments, until `context` is cancelled.
void ServeCalculator(std::shared_ptr<grpc::Channel> channel, grpc::ClientContext* context) {
  auto executions = grpc2::FabricExecutions::NewStub(channel);
  auto stream = executions->ListenAndReserve(context);
  grpc2::ExecutionsListenAndReserveRequest first;
  first.set_reserve_next(1);
  first.mutable_filter()->mutable_instance_filter()->set_agent("Calculator");
  first.set_workgroup("calculators");
  stream->Write(first);
  grpc2::ExecutionsListenResponse execution;
  while (stream->Read(&execution)) {
    if (execution.start_of_stream() || execution.deleted()) continue;
    grpc2::ExecutionsCompleteRequest complete;
    complete.mutable_execution()->set_execution(execution.execution().execution());
    if (execution.delegate() == "Add") {
      int64_t sum = 0;
      for (const Any& argument : execution.arguments()) sum += AsInt(argument);
      *complete.add_results() = Int(sum);
    } else {
      complete.mutable_error()->set_message("Calculator has no delegate " + execution.delegate());
    }
    grpc::ClientContext complete_context;
    Empty empty;
    executions->Complete(&complete_context, complete, &empty);
    grpc2::ExecutionsListenAndReserveRequest more;
    more.set_reserve_next(1);
    stream->Write(more);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fabric_tour FABRIC_ADDRESS\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  auto instances = grpc2::FabricInstances::NewStub(channel);
  auto streams = grpc2::FabricStreams::NewStub(channel);
  auto dictionary = grpc2::FabricStatesDictionary::NewStub(channel);
  Empty empty;

  grpc::ClientContext agent_context;
  std::thread agent(ServeCalculator, channel, &agent_context);

  // 1. Calls: each is one FabricInstances.Call (create, wait, delete).
  for (int64_t a : {1, 20, 300}) {
    grpc2::ExecutionsCreateRequest call;
    call.mutable_execution()->set_execution("Add-" + std::to_string(a));
    call.mutable_instance()->set_agent("Calculator");
    call.mutable_instance()->set_instance("calculator-1");
    call.set_delegate("Add");
    *call.add_arguments() = Int(a);
    *call.add_arguments() = Int(2);
    grpc2::ExecutionsGetResultResponse result;
    grpc::ClientContext context;
    if (!Check(instances->Call(&context, call, &result), "Call")) return 1;
    std::printf("Calculator.Add(%ld, 2) = %ld\n", static_cast<long>(a),
                static_cast<long>(AsInt(result.results(0))));
  }

  // 2. A stream: the listener is registered atomically with its subscription, so every item
  //    written after WaitForListener returns reaches it; completion ends the listener.
  {
    grpc::ClientContext context;
    grpc2::StreamsCreateRequest create;
    create.mutable_stream()->set_stream("sentence");
    create.set_ephemeral(true);
    if (!Check(streams->Create(&context, create, &empty), "Streams.Create")) return 1;
  }
  std::string received;
  std::thread listener([&] {
    grpc::ClientContext context;
    grpc2::StreamsListenItemsRequest listen;
    listen.mutable_stream()->set_stream("sentence");
    listen.mutable_stream()->set_start_key(-1);
    listen.set_start_from_latest(true);
    auto reader = streams->ListenItems(&context, listen);
    grpc2::StreamsListenItemsResponse item;
    while (reader->Read(&item)) received += AsText(item.value());
    Check(reader->Finish(), "ListenItems");
  });
  {
    grpc::ClientContext context;
    grpc2::StreamsWaitForListenerRequest wait;
    wait.mutable_stream()->set_stream("sentence");
    if (!Check(streams->WaitForListener(&context, wait, &empty), "WaitForListener")) return 1;
  }
  const std::string sentence = "Hello world through stream!";
  for (char c : sentence) {
    grpc::ClientContext context;
    grpc2::StreamsWriteItemRequest write;
    write.mutable_stream()->set_stream("sentence");
    write.set_auto_key(true);
    *write.mutable_value() = Text(std::string(1, c));
    if (!Check(streams->WriteItem(&context, write, &empty), "WriteItem")) return 1;
  }
  {
    grpc::ClientContext context;
    grpc2::StreamsCompleteRequest complete;
    complete.mutable_stream()->set_stream("sentence");
    if (!Check(streams->Complete(&context, complete, &empty), "Streams.Complete")) return 1;
  }
  listener.join();
  std::printf("stream delivered: %s\n", received.c_str());

  // 3. State: a compare-and-set counter in a dictionary.
  int64_t counter = 0;
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    grpc2::StatesDictionaryOperateRequest op;
    op.mutable_dictionary()->set_dictionary("tour-state");
    *op.mutable_key() = Text("visits");
    op.set_get_existing_value(true);
    op.set_set_new_value(true);
    *op.mutable_new_value() = Int(counter + 1);
    grpc2::StatesDictionaryOperateResponse response;
    if (!Check(dictionary->Operate(&context, op, &response), "Operate")) return 1;
    counter = response.has_previous_value() ? AsInt(response.previous_value()) + 1 : 1;
  }
  std::printf("state counter: %ld\n", static_cast<long>(counter));

  agent_context.TryCancel();
  agent.join();
  std::printf("tour finished\n");
  return 0;
}
