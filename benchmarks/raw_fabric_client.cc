// SPDX-License-Identifier: MIT
#include "benchmarks/raw_fabric_client.h"

#include <condition_variable>

#include <google/protobuf/wrappers.pb.h>

namespace perper::bench {

namespace g2 = perper::grpc2;

google::protobuf::Any PackBytes(const std::string& bytes) {
  google::protobuf::BytesValue value;
  value.set_value(bytes);
  google::protobuf::Any any;
  any.PackFrom(value);
  return any;
}

std::string UnpackBytes(const google::protobuf::Any& any) {
  google::protobuf::BytesValue value;
  if (!any.UnpackTo(&value)) return {};
  return value.value();
}

std::shared_ptr<grpc::Channel> OpenChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

RawFabricClient::RawFabricClient(const std::string& address)
    : channel_(OpenChannel(address)),
      executions_(g2::FabricExecutions::NewStub(channel_)),
      instances_(g2::FabricInstances::NewStub(channel_)),
      streams_(g2::FabricStreams::NewStub(channel_)),
      dictionary_(g2::FabricStatesDictionary::NewStub(channel_)),
      introspection_(g2::FabricIntrospection::NewStub(channel_)) {}

namespace {

g2::ExecutionsCreateRequest CreateRequest(const std::string& execution, const std::string& agent,
                                          const std::string& instance, const std::string& delegate,
                                          const std::string& argument) {
  g2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution(execution);
  request.mutable_instance()->set_agent(agent);
  request.mutable_instance()->set_instance(instance);
  request.set_delegate(delegate);
  *request.add_arguments() = PackBytes(argument);
  return request;
}

grpc::Status FirstResult(const g2::ExecutionsGetResultResponse& response,
                         const std::string& execution, std::string& result) {
  if (response.deleted()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "execution " + execution + " was deleted");
  }
  if (response.has_error() && !response.error().message().empty()) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, response.error().message());
  }
  result = response.results_size() > 0 ? UnpackBytes(response.results(0)) : std::string();
  return grpc::Status::OK;
}

}  // namespace

grpc::Status RawFabricClient::Call(const std::string& execution, const std::string& agent,
                                   const std::string& instance, const std::string& delegate,
                                   const std::string& argument, std::string& result) {
  grpc::ClientContext context;
  g2::ExecutionsGetResultResponse response;
  grpc::Status status = instances_->Call(
      &context, CreateRequest(execution, agent, instance, delegate, argument), &response);
  if (!status.ok()) return status;
  return FirstResult(response, execution, result);
}

grpc::Status RawFabricClient::CreateExecution(const std::string& execution,
                                              const std::string& agent, const std::string& instance,
                                              const std::string& delegate,
                                              const std::string& argument) {
  grpc::ClientContext context;
  google::protobuf::Empty response;
  return executions_->Create(
      &context, CreateRequest(execution, agent, instance, delegate, argument), &response);
}

grpc::Status RawFabricClient::GetResult(const std::string& execution, std::string& result,
                                        bool wait_for_creation) {
  grpc::ClientContext context;
  g2::ExecutionsGetResultRequest request;
  request.mutable_execution()->set_execution(execution);
  request.set_wait_for_creation(wait_for_creation);
  g2::ExecutionsGetResultResponse response;
  grpc::Status status = executions_->GetResult(&context, request, &response);
  if (!status.ok()) return status;
  return FirstResult(response, execution, result);
}

grpc::Status RawFabricClient::DeleteExecution(const std::string& execution) {
  grpc::ClientContext context;
  g2::ExecutionsDeleteRequest request;
  request.mutable_execution()->set_execution(execution);
  google::protobuf::Empty response;
  return executions_->Delete(&context, request, &response);
}

grpc::Status RawFabricClient::CompleteExecution(const std::string& execution,
                                                const std::string& result) {
  grpc::ClientContext context;
  g2::ExecutionsCompleteRequest request;
  request.mutable_execution()->set_execution(execution);
  *request.add_results() = PackBytes(result);
  google::protobuf::Empty response;
  return executions_->Complete(&context, request, &response);
}

