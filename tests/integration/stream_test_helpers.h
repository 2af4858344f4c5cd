// SPDX-License-Identifier: MIT
// Helpers shared by the FabricStreams integration tests: request builders, and a blocking
// listen call whose reads fail the test instead of hanging (the call has a deadline).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/grpc2/streams.grpc.pb.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {

inline grpc2::StreamsCreateRequest CreateRequest(const std::string& stream, bool ephemeral,
                                                 int64_t stride = 0) {
  grpc2::StreamsCreateRequest request;
  request.mutable_stream()->set_stream(stream);
  request.mutable_stream()->set_stride(stride);
  request.set_ephemeral(ephemeral);
  return request;
}

inline grpc::Status CreateStream(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                                 bool ephemeral, int64_t stride = 0) {
  google::protobuf::Empty empty;
  return stub.Create(Context().get(), CreateRequest(stream, ephemeral, stride), &empty);
}

// Writes one item under `key`, or an auto key when `key` is nullopt.
inline grpc::Status WriteItem(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                              std::optional<int64_t> key, const google::protobuf::Any& value) {
  grpc2::StreamsWriteItemRequest request;
  request.mutable_stream()->set_stream(stream);
  if (key.has_value()) {
    request.set_key(*key);
  } else {
    request.set_auto_key(true);
  }
  *request.mutable_value() = value;
  google::protobuf::Empty empty;
  return stub.WriteItem(Context().get(), request, &empty);
}

inline grpc::Status WriteKeys(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                              const std::vector<int64_t>& keys) {
  grpc2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream(stream);
  for (int64_t key : keys) {
    auto* item = request.add_items();
    item->set_key(key);
    *item->mutable_value() = Int64Value(key);
  }
  grpc2::StreamsWriteItemsResponse response;
  return stub.WriteItems(Context().get(), request, &response);
}

inline grpc::Status Complete(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                             std::optional<std::string> error = std::nullopt) {
  grpc2::StreamsCompleteRequest request;
  request.mutable_stream()->set_stream(stream);
  if (error.has_value()) request.mutable_error()->set_message(*error);
  google::protobuf::Empty empty;
  return stub.Complete(Context().get(), request, &empty);
}

inline grpc::Status DeleteStream(grpc2::FabricStreams::Stub& stub, const std::string& stream) {
  grpc2::StreamsDeleteRequest request;
  request.mutable_stream()->set_stream(stream);
  google::protobuf::Empty empty;
  return stub.Delete(Context().get(), request, &empty);
}

inline grpc::Status MoveListener(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                                 const std::string& name, int64_t key) {
  grpc2::StreamsMoveListenerRequest request;
  request.mutable_stream()->set_stream(stream);
  request.set_listener_name(name);
  request.set_reached_key(key);
  google::protobuf::Empty empty;
  return stub.MoveListener(Context().get(), request, &empty);
}

inline grpc::Status WaitForListener(grpc2::FabricStreams::Stub& stub, const std::string& stream,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  grpc2::StreamsWaitForListenerRequest request;
  request.mutable_stream()->set_stream(stream);
  google::protobuf::Empty empty;
  return stub.WaitForListener(Context(timeout).get(), request, &empty);
}

inline grpc2::StreamsListenItemsRequest ListenRequest(const std::string& stream,
                                                      int64_t start_key = 0,
                                                      const std::string& listener_name = "",
                                                      bool start_from_latest = false,
                                                      int64_t stride = 0) {
  grpc2::StreamsListenItemsRequest request;
  request.mutable_stream()->set_stream(stream);
  request.mutable_stream()->set_start_key(start_key);
  request.mutable_stream()->set_stride(stride);
  request.set_listener_name(listener_name);
  request.set_start_from_latest(start_from_latest);
  return request;
}

// Up to `n` keys from `next_key` (a call's NextKey), fewer when the call ended.
template <typename Next>
std::vector<int64_t> ReadKeys(size_t n, Next next_key) {
  std::vector<int64_t> keys;
  for (size_t i = 0; i < n; ++i) {
    std::optional<int64_t> key = next_key();
    if (!key.has_value()) break;
    keys.push_back(*key);
  }
  return keys;
}

// A ListenItems call read synchronously.
class Listen {
 public:
  Listen(grpc2::FabricStreams::Stub& stub, const grpc2::StreamsListenItemsRequest& request,
         std::chrono::milliseconds timeout = std::chrono::seconds(20))
      : context_(Context(timeout)), reader_(stub.ListenItems(context_.get(), request)) {}
  ~Listen() {
    if (!finished_) {
      context_->TryCancel();
      reader_->Finish().IgnoreError();
    }
  }

  // The next item's key, or nullopt when the call ended.
  std::optional<int64_t> NextKey(google::protobuf::Any* value = nullptr) {
    grpc2::StreamsListenItemsResponse response;
    if (!reader_->Read(&response)) return std::nullopt;
    if (value != nullptr) *value = response.value();
    return response.key();
  }
  std::vector<int64_t> NextKeys(size_t n) {
    return ReadKeys(n, [this] { return NextKey(); });
  }
  // Reads to the end of the call and returns its status.
  grpc::Status Finish() {
    grpc2::StreamsListenItemsResponse response;
    while (reader_->Read(&response)) extra_keys_.push_back(response.key());
    finished_ = true;
    return reader_->Finish();
  }
  void Cancel() { context_->TryCancel(); }
  // Keys read by Finish() before the end.
  const std::vector<int64_t>& extra_keys() const { return extra_keys_; }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<grpc2::StreamsListenItemsResponse>> reader_;
  std::vector<int64_t> extra_keys_;
  bool finished_ = false;
};

// A ListenItemsAndMove call read synchronously, with acknowledgements; cancelled when
// destroyed.
class ListenAndMove {
 public:
  ListenAndMove(grpc2::FabricStreams::Stub& stub, const grpc2::StreamsListenItemsRequest& listen,
                std::chrono::milliseconds timeout = std::chrono::seconds(20))
      : context_(Context(timeout)), call_(stub.ListenItemsAndMove(context_.get())) {
    grpc2::StreamsListenItemsAndMoveRequest first;
    *first.mutable_listen() = listen;
    EXPECT_TRUE(call_->Write(first));
  }
  ~ListenAndMove() {
    call_->WritesDone();
    context_->TryCancel();
    call_->Finish().IgnoreError();
  }

  // The next item's key, or nullopt when the call ended.
  std::optional<int64_t> NextKey() {
    grpc2::StreamsListenItemsResponse response;
    if (!call_->Read(&response)) return std::nullopt;
    return response.key();
  }
  std::vector<int64_t> NextKeys(size_t n) {
    return ReadKeys(n, [this] { return NextKey(); });
  }
  bool Ack(int64_t key) {
    grpc2::StreamsListenItemsAndMoveRequest ack;
    ack.set_reached_key(key);
    return call_->Write(ack);
  }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<grpc2::StreamsListenItemsAndMoveRequest,
                                           grpc2::StreamsListenItemsResponse>>
      call_;
};

inline std::string Message(const grpc::Status& status) { return status.error_message(); }

}  // namespace perper::testing
