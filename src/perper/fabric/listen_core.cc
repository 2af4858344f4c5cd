// SPDX-License-Identifier: MIT
#include "perper/fabric/listen_core.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <utility>
#include <vector>

#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/status_macros.h"
#include "perper/common/text.h"
#include "perper/common/values.h"

namespace perper::fabric {

using storage::Change;
using storage::StreamItem;

namespace {

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

// A unique name for the transient listener of an anonymous listen call.
std::string AnonymousListenerName() {
  static const int64_t process_tag = NowTicks();
  static std::atomic<uint64_t> next{1};
  return "~anonymous-" + std::to_string(process_tag) + "-" +
         std::to_string(next.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace

absl::Status StreamDeleted(const std::string& stream) {
  return absl::NotFoundError("stream " + stream + " was deleted");
}

absl::Status ReadFailure(const std::string& stream, const absl::Status& status) {
  return absl::IsNotFound(status) ? StreamDeleted(stream) : status;
}

void ListenCore::Begin(const grpc2::StreamsListenItemsRequest& request) {
  if (!HasSlot()) return;
  if (absl::Status s = CheckRequestStrings(request, context_.limits); !s.ok()) {
    FinishOnce(s);
    return;
  }
  stream_ = request.stream().stream();
  if (stream_.empty()) {
    FinishOnce(absl::InvalidArgumentError("stream.stream must not be empty"));
    return;
  }
  if (request.max_items_per_message() < 0) {
    FinishOnce(absl::InvalidArgumentError("max_items_per_message of the listen call on stream " +
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
    FinishOnce(record.status());
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
      FinishOnce(last.status());
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
  int64_t registered_at =
      named && start != storage::kPositionNotStarted && start != storage::kPositionTrigger
          ? start - 1
          : start;
  absl::StatusOr<storage::ListenerRecord> listener =
      streams.RegisterListener(stream_, name, registered_at, /*transient=*/!named);
  if (!listener.ok()) {
    FinishOnce(listener.status());
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

void ListenCore::WriteDone(bool ok) {
  std::optional<int64_t> advance_to;
  std::string name;  // The listener to advance, copied under mu_ with the decision.
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
      name = name_;
    }
  }
  if (advance_to.has_value()) {
    context_.store->streams().MoveListener(stream_, name, *advance_to).IgnoreError();
  }
  Pump();
}

void ListenCore::Cancel() {
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

void ListenCore::Ack(int64_t key) {
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
    PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] moved to {} (acknowledged)", stream_,
                     name, key);
  }
}

void ListenCore::End() {
  if (subscriber_ != nullptr) subscriber_->Close();
  subscription_.Reset();
  bool remove = false;
  bool started = false;
  std::string end = "ended";
  std::string name;
  {
    absl::MutexLock lock(&mu_);
    started = started_;
    name = name_;
    remove = started_ && transient_;
    if (final_status_.has_value() && !final_status_->ok()) {
      end = "ended: " + final_status_->ToString();
    }
  }
  if (started) {
    PERPER_LOG_DEBUG(Logger::kFabric, "[stream={} listener={}] listen call {}", stream_, name, end);
  }
  if (remove) context_.store->streams().DeleteListener(stream_, name).IgnoreError();
}

bool ListenCore::HasSlot() {
  if (slot_) return true;
  FinishOnce(context_.open_calls->Refusal("the listen call"));
  return false;
}

void ListenCore::FinishOnce(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    PERPER_CHECK(!write_in_flight_) << "FinishOnce after delivery started on stream " << stream_;
    finished_ = true;
  }
  DoFinish(ToGrpcStatus(status));
}

void ListenCore::OnHint(const Change& change) {
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

void ListenCore::Pump() {
  mu_.Lock();
  PumpAndUnlock();
}

void ListenCore::PumpAndUnlock() {
  if (finished_ || write_in_flight_ || !started_) {
    mu_.Unlock();
    return;
  }
  if (queue_.empty() && !final_status_.has_value()) {
    queue_.Recycle();
    Refill();
  }
  if (!queue_.empty()) {
    const grpc2::StreamsListenItemsResponse* response;
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
    finished_ = true;
    grpc::Status status = ToGrpcStatus(*final_status_);
    mu_.Unlock();
    DoFinish(status);
    return;
  }
  mu_.Unlock();  // Nothing to send yet: the next hint resumes.
}

void ListenCore::Refill() {
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

size_t ListenCore::ReadBatchItems() const {
  return std::max(kBatchItems, static_cast<size_t>(max_items_));
}

absl::Status ListenCore::ReadUnpacked() {
  int64_t last = 0;
  absl::StatusOr<size_t> count = context_.store->streams().VisitItems(
      stream_, cursor_, ReadBatchItems(), kBatchBytes,
      [this, &last](int64_t key, std::string_view value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

absl::Status ListenCore::ReadPacked(bool completed) {
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

void ListenCore::StartReadUnlessFinished(absl::FunctionRef<void()> start_read) {
  absl::MutexLock lock(&mu_);
  if (!finished_) start_read();
}

}  // namespace perper::fabric
