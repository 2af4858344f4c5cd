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

#include <grpcpp/alarm.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "absl/strings/str_cat.h"
#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/fabric/change_hub.h"
#include "perper/fabric/first_message_timer.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {
namespace {

using grpc2::StreamsListenItemsAndMoveRequest;
using grpc2::StreamsListenItemsRequest;
using grpc2::StreamsListenItemsResponse;
using storage::Change;
using storage::ItemToWrite;
using storage::StreamItem;

// One read from the store fills at most this much of a listen call's queue.
constexpr size_t kBatchItems = 256;
// Caps of a response carrying several items (max_items_per_message > 1). The count also sets how
// many items one store read fetches for such a call.
constexpr int kMaxItemsPerMessage = 1024;
constexpr size_t kPackedMessageBytes = 256 << 10;
constexpr size_t kBatchBytes = 1 << 20;
// Bytes of buffer-hinted writes allowed between two flushing writes (see PumpAndUnlock), and the
// framing each message adds on the wire.
constexpr size_t kHintBudget = 16 << 10;
constexpr size_t kMessageOverhead = 5;

absl::Status StreamDeleted(const std::string& stream) {
  return absl::NotFoundError("stream " + stream + " was deleted");
}

// A read that failed after the call started: NOT_FOUND means the stream went away; anything else
// (a remote store out of reach) ends the call with that status, so the client reconnects.
absl::Status ReadFailure(const std::string& stream, const absl::Status& status) {
  return absl::IsNotFound(status) ? StreamDeleted(stream) : status;
}

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

// The batch a listen call is sending: responses parsed straight from the store's bytes into
// slots that are kept from batch to batch, so a warm call allocates nothing per item (before,
// each item was copied out of the store, parsed into a temporary Any and copied again).
// Not thread-safe: used under the call's mutex.
class ResponseQueue {
 public:
  bool empty() const { return head_ == size_; }
  size_t size() const { return size_ - head_; }
  int64_t back_key() const { return slots_[size_ - 1]->key(); }

  // Appends {key, the Any stored as `value`}; empty bytes are the null (empty) Any.
  void Push(int64_t key, std::string_view value) {
    if (size_ == slots_.size()) slots_.push_back(std::make_unique<StreamsListenItemsResponse>());
    StreamsListenItemsResponse& slot = *slots_[size_++];
    slot.set_key(key);
    google::protobuf::Any* any = slot.mutable_value();
    if (value.empty()) {
      any->Clear();
    } else {
      any->ParseFromArray(value.data(), static_cast<int>(value.size()));
    }
  }
  // The oldest queued response; it stays valid until the next Recycle.
  const StreamsListenItemsResponse* Pop() { return slots_[head_++].get(); }
  // The oldest queued items, at most `max_items` and (beyond the first) `max_bytes`, moved into
  // one response of `items`; it stays valid until the next PopPacked or Recycle. The values are
  // swapped, not copied, so their buffers keep circulating between slots and the response.
  const StreamsListenItemsResponse* PopPacked(int max_items, size_t max_bytes) {
    packed_.mutable_items()->Clear();  // Keeps the cleared items for reuse.
    size_t bytes = 0;
    while (head_ < size_ && packed_.items_size() < max_items) {
      StreamsListenItemsResponse& slot = *slots_[head_];
      size_t size = slot.value().ByteSizeLong() + kItemOverhead;
      if (packed_.items_size() > 0 && bytes + size > max_bytes) break;
      StreamsListenItemsResponse::Item* item = packed_.add_items();
      item->set_key(slot.key());
      item->mutable_value()->Swap(slot.mutable_value());
      bytes += size;
      ++head_;
    }
    return &packed_;
  }
  // Drops what is queued (a write in flight keeps its slot).
  void Clear() { head_ = size_ = 0; }
  // Starts a new batch. REQUIRES: empty, and no write in flight (so no slot is in use). Slots
  // that once held a large value are dropped, so an idle call holds no large buffers.
  void Recycle() {
    for (auto& slot : slots_) {
      if (IsLarge(slot->value())) slot = std::make_unique<StreamsListenItemsResponse>();
    }
    for (const StreamsListenItemsResponse::Item& item : packed_.items()) {
      if (IsLarge(item.value())) {
        packed_ = StreamsListenItemsResponse();
        break;
      }
    }
    head_ = size_ = 0;
  }

