// SPDX-License-Identifier: MIT
#include "perper/fabric/streams_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/alarm.h>

#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/fabric/change_hub.h"
#include "perper/fabric/first_message_timer.h"
#include "perper/fabric/listen_core.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {
namespace {

using grpc2::StreamsListenItemsAndMoveRequest;
using grpc2::StreamsListenItemsRequest;
using grpc2::StreamsListenItemsResponse;
using storage::Change;
using storage::ItemToWrite;
using storage::StreamItem;

// The key of an item from a oneof {key, auto_key}; `what` names the field in messages.
template <typename Message>
absl::StatusOr<std::optional<int64_t>> ItemKey(const Message& message, const std::string& what) {
  switch (message.item_key_case()) {
    case Message::kKey:
      return std::optional<int64_t>(message.key());
    case Message::kAutoKey:
      if (message.auto_key()) return std::optional<int64_t>();
      return absl::InvalidArgumentError(what + ".auto_key must be true when set");
    default:
      return absl::InvalidArgumentError(what + ": set either key or auto_key");
  }
}

// ListenItems and ListenItemsAndMove: a ListenCore each, which differ in how the call starts
// and whether the client acknowledges. ListenReactor joins a ListenCore to the gRPC reactor
// type `Base`: ListenCore writes and finishes through it, and ends with it.
template <class Base>
class ListenReactor : public Base, public ListenCore {
 public:
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnDone() override {
    End();
    delete this;
  }

 protected:
  ListenReactor(const ServiceContext& context, bool auto_advance_anonymous)
      : ListenCore(context, auto_advance_anonymous) {}

 private:
  void DoStartWrite(const StreamsListenItemsResponse* response,
                    grpc::WriteOptions options) override {
    this->StartWrite(response, options);
  }
  void DoFinish(const grpc::Status& status) override { this->Finish(status); }
};

class ListenItemsReactor final
    : public ListenReactor<grpc::ServerWriteReactor<StreamsListenItemsResponse>> {
 public:
  ListenItemsReactor(const ServiceContext& context, const StreamsListenItemsRequest& request)
      : ListenReactor(context, /*auto_advance_anonymous=*/true) {
    Begin(request);
  }
  void OnCancel() override { Cancel(); }
};

class ListenItemsAndMoveReactor final
    : public ListenReactor<
          grpc::ServerBidiReactor<StreamsListenItemsAndMoveRequest, StreamsListenItemsResponse>> {
 public:
  explicit ListenItemsAndMoveReactor(const ServiceContext& context)
      : ListenReactor(context, /*auto_advance_anonymous=*/false) {
    if (!HasSlot()) return;
    const absl::Duration timeout = context.limits.first_message_timeout;
    first_message_timer_.Arm(timeout, [this, timeout] {
      FinishOnce(absl::DeadlineExceededError(
          "no first message within " + absl::FormatDuration(timeout) +
          ": ListenItemsAndMove must open with a message carrying listen"));
    });
    StartRead(&request_);
  }
  void OnReadDone(bool ok) override {
    // Disarm returns after a running expiry; a first message that came too late is dropped.
    if (!begun_ && first_message_timer_.Disarm()) return;
    if (!ok) {
      // The client closed its side: acks are over, delivery goes on. Before the first message
      // this is also how a message that did not parse arrives.
      if (!begun_) {
        FinishOnce(absl::InvalidArgumentError(
            "the first message of ListenItemsAndMove is missing or could not be parsed; it must "
            "carry listen"));
      }
      return;
    }
    if (!begun_) {
      begun_ = true;
      if (!request_.has_listen()) {
        FinishOnce(absl::InvalidArgumentError("the first message must carry listen"));
        return;
      }
      StreamsListenItemsRequest listen = request_.listen();
      Begin(listen);  // Safe to continue after: OnDone waits for this reaction to return.
    } else if (request_.ack_case() == StreamsListenItemsAndMoveRequest::kReachedKey) {
      Ack(request_.reached_key());
    }
    StartReadUnlessFinished([this] { StartRead(&request_); });
  }
  void OnCancel() override {
    if (!begun_) {
      FinishOnce(absl::CancelledError("the listen call was cancelled"));
      return;
    }
    Cancel();
  }

 private:
  StreamsListenItemsAndMoveRequest request_;
  std::atomic<bool> begun_{false};
  FirstMessageTimer first_message_timer_;  // Its destructor waits for a running expiry.
};

// WaitForListener without a thread: completes on the first listener change that leaves a
// listener on the stream, or when the stream is deleted.
class WaitForListenerReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitForListenerReactor(const ServiceContext& context, std::string stream)
      : context_(context), stream_(std::move(stream)), slot_(context.open_calls->TryOpen()) {
    if (!slot_) {
      FinishOnce(context_.open_calls->Refusal("WaitForListener"));
      return;
    }
    if (stream_.empty()) {
      FinishOnce(absl::InvalidArgumentError("stream.stream must not be empty"));
      return;
    }
    subscriber_ = std::make_shared<GuardedSubscriber>([this](const Change& change) {
      if (change.kind == Change::Kind::kStreamDeleted) {
        FinishOnce(StreamDeleted(stream_));
      } else if (change.kind == Change::Kind::kListenerChanged ||
                 change.kind == Change::Kind::kResync) {
        Check(/*initial=*/false);
      }
    });
    subscription_ = context_.hub->Subscribe(Topic::kStreamListeners, stream_, subscriber_);
    Check(/*initial=*/true);
  }
  void OnCancel() override {
    FinishOnce(absl::CancelledError("WaitForListener on stream " + stream_ + " was cancelled"));
  }
  void OnDone() override {
    if (subscriber_ != nullptr) subscriber_->Close();
    subscription_.Reset();
    delete this;
  }

