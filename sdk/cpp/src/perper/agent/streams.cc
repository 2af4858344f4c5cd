// SPDX-License-Identifier: MIT
// Streams: writing, completing, creating blank streams, and the ListenItems reader.
#include <algorithm>
#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include <asio/this_coro.hpp>

#include "perper/agent/core.h"
#include "perper/agent/stream.h"
#include "perper/common/grpc_status.h"

namespace perper {
namespace internal {

namespace {

Task<absl::Status> StreamsCreate(Core* core, grpc2::StreamsCreateRequest request) {
  auto result = co_await core->Unary<grpc2::StreamsCreateRequest, google::protobuf::Empty>(
      std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
        core->streams()->async()->Create(context, req, resp, std::move(done));
      });
  co_return result.status();
}

Task<absl::Status> StreamsWriteItem(Core* core, grpc2::StreamsWriteItemRequest request) {
  auto result = co_await core->Unary<grpc2::StreamsWriteItemRequest, google::protobuf::Empty>(
      std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
        core->streams()->async()->WriteItem(context, req, resp, std::move(done));
      });
  co_return result.status();
}

Task<absl::Status> StreamsComplete(Core* core, grpc2::StreamsCompleteRequest request) {
  auto result = co_await core->Unary<grpc2::StreamsCompleteRequest, google::protobuf::Empty>(
      std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
        core->streams()->async()->Complete(context, req, resp, std::move(done));
      });
  co_return result.status();
}

}  // namespace

Task<absl::Status> StreamWrite(Core* core, grpc2::model::PerperStream stream,
                               google::protobuf::Any value) {
  grpc2::StreamsWriteItemRequest request;
  *request.mutable_stream() = std::move(stream);
  request.set_auto_key(true);
  *request.mutable_value() = std::move(value);
  co_return co_await StreamsWriteItem(core, std::move(request));
}

Task<absl::Status> StreamComplete(Core* core, grpc2::model::PerperStream stream,
                                  std::string error) {
  grpc2::StreamsCompleteRequest request;
  *request.mutable_stream() = std::move(stream);
  if (!error.empty()) {
    request.mutable_error()->set_message(std::move(error));
  }
  co_return co_await StreamsComplete(core, std::move(request));
}

// The ListenItems call of one reader. Backpressure: a read is outstanding only while fewer than
// `capacity` items wait unread; Next restarts reading when it makes room. Keeps itself alive
// until OnDone. Thread-safe.
class ItemsReactor : public grpc::ClientReadReactor<grpc2::StreamsListenItemsResponse> {
 public:
  ItemsReactor(Core* core, std::size_t capacity) : core_(core), capacity_(capacity) {}

  void Start(std::shared_ptr<ItemsReactor> self, grpc2::StreamsListenItemsRequest request) {
    self_ = std::move(self);
    request_ = std::move(request);
    call_id_ = core_->AddCall(context_);
    core_->streams()->async()->ListenItems(context_.get(), &request_, this);
    // The hold keeps OnDone away while Next may still start a read (the queue is full and no
    // read is outstanding); it is released once no read will start again.
    AddHold();
    reading_ = true;
    StartRead(&response_);
    StartCall();
  }

  // Ends the call; REQUIRES: Next is not called afterwards.
  void Cancel() {
    context_->TryCancel();
    ReleaseHold();
  }