 private:
  static constexpr size_t kKeepSlotBytes = 64 << 10;
  static constexpr size_t kItemOverhead = 16;  // Key, tags and lengths of an item, roughly.
  static bool IsLarge(const google::protobuf::Any& value) {
    return value.value().capacity() > kKeepSlotBytes ||
           value.type_url().capacity() > kKeepSlotBytes;
  }
  std::vector<std::unique_ptr<StreamsListenItemsResponse>> slots_;
  StreamsListenItemsResponse packed_;  // The response of items; see PopPacked.
  size_t head_ = 0;
  size_t size_ = 0;
};

// A unique name for the transient listener of an anonymous listen call.
std::string AnonymousListenerName() {
  static const int64_t process_tag = NowTicks();
  static std::atomic<uint64_t> next{1};
  return "~anonymous-" + std::to_string(process_tag) + "-" +
         std::to_string(next.fetch_add(1, std::memory_order_relaxed));
}

// The delivery logic shared by ListenItems and ListenItemsAndMove: listener registration,
// the cursor, the bounded queue of one batch, and the end of the call.
//
// Concurrency: hub hints (on writers' threads), gRPC reactions and the start of the call all
// meet under mu_. Decisions are taken under mu_; StartWrite and Finish are called after mu_ is
// released (a write is only started while none is in flight, and Finish only once and only
// when no write is in flight, so those calls cannot overlap). Finish is always the last thing a
// thread does with the reactor, because OnDone may delete it right after. Store mutations
// (listener moves) are never made under mu_: they notify the hub synchronously, and our own
// hint callback takes mu_.
class ListenCore {
 public:
  ListenCore(const ServiceContext& context, bool auto_advance_anonymous)
      : context_(context),
        slot_(context.open_calls->TryOpen()),
        auto_advance_anonymous_(auto_advance_anonymous) {}
  virtual ~ListenCore() = default;

 protected:
  virtual void DoStartWrite(const StreamsListenItemsResponse* response,
                            grpc::WriteOptions options) = 0;
  virtual void DoFinish(const grpc::Status& status) = 0;