grpc::Status RawFabricClient::CountUnfinished(const std::string& agent, uint32_t limit,
                                              size_t& count) {
  grpc::ClientContext context;
  g2::IntrospectionListExecutionsRequest request;
  request.set_agent(agent);
  request.set_limit(limit);
  g2::IntrospectionListExecutionsResponse response;
  grpc::Status status = introspection_->ListExecutions(&context, request, &response);
  count = static_cast<size_t>(response.executions_size());
  return status;
}

grpc::Status RawFabricClient::CreateStream(const std::string& stream, bool ephemeral) {
  grpc::ClientContext context;
  g2::StreamsCreateRequest request;
  request.mutable_stream()->set_stream(stream);
  request.set_ephemeral(ephemeral);
  google::protobuf::Empty response;
  return streams_->Create(&context, request, &response);
}

grpc::Status RawFabricClient::WriteItem(const std::string& stream, const std::string& value) {
  grpc::ClientContext context;
  g2::StreamsWriteItemRequest request;
  request.mutable_stream()->set_stream(stream);
  request.set_auto_key(true);
  *request.mutable_value() = PackBytes(value);
  google::protobuf::Empty response;
  return streams_->WriteItem(&context, request, &response);
}

grpc::Status RawFabricClient::WriteItems(const std::string& stream,
                                         const std::vector<std::string>& values) {
  grpc::ClientContext context;
  g2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream(stream);
  for (const std::string& value : values) {
    auto* item = request.add_items();
    item->set_auto_key(true);
    *item->mutable_value() = PackBytes(value);
  }
  g2::StreamsWriteItemsResponse response;
  return streams_->WriteItems(&context, request, &response);
}

grpc::Status RawFabricClient::CompleteStream(const std::string& stream) {
  grpc::ClientContext context;
  g2::StreamsCompleteRequest request;
  request.mutable_stream()->set_stream(stream);
  google::protobuf::Empty response;
  return streams_->Complete(&context, request, &response);
}

grpc::Status RawFabricClient::ListenAll(
    const std::string& stream, const std::string& listener, int ack_every,
    const std::function<void(int64_t, const std::string&)>& on_item, int items_per_message) {
  grpc::ClientContext context;
  g2::StreamsListenItemsRequest listen;
  listen.mutable_stream()->set_stream(stream);
  listen.mutable_stream()->set_start_key(0);
  listen.set_listener_name(listener);
  listen.set_max_items_per_message(items_per_message);
  g2::StreamsListenItemsResponse response;
  // The message and the unpacked value are reused, so reading allocates nothing per item.
  google::protobuf::BytesValue bytes;
  auto deliver = [&bytes, &on_item](int64_t key, const google::protobuf::Any& any) {
    if (!any.UnpackTo(&bytes)) bytes.Clear();
    on_item(key, bytes.value());
  };
  // Calls `each(key)` after delivering every item of `response`, packed or not.
  auto deliver_all = [&](const auto& each) {
    if (response.items_size() == 0) {
      deliver(response.key(), response.value());
      each(response.key());
      return;
    }
    for (const auto& item : response.items()) {
      deliver(item.key(), item.value());
      each(item.key());
    }
  };
  if (ack_every <= 0) {
    auto reader = streams_->ListenItems(&context, listen);
    while (reader->Read(&response)) deliver_all([](int64_t) {});
    return reader->Finish();
  }
  auto call = streams_->ListenItemsAndMove(&context);
  g2::StreamsListenItemsAndMoveRequest first;
  *first.mutable_listen() = listen;
  if (!call->Write(first)) return call->Finish();
  int since_ack = 0;
  while (call->Read(&response)) {
    deliver_all([&](int64_t key) {
      if (++since_ack == ack_every) {
        since_ack = 0;
        g2::StreamsListenItemsAndMoveRequest ack;
        ack.set_reached_key(key);
        call->Write(ack);
      }
    });
  }
  return call->Finish();
}

grpc::Status RawFabricClient::StreamInfo(const std::string& stream, uint64_t& items,
                                         size_t& listeners) {
  grpc::ClientContext context;
  g2::IntrospectionListStreamsRequest request;
  request.set_stream_prefix(stream);
  g2::IntrospectionListStreamsResponse response;
  grpc::Status status = introspection_->ListStreams(&context, request, &response);
  items = 0;
  listeners = 0;
  for (const auto& summary : response.streams()) {
    if (summary.stream() != stream) continue;
    items = summary.item_count();
    listeners = static_cast<size_t>(summary.listeners_size());
  }
  return status;
}