  // The next event; REQUIRES: no other Next is pending.
  Task<StreamEvent> Next() {
    auto waiter = std::make_shared<Oneshot<StreamEvent>>();
    std::optional<StreamEvent> ready;
    bool read = false;
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.empty()) {
        ready.emplace(std::move(queue_.front()));
        queue_.pop_front();
        read = !reading_ && !ended_;
        reading_ = reading_ || read;
      } else if (end_.has_value()) {
        ready.emplace(StreamEvent{0, {}, end_});
      } else {
        waiter_ = waiter;
      }
    }
    if (read) {
      StartRead(&response_);
    }
    if (ready.has_value()) {
      co_return *std::move(ready);
    }
    auto slot = (co_await asio::this_coro::cancellation_state).slot();
    if (slot.is_connected()) {
      slot.assign([context = context_](asio::cancellation_type) { context->TryCancel(); });
    }
    StreamEvent event = co_await waiter->Wait();
    if (slot.is_connected()) {
      slot.clear();
    }
    co_return event;
  }

  std::size_t max_queued() const {
    absl::MutexLock lock(&mu_);
    return max_queued_;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
      }
      ReleaseHold();
      return;
    }
    StreamEvent event{response_.key(), std::move(*response_.mutable_value()), std::nullopt};
    response_.Clear();
    std::shared_ptr<Oneshot<StreamEvent>> waiter;
    bool read = false;
    {
      absl::MutexLock lock(&mu_);
      if (waiter_ != nullptr) {
        waiter = std::move(waiter_);
        waiter_.reset();
      } else {
        queue_.push_back(std::move(event));
        max_queued_ = std::max(max_queued_, queue_.size());
      }
      read = queue_.size() < capacity_;
      reading_ = read;
    }
    if (waiter != nullptr) {
      waiter->Set(std::move(event));
    }
    if (read) {
      StartRead(&response_);
    }
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<Oneshot<StreamEvent>> waiter;
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      end_ = FromGrpcStatus(status);
      waiter = std::move(waiter_);
      waiter_.reset();
    }
    if (waiter != nullptr) {
      waiter->Set(StreamEvent{0, {}, FromGrpcStatus(status)});
    }
    core_->RemoveCall(call_id_);
    self_.reset();  // may delete this: nothing after
  }

 private:
  void ReleaseHold() {
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      if (hold_released_) {
        return;
      }
      hold_released_ = true;
    }
    RemoveHold();
  }

  Core* const core_;
  const std::size_t capacity_;
  std::shared_ptr<grpc::ClientContext> context_ = std::make_shared<grpc::ClientContext>();
  uint64_t call_id_ = 0;
  grpc2::StreamsListenItemsRequest request_;
  grpc2::StreamsListenItemsResponse response_;  // only touched by the read chain
  std::shared_ptr<ItemsReactor> self_;
  mutable absl::Mutex mu_;
  std::deque<StreamEvent> queue_ ABSL_GUARDED_BY(mu_);
  std::size_t max_queued_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // no further read may start
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Oneshot<StreamEvent>> waiter_ ABSL_GUARDED_BY(mu_);
};

ItemsReader::ItemsReader(Core* core, grpc2::model::PerperStream stream, std::string listener,
                         std::size_t capacity)
    : reactor_(std::make_shared<ItemsReactor>(core, capacity == 0 ? 1 : capacity)) {
  grpc2::StreamsListenItemsRequest request;
  request.set_start_from_latest(stream.start_key() == -1);
  *request.mutable_stream() = std::move(stream);
  request.set_listener_name(std::move(listener));
  reactor_->Start(reactor_, std::move(request));
}

ItemsReader::~ItemsReader() { reactor_->Cancel(); }

Task<StreamEvent> ItemsReader::Next() { return reactor_->Next(); }

std::size_t ItemsReader::MaxQueuedForTest() const { return reactor_->max_queued(); }

}  // namespace internal

Task<absl::StatusOr<Stream>> Context::blank_stream(bool ephemeral) const {
  internal::Core* core = core_;
  grpc2::StreamsCreateRequest request;
  request.mutable_stream()->set_stream(absl::StrCat("-", internal::NewUuid()));
  request.mutable_stream()->set_start_key(0);
  request.set_ephemeral(ephemeral);
  grpc2::model::PerperStream model = request.stream();
  absl::Status created = co_await internal::StreamsCreate(core, std::move(request));
  if (!created.ok()) {
    co_return created;
  }
  co_return Stream(core, std::move(model));
}

}  // namespace perper