  // Validates the request, subscribes, registers the listener, and starts delivering. May
  // finish the call; the caller must not touch the reactor afterwards unless it runs inside a
  // gRPC reaction (which keeps OnDone away until it returns).
  void Begin(const StreamsListenItemsRequest& request) {
    if (!HasSlot()) return;
    if (absl::Status s = CheckRequestStrings(request, context_.limits); !s.ok()) {
      FinishNow(s);
      return;
    }
    stream_ = request.stream().stream();
    if (stream_.empty()) {
      FinishNow(absl::InvalidArgumentError("stream.stream must not be empty"));
      return;
    }
    if (request.max_items_per_message() < 0) {
      FinishNow(absl::InvalidArgumentError("max_items_per_message of the listen call on stream " +
                                           stream_ + " must not be negative"));
      return;
    }
    // Subscribe before anything is read or registered: every item written after this point
    // produces a hint, so none can fall between the initial read and the live phase.
    subscriber_ =
        std::make_shared<GuardedSubscriber>([this](const Change& change) { OnHint(change); });
    subscription_ = context_.hub->Subscribe(Topic::kStream, stream_, subscriber_);

    storage::StreamStore& streams = context_.store->streams();
    absl::StatusOr<storage::StreamRecord> record = streams.GetStream(stream_);
    if (!record.ok()) {
      FinishNow(record.status());
      return;
    }
    int64_t stride = request.stream().stride() != 0 ? request.stream().stride() : record->stride;
    bool ephemeral = record->ephemeral;

    int64_t start = request.stream().start_key();
    bool await_first = false;
    bool exhausted = false;
    if (request.start_from_latest()) {
      // Taken before the listener is registered, so that an item written after a producer's
      // WaitForListener returns is above it and delivered.
      absl::StatusOr<std::optional<int64_t>> last = streams.LastKey(stream_);
      if (!last.ok()) {
        FinishNow(last.status());
        return;
      }
      if (stride == 0) {
        if (!last->has_value()) {
          start = storage::kPositionNotStarted;
        } else if (**last == std::numeric_limits<int64_t>::max()) {
          exhausted = true;
          start = **last;
        } else {
          start = **last + 1;
        }
      } else if (last->has_value()) {
        start = **last;
      } else {
        await_first = true;
        start = storage::kPositionNotStarted;
      }
    }

    bool named = !request.listener_name().empty();
    std::string name = named ? request.listener_name() : AnonymousListenerName();
    // A new named listener has processed nothing yet: it starts just below its first key, so
    // that a consumer's Step for that first item applies (a position is the last key processed).
    int64_t registered_at = named && start != storage::kPositionNotStarted &&
                                    start != storage::kPositionTrigger
                                ? start - 1
                                : start;
    absl::StatusOr<storage::ListenerRecord> listener =
        streams.RegisterListener(stream_, name, registered_at, /*transient=*/!named);
    if (!listener.ok()) {
      FinishNow(listener.status());
      return;
    }
    if (named && listener->position > start && listener->position != storage::kPositionTrigger) {
      // Resume: the item at the saved position is delivered again (at-least-once).
      start = listener->position;
      await_first = false;
      exhausted = false;
    }

    mu_.Lock();
    max_items_ = std::clamp(request.max_items_per_message(), 1, kMaxItemsPerMessage);
    name_ = std::move(name);
    transient_ = !named;
    auto_advance_ = transient_ && ephemeral && auto_advance_anonymous_;
    stride_ = stride;
    cursor_ = start;
    await_first_ = await_first;
    exhausted_ = exhausted;
    started_ = true;
    PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] listen call opened from key {}",
                     stream_, name_, start);
    PumpAndUnlock();
  }

  // A write finished: continue with the next item, or end.
  void WriteDone(bool ok) {
    std::optional<int64_t> advance_to;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok && !final_status_.has_value()) {
        final_status_ =
            absl::CancelledError("the listen call on stream " + stream_ + " was cancelled");
        queue_.Clear();
      }
      // An anonymous listener of plain ListenItems cannot acknowledge, and cannot resume either,
      // so its position follows delivery, once per batch: ephemeral items it was sent can go.
      if (auto_advance_ && queue_.empty() && last_written_.has_value() &&
          last_written_ != advanced_to_ && !final_status_.has_value()) {
        advance_to = advanced_to_ = last_written_;
      }
    }
    if (advance_to.has_value()) {
      context_.store->streams().MoveListener(stream_, name_, *advance_to).IgnoreError();
    }
    Pump();
  }

  void Cancel() {
    {
      absl::MutexLock lock(&mu_);
      if (!final_status_.has_value()) {
        final_status_ =
            absl::CancelledError("the listen call on stream " + stream_ + " was cancelled");
      }
      queue_.Clear();
    }
    Pump();
  }

  // Moves the call's listener to `key` (an acknowledgement from the client). A named listener
  // only moves forward: an ack at or below its position is ignored, so that a late ack cannot
  // undo a Step that moved it further (the check and the move are one store step).
  void Ack(int64_t key) {
    std::string name;
    bool transient;
    {
      absl::MutexLock lock(&mu_);
      if (!started_ || final_status_.has_value()) return;
      name = name_;
      transient = transient_;
    }
    // A failure means the stream is gone; its deletion hint ends the call.
    if (transient) {
      if (context_.store->streams().MoveListener(stream_, name, key).ok()) {
        PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] moved to {} (acknowledged)",
                         stream_, name, key);
      }
      return;
    }
    storage::StepRequest step;
    step.stream = stream_;
    step.listener = name;
    step.reached_key = key;
    absl::StatusOr<storage::StepResult> result = context_.store->Step(step);
    if (result.ok() && result->applied) {
      PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] moved to {} (acknowledged)",
                       stream_, name, key);
    }
  }

  // Called from OnDone: no callback runs after this, and a transient listener is removed.
  void End() {
    if (subscriber_ != nullptr) subscriber_->Close();
    subscription_.Reset();
    bool remove = false;
    bool started = false;
    std::string end = "ended";
    {
      absl::MutexLock lock(&mu_);
      started = started_;
      remove = started_ && transient_;
      if (final_status_.has_value() && !final_status_->ok()) {
        end = "ended: " + final_status_->ToString();
      }
    }
    if (started) {
      PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] listen call {}", stream_, name_,
                       end);
    }
    if (remove) context_.store->streams().DeleteListener(stream_, name_).IgnoreError();
  }

  // Finishes with RESOURCE_EXHAUSTED when no open-call slot was free; then returns false.
  bool HasSlot() {
    if (slot_) return true;
    FinishNow(context_.open_calls->Refusal("the listen call"));
    return false;
  }

  // Finishes before the call started delivering (a bad request, or no first message).
  void FinishNow(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_) return;
      finish_called_ = true;
    }
    DoFinish(ToGrpcStatus(status));
  }

  absl::Mutex mu_;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;

 private:
  void OnHint(const Change& change) {
    switch (change.kind) {
      case Change::Kind::kStreamItemsWritten:
      case Change::Kind::kStreamCompleted:
      case Change::Kind::kResync:  // Refill reads the store, deletion included.
        break;
      case Change::Kind::kStreamDeleted: {
        absl::MutexLock lock(&mu_);
        deleted_ = true;
        break;
      }
      default:
        return;  // Listener changes and creations do not concern delivery.
    }
    Pump();
  }

  void Pump() {
    mu_.Lock();
    PumpAndUnlock();
  }

  // Decides the next step under mu_, releases mu_, then takes the step. After DoFinish the
  // reactor may already be gone (OnDone on another thread), so nothing follows it.
  void PumpAndUnlock() ABSL_UNLOCK_FUNCTION(mu_) {
    if (finish_called_ || write_in_flight_ || !started_) {
      mu_.Unlock();
      return;
    }
    if (queue_.empty() && !final_status_.has_value()) {
      queue_.Recycle();
      Refill();
    }
    if (!queue_.empty()) {
      const StreamsListenItemsResponse* response;
      if (max_items_ > 1) {
        response = queue_.PopPacked(max_items_, kPackedMessageBytes);
        last_written_ = response->items(response->items_size() - 1).key();
      } else {
        response = queue_.Pop();
        last_written_ = response->key();
      }
      write_in_flight_ = true;
      // More queued: let gRPC coalesce writes; the last write of a batch flushes. Two limits
      // keep a hinted write from waiting for a flush that never comes (its completion would
      // then never arrive, and with one write in flight the call would stall):
      // - the first write carries the initial metadata, whose completion waits until it is on
      //   the wire, and a hinted message keeps the transport from starting that write; so the
      //   first write is never hinted;
      // - a hinted write completes at once only while the call's unsent bytes fit in the
      //   transport's write buffer (64 KiB by default); so hints stop after kHintBudget bytes,
      //   and the flushing write that follows (complete only once everything before it has
      //   left the buffer) starts a new budget.
      grpc::WriteOptions options;
      size_t size = response->ByteSizeLong() + kMessageOverhead;
      if (wrote_any_ && !queue_.empty() && hinted_bytes_ + size <= kHintBudget) {
        options.set_buffer_hint();
        hinted_bytes_ += size;
      } else {
        hinted_bytes_ = 0;
      }
      wrote_any_ = true;
      mu_.Unlock();
      DoStartWrite(response, options);
      return;
    }
    if (final_status_.has_value()) {
      finish_called_ = true;
      grpc::Status status = ToGrpcStatus(*final_status_);
      mu_.Unlock();
      DoFinish(status);
      return;
    }
    mu_.Unlock();  // Nothing to send yet: the next hint resumes.
  }

  // Reads the next batch after the cursor into queue_, or sets final_status_ when the stream
  // has ended for this call.
  void Refill() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (deleted_) {
      final_status_ = StreamDeleted(stream_);
      return;
    }
    storage::StreamStore& streams = context_.store->streams();
    // The record is read before the items: once it says completed, no item can be added, so
    // an empty read after it means the call has delivered everything.
    absl::StatusOr<storage::StreamRecord> record = streams.GetStream(stream_);
    if (!record.ok()) {
      final_status_ = ReadFailure(stream_, record.status());
      return;
    }
    bool completed = record->completed;
    if (!exhausted_) {
      absl::Status status = stride_ == 0 ? ReadUnpacked() : ReadPacked(completed);
      if (!status.ok()) {
        final_status_ = ReadFailure(stream_, status);
        return;
      }
    }
    if (queue_.empty() && completed) {
      if (record->error.has_value()) {
        final_status_ =
            absl::UnknownError("stream " + stream_ + " completed with an error: " + *record->error);
      } else {
        final_status_ = absl::OkStatus();
      }
    }
  }

  // Items per store read: a batch, or one packed response's worth if that is more.
  size_t ReadBatchItems() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return std::max(kBatchItems, static_cast<size_t>(max_items_));
  }

  // Unpacked: every stored key >= cursor, in key order; the cursor then passes the last one, so
  // only keys strictly greater than the last delivered are delivered later.
  absl::Status ReadUnpacked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int64_t last = 0;
    absl::StatusOr<size_t> count = context_.store->streams().VisitItems(
        stream_, cursor_, ReadBatchItems(), kBatchBytes,
        [this, &last](int64_t key, std::string_view value) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          queue_.Push(key, value);  // Runs inside this call, under mu_.
          last = key;
        });
    if (!count.ok()) return count.status();
    if (*count == 0) return absl::OkStatus();
    if (last == std::numeric_limits<int64_t>::max()) {
      exhausted_ = true;
    } else {
      cursor_ = last + 1;
    }
    return absl::OkStatus();
  }

  // Packed: cursor, cursor + stride, ... each once it exists, in that order. Once the stream is
  // completed a missing key can never appear, so (for a positive stride) it is skipped.
  absl::Status ReadPacked(bool completed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    storage::StreamStore& streams = context_.store->streams();
    if (await_first_) {
      // Started from the latest of an empty stream: start at the first key that appears.
      absl::StatusOr<std::vector<StreamItem>> first =
          streams.ReadItems(stream_, std::numeric_limits<int64_t>::min(), 1, kBatchBytes);
      if (!first.ok()) return first.status();
      if (first->empty()) return absl::OkStatus();
      cursor_ = first->front().key;
      await_first_ = false;
    }
    int64_t scan_from = cursor_;
    while (queue_.size() < ReadBatchItems() && !exhausted_) {
      size_t want = stride_ > 0 ? ReadBatchItems() : 1;
      absl::StatusOr<std::vector<StreamItem>> items =
          streams.ReadItems(stream_, scan_from, want, kBatchBytes);
      if (!items.ok()) return items.status();
      if (items->empty()) break;
      bool blocked = false;
      for (StreamItem& item : *items) {
        if (item.key < cursor_) continue;
        if (item.key > cursor_) {
          bool aligned = stride_ > 0 && (static_cast<__int128>(item.key) - cursor_) % stride_ == 0;
          if (!completed || stride_ < 0) {
            blocked = true;
            break;
          }
          if (!aligned) continue;
          cursor_ = item.key;  // Skip the gap: it can no longer be filled.
        }
        queue_.Push(item.key, item.value);
        if (__builtin_add_overflow(cursor_, stride_, &cursor_)) {
          exhausted_ = true;
          break;
        }
        if (stride_ < 0) break;  // The next key is below this batch: read again.
      }
      if (blocked || exhausted_) break;
      if (stride_ < 0) {
        scan_from = cursor_;
        if (queue_.empty()) break;
        if (queue_.back_key() == scan_from) break;
        continue;
      }
      if (items->size() < want) break;
      int64_t last_read = items->back().key;
      if (last_read == std::numeric_limits<int64_t>::max()) break;
      scan_from = std::max(cursor_, last_read + 1);
    }
    return absl::OkStatus();
  }

  const ServiceContext context_;
  const OpenCalls::Slot slot_;
  const bool auto_advance_anonymous_;
  std::shared_ptr<GuardedSubscriber> subscriber_;  // Set in Begin, before any hint.
  ChangeHub::Subscription subscription_;
  std::string stream_;  // Set in Begin before any other thread can see the call.

  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::string name_ ABSL_GUARDED_BY(mu_);
  bool transient_ ABSL_GUARDED_BY(mu_) = false;
  bool auto_advance_ ABSL_GUARDED_BY(mu_) = false;
  int64_t stride_ ABSL_GUARDED_BY(mu_) = 0;
  int max_items_ ABSL_GUARDED_BY(mu_) = 1;        // Items per response message.
  int64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;  // Next key to deliver (packed) or lower bound.
  bool await_first_ ABSL_GUARDED_BY(mu_) = false;
  bool exhausted_ ABSL_GUARDED_BY(mu_) = false;  // The cursor ran past the largest key.
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  ResponseQueue queue_ ABSL_GUARDED_BY(mu_);  // Its last popped slot is the write in flight.
  std::optional<int64_t> last_written_ ABSL_GUARDED_BY(mu_);
  size_t hinted_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // Since the last flushing write.
  bool wrote_any_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<int64_t> advanced_to_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
};