 private:
  void Check(bool initial) {
    absl::StatusOr<std::vector<storage::ListenerRecord>> listeners =
        context_.store->streams().ListListeners(stream_);
    if (!listeners.ok()) {
      FinishOnce(initial ? listeners.status() : ReadFailure(stream_, listeners.status()));
    } else if (!listeners->empty()) {
      FinishOnce(absl::OkStatus());
    }
  }
  // Finishes once; the last thing the calling thread does with the reactor.
  void FinishOnce(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(ToGrpcStatus(status));
  }

  const ServiceContext context_;
  const std::string stream_;
  const OpenCalls::Slot slot_;
  std::shared_ptr<GuardedSubscriber> subscriber_;
  ChangeHub::Subscription subscription_;
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// The keys of written items into a WriteItems response (null for WriteItem).
void FillKeys(const std::vector<int64_t>& keys, grpc2::StreamsWriteItemsResponse* response) {
  if (response == nullptr) return;
  response->mutable_keys()->Reserve(static_cast<int>(keys.size()));
  for (int64_t key : keys) response->add_keys(key);
}

// A WriteItem or WriteItems call. The write goes to the store at once. When the stream's
// retention bound refuses it (a listener is behind), the call is held, without a thread, and
// the write is retried on every listener change of the stream, until it fits, fails otherwise
// (the stream was deleted or completed), the client cancels, or the wait allowed runs out
// (--stream-write-wait-ms, or the client's deadline less a margin): then the answer is the
// store's RESOURCE_EXHAUSTED, naming the listener that holds the stream back. So a slow
// consumer slows its producers instead of making the Fabric keep everything.
//
// Concurrency: attempts run one at a time (attempting_, under mu_), inline or on the write
// pool; a hint, the timer or a cancellation during an attempt asks for one more (again_).
// Finish is called once, by the attempt that ends the call or by OnCancel when none runs, and
// is the last thing that thread does with the reactor. Hints and the timer reach the reactor
// through guards that OnDone closes before deleting it.
class WriteReactor final : public grpc::ServerUnaryReactor {
 public:
  // `response` is null for WriteItem.
  WriteReactor(const ServiceContext& context, grpc::CallbackServerContext* call, std::string stream,
               std::vector<ItemToWrite> items, grpc2::StreamsWriteItemsResponse* response)
      : context_(context),
        call_(call),
        stream_(std::move(stream)),
        items_(std::move(items)),
        response_(response) {}

  // Makes the first attempt; may finish the call before returning.
  WriteReactor* Start() {
    {
      absl::MutexLock lock(&mu_);
      attempting_ = true;
    }
    Dispatch();
    return this;
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (finished_) return;
      if (attempting_) {
        again_ = true;  // The running attempt ends the call.
        return;
      }
      finished_ = true;
    }
    Finish(ToGrpcStatus(
        absl::CancelledError("the write to stream " + stream_ + " was cancelled while held")));
  }