grpc::Status RawFabricClient::DictionarySet(const std::string& dictionary, const std::string& key,
                                            const std::string& value) {
  grpc::ClientContext context;
  g2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  *request.mutable_key() = PackBytes(key);
  request.set_set_new_value(true);
  *request.mutable_new_value() = PackBytes(value);
  g2::StatesDictionaryOperateResponse response;
  return dictionary_->Operate(&context, request, &response);
}

grpc::Status RawFabricClient::DictionaryGet(const std::string& dictionary, const std::string& key,
                                            std::string& value) {
  grpc::ClientContext context;
  g2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  *request.mutable_key() = PackBytes(key);
  request.set_get_existing_value(true);
  g2::StatesDictionaryOperateResponse response;
  grpc::Status status = dictionary_->Operate(&context, request, &response);
  value = UnpackBytes(response.previous_value());
  return status;
}

grpc::Status ReserveLoop(
    RawFabricClient& client, const std::string& agent, const std::string& workgroup,
    uint64_t credits,
    const std::function<void(const g2::ExecutionsListenResponse&, CreditGrant&)>& handle) {
  using Call =
      grpc::ClientReaderWriter<g2::ExecutionsListenAndReserveRequest, g2::ExecutionsListenResponse>;
  // Whoever queues something while no write is in flight writes it, and then whatever was
  // queued meanwhile, in one message per turn: no writer thread, so no thread hop between an
  // execution's arrival and its completion on the reading thread.
  class Sender : public CreditGrant {
   public:
    explicit Sender(Call& call) : call_(call) {}
    void Grant(uint64_t count) override {
      std::unique_lock<std::mutex> lock(mutex_);
      credits_ += count;
      Drain(lock);
    }
    void Complete(g2::ExecutionsCompleteRequest completion, uint64_t count,
                  std::function<void(bool)> sent) override {
      std::unique_lock<std::mutex> lock(mutex_);
      *next_.add_completions() = std::move(completion);
      credits_ += count;
      if (sent) sent_.push_back(std::move(sent));
      Drain(lock);
    }
    // Waits for the write in flight, if any (the call must outlive it).
    void Quiesce() {
      std::unique_lock<std::mutex> lock(mutex_);
      idle_.wait(lock, [&] { return !writing_; });
    }

   private:
    void Drain(std::unique_lock<std::mutex>& lock) {
      if (writing_) return;  // The writer in flight takes it on its next turn.
      writing_ = true;
      g2::ExecutionsListenAndReserveRequest message;
      std::vector<std::function<void(bool)>> sent;
      while (credits_ > 0 || next_.completions_size() > 0) {
        message.Swap(&next_);
        message.set_reserve_next(credits_);
        credits_ = 0;
        sent.swap(sent_);
        lock.unlock();
        bool ok = call_.Write(message);
        for (auto& done : sent) done(ok);
        sent.clear();
        message.Clear();
        lock.lock();
      }
      writing_ = false;
      idle_.notify_all();
    }

    Call& call_;
    std::mutex mutex_;
    std::condition_variable idle_;
    g2::ExecutionsListenAndReserveRequest next_;  // Guarded by mutex_, as are the rest.
    uint64_t credits_ = 0;
    std::vector<std::function<void(bool)>> sent_;
    bool writing_ = false;
  };
  grpc::ClientContext context;
  std::unique_ptr<Call> call = client.executions().ListenAndReserve(&context);
  g2::ExecutionsListenAndReserveRequest first;
  first.set_reserve_next(credits);
  first.mutable_filter()->mutable_instance_filter()->set_agent(agent);
  first.set_workgroup(workgroup);
  if (!call->Write(first)) return call->Finish();
  Sender sender(*call);
  g2::ExecutionsListenResponse message;
  while (call->Read(&message)) {
    if (message.start_of_stream() || message.deleted()) continue;
    handle(message, sender);
  }
  sender.Quiesce();
  return call->Finish();
}

}  // namespace perper::bench