class ListenItemsReactor final : public grpc::ServerWriteReactor<StreamsListenItemsResponse>,
                                 public ListenCore {
 public:
  ListenItemsReactor(const ServiceContext& context, const StreamsListenItemsRequest& request)
      : ListenCore(context, /*auto_advance_anonymous=*/true) {
    Begin(request);
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnCancel() override { Cancel(); }
  void OnDone() override {
    End();
    delete this;
  }

 private:
  void DoStartWrite(const StreamsListenItemsResponse* response,
                    grpc::WriteOptions options) override {
    StartWrite(response, options);
  }
  void DoFinish(const grpc::Status& status) override { Finish(status); }
};

class ListenItemsAndMoveReactor final
    : public grpc::ServerBidiReactor<StreamsListenItemsAndMoveRequest, StreamsListenItemsResponse>,
      public ListenCore {
 public:
  explicit ListenItemsAndMoveReactor(const ServiceContext& context)
      : ListenCore(context, /*auto_advance_anonymous=*/false) {
    if (!HasSlot()) return;
    const absl::Duration timeout = context.limits.first_message_timeout;
    first_message_timer_.Arm(timeout, [this, timeout] {
      FinishNow(absl::DeadlineExceededError(
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
        FinishNow(absl::InvalidArgumentError(
            "the first message of ListenItemsAndMove is missing or could not be parsed; it must "
            "carry listen"));
      }
      return;
    }
    if (!begun_) {
      begun_ = true;
      if (!request_.has_listen()) {
        FinishNow(absl::InvalidArgumentError("the first message must carry listen"));
        return;
      }
      StreamsListenItemsRequest listen = request_.listen();
      Begin(listen);  // Safe to continue after: OnDone waits for this reaction to return.
    } else if (request_.ack_case() == StreamsListenItemsAndMoveRequest::kReachedKey) {
      Ack(request_.reached_key());
    }
    absl::MutexLock lock(&mu_);
    if (!finish_called_) StartRead(&request_);
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnCancel() override {
    if (!begun_) {
      FinishNow(absl::CancelledError("the listen call was cancelled"));
      return;
    }
    Cancel();
  }
  void OnDone() override {
    End();
    delete this;
  }

 private:
  void DoStartWrite(const StreamsListenItemsResponse* response,
                    grpc::WriteOptions options) override {
    StartWrite(response, options);
  }
  void DoFinish(const grpc::Status& status) override { Finish(status); }

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
      TryFinish(context_.open_calls->Refusal("WaitForListener"));
      return;
    }
    if (stream_.empty()) {
      TryFinish(absl::InvalidArgumentError("stream.stream must not be empty"));
      return;
    }
    subscriber_ = std::make_shared<GuardedSubscriber>([this](const Change& change) {
      if (change.kind == Change::Kind::kStreamDeleted) {
        TryFinish(StreamDeleted(stream_));
      } else if (change.kind == Change::Kind::kListenerChanged ||
                 change.kind == Change::Kind::kResync) {
        Check(/*initial=*/false);
      }
    });
    subscription_ = context_.hub->Subscribe(Topic::kStreamListeners, stream_, subscriber_);
    Check(/*initial=*/true);
  }
  void OnCancel() override {
    TryFinish(absl::CancelledError("WaitForListener on stream " + stream_ + " was cancelled"));
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
      TryFinish(initial ? listeners.status() : ReadFailure(stream_, listeners.status()));
    } else if (!listeners->empty()) {
      TryFinish(absl::OkStatus());
    }
  }
  // Finishes once; the last thing the calling thread does with the reactor.
  void TryFinish(const absl::Status& status) {
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
  for (int64_t key : keys)
    response->add_keys(key);
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
  WriteReactor(const ServiceContext& context, grpc::CallbackServerContext* call,
               std::string stream, std::vector<ItemToWrite> items,
               grpc2::StreamsWriteItemsResponse* response)
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
    Finish(ToGrpcStatus(absl::CancelledError("the write to stream " + stream_ +
                                             " was cancelled while held")));
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
    if (context_.writes == nullptr) {
      Attempt();
    } else {
      context_.writes->Post([this] { Attempt(); });
    }
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
  if (context.writes == nullptr) {
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
  absl::Status status = RequireNonEmpty(request->stream().stream(), "stream.stream");
  if (status.ok()) {
    storage::StreamRecord record;
    record.stream = request->stream().stream();
    record.ephemeral = request->ephemeral();
    record.stride = request->stream().stride();
    status = context_.store->streams().CreateStream(std::move(record)).status();
  }
  return FinishUnary(call, status);
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
  storage::StreamStore& streams = context_.store->streams();
  switch (request->item_key_case()) {
    case grpc2::StreamsMoveListenerRequest::kReachedKey:
      status = streams.MoveListener(stream, request->listener_name(), request->reached_key());
      break;
    case grpc2::StreamsMoveListenerRequest::kDeleteListener:
      if (!request->delete_listener()) {
        status = absl::InvalidArgumentError("delete_listener must be true when set");
      } else {
        // Deleting an absent listener is OK, so that a retried delete succeeds.
        status = streams.DeleteListener(stream, request->listener_name()).status();
      }
      break;
    default:
      status = absl::InvalidArgumentError("item_key: set either reached_key or delete_listener");
  }
  if (status.ok()) {
    PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] {}", stream,
                     request->listener_name(),
                     request->has_reached_key() ? absl::StrCat("moved to ", request->reached_key())
                                                : std::string("deleted"));
  }
  return FinishUnary(call, status);
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
  storage::Store& store = *context_.store;
  if (absl::Status found = store.streams().GetStream(stream).status(); !found.ok()) {
    if (!absl::IsNotFound(found)) return FinishUnary(call, found);
    return FinishUnary(call, absl::NotFoundError("stream " + stream + " not found"));
  }
  // The stream's producer (the execution of the same ID) goes with it once it has finished: it
  // has nothing left to do, and a finished execution is only kept for its result. It goes
  // first, so that a Delete retried after a failure between the two still finds the stream.
  bool finished = false;
  absl::StatusOr<bool> producer = store.executions().ReadExecution(
      stream, [&](const storage::ExecutionRecord& record) { finished = record.finished; });
  if (!producer.ok()) return FinishUnary(call, producer.status());
  if (finished) {
    absl::StatusOr<bool> gone = store.executions().DeleteExecution(stream);
    if (!gone.ok()) return FinishUnary(call, gone.status());
  }
  absl::StatusOr<bool> deleted = store.streams().DeleteStream(stream);
  if (!deleted.ok()) {
    status = deleted.status();
  } else if (!*deleted) {
    status = absl::NotFoundError("stream " + stream + " not found");
  }
  return FinishUnary(call, status);
}

grpc::ServerUnaryReactor* StreamsService::Complete(grpc::CallbackServerContext* call,
                                                   const grpc2::StreamsCompleteRequest* request,
                                                   google::protobuf::Empty* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& stream = request->stream().stream();
  absl::Status status = RequireNonEmpty(stream, "stream.stream");
  if (status.ok()) {
    std::optional<std::string> error;
    if (request->has_error()) error = request->error().message();
    status = context_.store->streams().CompleteStream(stream, std::move(error));
  }
  return FinishUnary(call, status);
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
  absl::StatusOr<storage::StreamProgress> progress =
      context_.store->streams().GetProgress(stream);
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
    return FinishUnary(call, absl::InvalidArgumentError(
                                 "listener_name must not be empty (a step on stream " +
                                 ShortId(stream) + ")"));
  }
  auto where = [&] {
    return "the step of listener " + ShortId(listener) + " on stream " + ShortId(stream);
  };
  if (request->operations_size() > 0 && dictionary.empty()) {
    return FinishUnary(call, absl::InvalidArgumentError(
                                 where() + " has operations but no dictionary "
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
  return AnswerUnary(context_.writes, call,
                     [store = context_.store, step = std::move(step), response]() {
                       absl::StatusOr<storage::StepResult> result = store->Step(step);
                       if (!result.ok()) return result.status();
                       PERPER_LOG_DEBUG(
                           Logger::kFabric, "[stream={} listener={}] step to {}: {}{}",
                           step.stream, step.listener, step.reached_key,
                           result->applied            ? "moved"
                           : result->already_taken    ? "already taken"
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