  void OnDone() override {
    if (subscriber_ != nullptr) subscriber_->Close();
    subscription_.Reset();
    if (timer_guard_ != nullptr) {
      absl::MutexLock lock(&timer_guard_->mu);
      timer_guard_->reactor = nullptr;
    }
    if (alarm_ != nullptr) alarm_->Cancel();
    delete this;
  }

 private:
  struct TimerGuard {
    absl::Mutex mu;
    WriteReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };
  enum class Next { kFinish, kRetry, kHold, kStartHolding };

  void Dispatch() {
    RunWrite(context_, [this] { Attempt(); });
  }

  // A listener change, or the timer (`give_up`): try again.
  void Kick(bool give_up) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (give_up) give_up_ = true;
      if (attempting_) {
        again_ = true;
        return;
      }
      attempting_ = true;
    }
    Dispatch();
  }

  void Attempt() {
    for (;;) {
      absl::StatusOr<std::vector<int64_t>> keys = context_.store->streams().WriteItemsBounded(
          stream_, items_, context_.limits.max_stream_retained_bytes);
      bool full = !keys.ok() && storage::IsRetentionBoundReached(keys.status());
      Next next;
      bool held;
      {
        absl::MutexLock lock(&mu_);
        held = holding_;
        if (!full || cancelled_ || give_up_) {
          next = Next::kFinish;
          finished_ = true;
        } else if (!holding_) {
          next = Next::kStartHolding;
          holding_ = true;
        } else if (again_) {
          next = Next::kRetry;
          again_ = false;
        } else {
          next = Next::kHold;
          attempting_ = false;
        }
      }
      switch (next) {
        case Next::kRetry:
          continue;
        case Next::kHold:
          return;
        case Next::kStartHolding:
          StartHolding();
          continue;  // A listener may have moved before the subscription: try once more.
        case Next::kFinish:
          break;
      }
      absl::Status status = keys.status();
      if (keys.ok()) {
        FillKeys(*keys, response_);
      } else if (full && held) {
        auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - held_since_);
        status = absl::ResourceExhaustedError(
            std::string(status.message()) + "; the write was held " +
            std::to_string(waited.count()) + " ms (at most " +
            std::to_string(context_.limits.stream_write_wait.count()) +
            " ms, --stream-write-wait-ms, or until shortly before the client's deadline)");
      }
      Finish(ToGrpcStatus(status));
      return;
    }
  }

  // Subscribes to the stream's listener changes and sets the timer. Runs within an attempt.
  void StartHolding() {
    held_since_ = std::chrono::steady_clock::now();
    subscriber_ = std::make_shared<GuardedSubscriber>([this](const Change& change) {
      if (change.kind == Change::Kind::kListenerChanged ||
          change.kind == Change::Kind::kStreamDeleted || change.kind == Change::Kind::kResync) {
        Kick(/*give_up=*/false);
      }
    });
    subscription_ = context_.hub->Subscribe(Topic::kStreamListeners, stream_, subscriber_);
    // Answer a little before the client's deadline, so that it gets the reason rather than
    // DEADLINE_EXCEEDED; at once when that leaves no time to wait.
    constexpr auto kDeadlineMargin = std::chrono::milliseconds(100);
    auto now = std::chrono::system_clock::now();
    auto give_up_at = now + context_.limits.stream_write_wait;
    auto deadline = call_->deadline();
    if (deadline < give_up_at + kDeadlineMargin) give_up_at = deadline - kDeadlineMargin;
    if (give_up_at <= now) {
      absl::MutexLock lock(&mu_);
      give_up_ = true;
      return;
    }
    timer_guard_ = std::make_shared<TimerGuard>();
    {
      absl::MutexLock lock(&timer_guard_->mu);
      timer_guard_->reactor = this;
    }
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(give_up_at, [guard = timer_guard_](bool fired) {
      if (!fired) return;
      absl::MutexLock lock(&guard->mu);
      if (guard->reactor != nullptr) guard->reactor->Kick(/*give_up=*/true);
    });
  }

  const ServiceContext context_;
  grpc::CallbackServerContext* const call_;
  const std::string stream_;
  std::vector<ItemToWrite> items_;  // Left intact by a refused attempt.
  grpc2::StreamsWriteItemsResponse* const response_;
  // Set by the first refused attempt, before the call can be woken; read by attempts only.
  std::chrono::steady_clock::time_point held_since_;
  std::shared_ptr<GuardedSubscriber> subscriber_;
  ChangeHub::Subscription subscription_;
  std::shared_ptr<TimerGuard> timer_guard_;
  std::unique_ptr<grpc::Alarm> alarm_;

  absl::Mutex mu_;
  bool attempting_ ABSL_GUARDED_BY(mu_) = false;
  bool again_ ABSL_GUARDED_BY(mu_) = false;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  bool give_up_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Writes `items` for a WriteItem (`response` null) or WriteItems call. Inline (memory backend),
// a write that fits is answered on the default reactor, as any unary call; only a refused one
// gets a WriteReactor, which tries once more and holds the call.
grpc::ServerUnaryReactor* WriteOrHold(const ServiceContext& context,
                                      grpc::CallbackServerContext* call, const std::string& stream,
                                      std::vector<ItemToWrite> items,
                                      grpc2::StreamsWriteItemsResponse* response) {
  if (WritesRunInline(context)) {
    absl::StatusOr<std::vector<int64_t>> keys = context.store->streams().WriteItemsBounded(
        stream, items, context.limits.max_stream_retained_bytes);
    if (!storage::IsRetentionBoundReached(keys.status())) {
      if (keys.ok()) FillKeys(*keys, response);
      return FinishUnary(call, keys.status());
    }
  }
  return (new WriteReactor(context, call, stream, std::move(items), response))->Start();
}

}  // namespace

grpc::ServerUnaryReactor* StreamsService::Create(grpc::CallbackServerContext* call,
                                                 const grpc2::StreamsCreateRequest* request,
                                                 google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  if (absl::Status s = RequireNonEmpty(request->stream().stream(), "stream.stream"); !s.ok()) {
    return FinishUnary(call, s);
  }
  storage::StreamRecord record;
  record.stream = request->stream().stream();
  record.ephemeral = request->ephemeral();
  record.stride = request->stream().stride();
  return AnswerWrite(context_, call,
                     [store = context_.store, record = std::move(record)]() mutable {
                       return store->streams().CreateStream(std::move(record)).status();
                     });
}

grpc::ServerUnaryReactor* StreamsService::WriteItem(grpc::CallbackServerContext* call,
                                                    const grpc2::StreamsWriteItemRequest* request,
                                                    google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  absl::Status status = RequireNonEmpty(stream, "stream.stream");
  if (!status.ok()) return FinishUnary(call, status);
  absl::StatusOr<std::optional<int64_t>> key = ItemKey(*request, "item_key");
  if (!key.ok()) return FinishUnary(call, key.status());
  status =
      CheckValueSize(request->value(), context_.limits, "the value of an item of stream " + stream);
  if (!status.ok()) return FinishUnary(call, status);
  std::vector<ItemToWrite> items(1);
  items[0].key = *key;
  items[0].value = SerializeAny(request->value());
  return WriteOrHold(context_, call, stream, std::move(items), nullptr);
}

grpc::ServerUnaryReactor* StreamsService::WriteItems(grpc::CallbackServerContext* call,
                                                     const grpc2::StreamsWriteItemsRequest* request,
                                                     grpc2::StreamsWriteItemsResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  absl::Status status = RequireNonEmpty(stream, "stream.stream");
  if (!status.ok()) return FinishUnary(call, status);
  // The hot path of batched writes: per item no allocation beyond its stored bytes (the names
  // used in error messages are only built for an error).
  std::vector<ItemToWrite> items(request->items_size());
  for (int i = 0; i < request->items_size(); ++i) {
    const auto& item = request->items(i);
    auto what = [i] { return "items[" + std::to_string(i) + "]"; };
    if (item.item_key_case() == grpc2::StreamsWriteItemsRequest::Item::kKey) {
      items[i].key = item.key();
    } else if (item.item_key_case() != grpc2::StreamsWriteItemsRequest::Item::kAutoKey ||
               !item.auto_key()) {
      return FinishUnary(call, ItemKey(item, what()).status());
    }
    const google::protobuf::Any& value = item.value();
    size_t size = value.ByteSizeLong();
    if (size > context_.limits.max_value_bytes) {
      return FinishUnary(call, CheckValueSize(value, context_.limits,
                                              "the value of " + what() + " of stream " + stream));
    }
    // As SerializeAny: an empty Any is stored as no bytes.
    if (!value.type_url().empty() || !value.value().empty()) {
      items[i].value.resize(size);
      value.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(items[i].value.data()));
    }
  }
  return WriteOrHold(context_, call, stream, std::move(items), response);
}

grpc::ServerWriteReactor<StreamsListenItemsResponse>* StreamsService::ListenItems(
    grpc::CallbackServerContext* call, const StreamsListenItemsRequest* request) {
  return new ListenItemsReactor(context_, *request);
}

grpc::ServerBidiReactor<StreamsListenItemsAndMoveRequest, StreamsListenItemsResponse>*
StreamsService::ListenItemsAndMove(grpc::CallbackServerContext* call) {
  return new ListenItemsAndMoveReactor(context_);
}

grpc::ServerUnaryReactor* StreamsService::MoveListener(
    grpc::CallbackServerContext* call, const grpc2::StreamsMoveListenerRequest* request,
    google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  absl::Status status = RequireNonEmpty(stream, "stream.stream");
  if (status.ok()) status = RequireNonEmpty(request->listener_name(), "listener_name");
  if (!status.ok()) return FinishUnary(call, status);
  if (request->item_key_case() == grpc2::StreamsMoveListenerRequest::kDeleteListener &&
      !request->delete_listener()) {
    return FinishUnary(call, absl::InvalidArgumentError("delete_listener must be true when set"));
  }
  if (request->item_key_case() == grpc2::StreamsMoveListenerRequest::ITEM_KEY_NOT_SET) {
    return FinishUnary(
        call, absl::InvalidArgumentError("item_key: set either reached_key or delete_listener"));
  }
  return AnswerWrite(context_, call, [store = context_.store, request]() {
    const std::string& stream = request->stream().stream();
    storage::StreamStore& streams = store->streams();
    absl::Status status =
        request->has_reached_key()
            ? streams.MoveListener(stream, request->listener_name(), request->reached_key())
            // Deleting an absent listener is OK, so that a retried delete succeeds.
            : streams.DeleteListener(stream, request->listener_name()).status();
    if (status.ok()) {
      PERPER_LOG_DEBUG(
          Logger::kFabric, "[stream={} listener={}] {}", stream, request->listener_name(),
          request->has_reached_key() ? absl::StrCat("moved to ", request->reached_key())
                                     : std::string("deleted"));
    }
    return status;
  });
}

grpc::ServerUnaryReactor* StreamsService::WaitForListener(
    grpc::CallbackServerContext* call, const grpc2::StreamsWaitForListenerRequest* request,
    google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  return new WaitForListenerReactor(context_, request->stream().stream());
}

grpc::ServerUnaryReactor* StreamsService::Delete(grpc::CallbackServerContext* call,
                                                 const grpc2::StreamsDeleteRequest* request,
                                                 google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  absl::Status status = RequireNonEmpty(stream, "stream.stream");
  if (!status.ok()) return FinishUnary(call, status);
  return AnswerWrite(context_, call, [&store = *context_.store, stream]() -> absl::Status {
    if (absl::Status found = store.streams().GetStream(stream).status(); !found.ok()) {
      if (!absl::IsNotFound(found)) return found;
      return absl::NotFoundError("stream " + stream + " not found");
    }
    // The stream's producer (the execution of the same ID) goes with it once it has finished:
    // it has nothing left to do, and a finished execution is only kept for its result. It goes
    // first, so that a Delete retried after a failure between the two still finds the stream.
    bool finished = false;
    absl::StatusOr<bool> producer = store.executions().ReadExecution(
        stream, [&](const storage::ExecutionRecord& record) { finished = record.finished; });
    if (!producer.ok()) return producer.status();
    if (finished) {
      absl::StatusOr<bool> gone = store.executions().DeleteExecution(stream);
      if (!gone.ok()) return gone.status();
    }
    absl::StatusOr<bool> deleted = store.streams().DeleteStream(stream);
    if (!deleted.ok()) return deleted.status();
    if (!*deleted) return absl::NotFoundError("stream " + stream + " not found");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* StreamsService::Complete(grpc::CallbackServerContext* call,
                                                   const grpc2::StreamsCompleteRequest* request,
                                                   google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  if (absl::Status s = RequireNonEmpty(stream, "stream.stream"); !s.ok()) {
    return FinishUnary(call, s);
  }
  return AnswerWrite(context_, call, [store = context_.store, request]() {
    std::optional<std::string> error;
    if (request->has_error()) error = request->error().message();
    return store->streams().CompleteStream(request->stream().stream(), std::move(error));
  });
}

grpc::ServerUnaryReactor* StreamsService::GetProgress(
    grpc::CallbackServerContext* call, const grpc2::StreamsGetProgressRequest* request,
    grpc2::StreamsGetProgressResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  if (absl::Status s = RequireNonEmpty(stream, "stream.stream"); !s.ok()) {
    return FinishUnary(call, s);
  }
  absl::StatusOr<storage::StreamProgress> progress = context_.store->streams().GetProgress(stream);
  if (!progress.ok()) return FinishUnary(call, progress.status());
  response->set_has_items(progress->last_key.has_value());
  response->set_last_key(progress->last_key.value_or(0));
  response->set_written_count(progress->written_count);
  response->set_completed(progress->completed);
  if (progress->error.has_value()) response->mutable_error()->set_message(*progress->error);
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* StreamsService::Step(grpc::CallbackServerContext* call,
                                               const grpc2::StreamsStepRequest* request,
                                               grpc2::StreamsStepResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  const std::string& listener = request->listener_name();
  const std::string& dictionary = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(stream, "stream.stream"); !s.ok()) {
    return FinishUnary(call, s);
  }
  if (listener.empty()) {
    return FinishUnary(
        call, absl::InvalidArgumentError("listener_name must not be empty (a step on stream " +
                                         ShortId(stream) + ")"));
  }
  auto where = [&] {
    return "the step of listener " + ShortId(listener) + " on stream " + ShortId(stream);
  };
  if (request->operations_size() > 0 && dictionary.empty()) {
    return FinishUnary(call,
                       absl::InvalidArgumentError(where() + " has operations but no dictionary "
                                                            "(dictionary.dictionary is empty)"));
  }
  storage::StepRequest step;
  step.stream = stream;
  step.listener = listener;
  step.reached_key = request->reached_key();
  if (request->has_expected_position()) step.expected_position = request->expected_position();
  step.dictionary = dictionary;
  step.operations.reserve(request->operations_size());
  for (int i = 0; i < request->operations_size(); ++i) {
    // Each operation's own `dictionary` is ignored: a step changes one dictionary.
    const grpc2::StatesDictionaryOperateRequest& in = request->operations(i);
    auto what = [&](const char* field) {
      return "operations[" + std::to_string(i) + "]." + field + " of dictionary \"" +
             ShortId(dictionary) + "\" in " + where();
    };
    for (const auto& [value, field] :
         {std::pair{&in.key(), "key"}, std::pair{&in.new_value(), "new_value"},
          std::pair{&in.expected_existing_value(), "expected_existing_value"}}) {
      if (absl::Status s = CheckValueSize(*value, context_.limits, what(field)); !s.ok()) {
        return FinishUnary(call, s);
      }
    }
    storage::DictionaryOperation& op = step.operations.emplace_back();
    op.key = SerializeAny(in.key());
    if (IsNullValue(op.key)) {
      return FinishUnary(call, absl::InvalidArgumentError(what("key") + " must not be null"));
    }
    op.get_existing_value = in.get_existing_value();
    op.set_new_value = in.set_new_value();
    op.new_value = SerializeAny(in.new_value());
    op.compare_existing_value = in.compare_existing_value();
    op.expected_existing_value = SerializeAny(in.expected_existing_value());
  }
  return AnswerWrite(context_, call, [store = context_.store, step = std::move(step), response]() {
    absl::StatusOr<storage::StepResult> result = store->Step(step);
    if (!result.ok()) return result.status();
    PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] step to {}: {}{}", step.stream,
                     step.listener, step.reached_key,
                     result->applied         ? "moved"
                     : result->already_taken ? "already taken"
                                             : "position mismatch",
                     step.operations.empty()
                         ? ""
                         : absl::StrCat(" with ", step.operations.size(),
                                        " operations on dictionary ", step.dictionary));
    response->set_applied(result->applied);
    response->set_already_taken(result->already_taken);
    response->set_position_mismatch(result->position_mismatch);
    response->set_position(result->position);
    for (const storage::DictionaryOutcome& outcome : result->outcomes) {
      grpc2::StatesDictionaryOperateResponse* out = response->add_outcomes();
      out->set_operation_successful(outcome.operation_successful);
      if (outcome.previous_value.has_value()) {
        *out->mutable_previous_value() = ParseAny(*outcome.previous_value);
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace perper::fabric
