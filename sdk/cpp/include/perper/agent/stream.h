// SPDX-License-Identifier: MIT
// Streams: key-ordered logs of items kept by the Fabric.
//
// Provides:
//   perper::Stream          a reference to a stream: write items, complete it, listen to it
//   perper::StreamReader<T> reads a stream in key order: `co_await reader.next()` until the
//                           stream completes; resumes by itself when the Fabric connection breaks
//   perper::StreamItem<T>   one item: its key and value
//   perper::StreamProgress  how far a stream's producer got (Stream::progress)
//   perper::StepResult      what Stream::step did
//
// Stream producers (delegates whose handler writes a stream) are in perper/agent/stream_delegate.h.
//
// Example:
//
//   absl::StatusOr<perper::Stream> stream = co_await ctx.blank_stream();
//   co_await stream->write(std::string("a"));
//   co_await stream->complete();
//   perper::StreamReader<std::string> reader = stream->listen<std::string>();
//   while (true) {
//     absl::StatusOr<std::optional<std::string>> item = co_await reader.next();
//     if (!item.ok() || !item->has_value()) break;   // an error, or the stream completed
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <google/protobuf/any.pb.h>

#include "perper/agent/state.h"
#include "perper/agent/task.h"
#include "perper/agent/value.h"
#include "perper/grpc2/model.pb.h"

namespace perper {

// How far a stream's producer got, for a producer that restarts (Stream::progress,
// Context::stream_progress).
struct StreamProgress {
  // The largest key ever written; nullopt before the first item. Kept after an ephemeral
  // stream dropped its items.
  std::optional<int64_t> last_key;
  // How many items were ever written (an identical rewrite of a key, a replay, does not count).
  uint64_t written_count = 0;
  bool completed = false;
};

// What Stream::step did.
struct StepResult {
  // The operations were applied and the listener moved to the step's key.
  bool applied = false;
  // Nothing changed because the listener was already at or past the key: the step was taken
  // before (by an earlier run of this consumer).
  bool already_taken = false;
  // Nothing changed because the listener was not at the expected position.
  bool position_mismatch = false;
  // The listener's position after the call. (applied, already_taken and position_mismatch all
  // false: a compare_and_set of the changes failed, so nothing applied.)
  int64_t position = 0;
};

// One item of a stream.
template <typename T>
struct StreamItem {
  int64_t key = 0;
  T value{};
};

namespace internal {

class Core;
class ItemsCall;

// One item, or the end of the stream (`end` set: OK when it completed, else the error).
struct StreamEvent {
  int64_t key = 0;
  google::protobuf::Any value;
  std::optional<absl::Status> end;
};

// The consumer side of a stream: one listen call at a time (ListenItems, or ListenItemsAndMove
// for a named listener, whose position is acknowledged as items are consumed). Holds at most
// `capacity` received items: when the queue is full no read is outstanding, so the Fabric (and
// the producer's stream) waits. When the call ends with UNAVAILABLE, a new one is opened after
// a back-off, from the item after the last one delivered (a named listener from its saved
// position, skipping what was delivered already), so the consumer sees no gap.
// Next and Close are called by one coroutine at a time.
class ItemsReader {
 public:
  ItemsReader(Core* core, grpc2::model::PerperStream stream, std::string listener,
              std::size_t capacity);
  ~ItemsReader();  // cancels the call
  Task<StreamEvent> Next();
  // Ends the call; for a named listener, stores the last delivered key as its position.
  Task<absl::Status> Close();
  std::size_t MaxQueuedForTest() const;
  // How many listen calls were opened (1 + reconnections).
  int CallsForTest() const { return calls_; }

 private:
  void Open();

  Core* const core_;
  const grpc2::model::PerperStream stream_;
  const std::string listener_;
  const std::size_t capacity_;
  std::shared_ptr<ItemsCall> call_;  // null until opened
  std::optional<int64_t> last_key_;
  std::optional<int64_t> unacked_key_;  // delivered, not yet acknowledged (named listener)
  std::size_t max_queued_ = 0;
  int calls_ = 0;
  size_t endpoint_ = 0;  // the Fabric address the current call is made to
  bool closed_ = false;
};

Task<absl::Status> StreamWrite(Core* core, grpc2::model::PerperStream stream,
                               std::optional<int64_t> key, google::protobuf::Any value);
Task<absl::Status> StreamComplete(Core* core, grpc2::model::PerperStream stream, std::string error);
Task<absl::Status> StreamWaitForListener(Core* core, grpc2::model::PerperStream stream);
Task<absl::Status> StreamDelete(Core* core, grpc2::model::PerperStream stream);
Task<absl::StatusOr<StreamProgress>> StreamGetProgress(Core* core,
                                                       grpc2::model::PerperStream stream);
Task<absl::StatusOr<StepResult>> StreamStep(Core* core, grpc2::model::PerperStream stream,
                                            std::string listener, int64_t key, Changes changes,
                                            std::optional<int64_t> expected_position);

template <typename T>
Task<absl::StatusOr<std::optional<StreamItem<T>>>> TypedNextItem(
    std::shared_ptr<ItemsReader> reader) {
  StreamEvent event = co_await reader->Next();
  if (event.end.has_value()) {
    if (!event.end->ok()) {
      co_return *event.end;
    }
    co_return std::optional<StreamItem<T>>();
  }
  auto value = FromAny<T>(event.value);
  if (!value.ok()) {
    co_return value.status();
  }
  co_return std::optional<StreamItem<T>>(StreamItem<T>{event.key, *std::move(value)});
}

template <typename T>
Task<absl::StatusOr<std::optional<T>>> TypedNext(std::shared_ptr<ItemsReader> reader) {
  auto item = co_await TypedNextItem<T>(std::move(reader));
  if (!item.ok()) {
    co_return item.status();
  }
  if (!item->has_value()) {
    co_return std::optional<T>();
  }
  co_return std::optional<T>(std::move((*item)->value));
}

}  // namespace internal

// Reads a stream in key order. Move-only; destroying it ends its listen call. Use it from one
// coroutine at a time.
//
// With a listener name, the Fabric keeps the listener's position: each item is acknowledged
// when the next one is asked for, and close() stores the last delivered item's key, so a
// reader opened later with the same name resumes there (the item at the position is delivered
// again: at-least-once).
template <typename T>
class StreamReader {
 public:
  explicit StreamReader(std::shared_ptr<internal::ItemsReader> reader)
      : reader_(std::move(reader)) {}

  // The next value; nullopt once the stream completed; UNKNOWN with the producer's message if
  // it failed; NOT_FOUND if the stream does not exist or was deleted; CANCELLED if the calling
  // handler was cancelled. Suspends.
  Task<absl::StatusOr<std::optional<T>>> next() { return internal::TypedNext<T>(reader_); }

  // As next(), with the item's key.
  Task<absl::StatusOr<std::optional<StreamItem<T>>>> next_item() {
    return internal::TypedNextItem<T>(reader_);
  }

  // Ends the listen call; with a listener name, stores the last delivered key as the
  // listener's position first. next() returns CANCELLED afterwards. Suspends.
  Task<absl::Status> close() { return reader_->Close(); }

  // The most items this reader ever held unread (at most its capacity).
  std::size_t MaxQueuedForTest() const { return reader_->MaxQueuedForTest(); }
  // How many listen calls the reader opened (1 + reconnections).
  int CallsForTest() const { return reader_->CallsForTest(); }

 private:
  std::shared_ptr<internal::ItemsReader> reader_;
};

// A reference to a stream: its ID, the key reading starts from (start_key; -1 means "live":
// only items written from now on) and its stride (0: unpacked; else packed, keys k, k+stride,
// ...). Cheap to copy; valid while the runtime runs. Pass model() to other agents as an
// argument (it travels as perper.grpc2.model.PerperStream).
class Stream {
 public:
  Stream(internal::Core* core, grpc2::model::PerperStream model)
      : core_(core), model_(std::move(model)) {}

  const grpc2::model::PerperStream& model() const { return model_; }
  const std::string& id() const { return model_.stream(); }

  // A reference that reads from `key` (inclusive).
  Stream replay(int64_t key = 0) const {
    grpc2::model::PerperStream model = model_;
    model.set_start_key(key);
    return Stream(core_, std::move(model));
  }
  // A reference that reads only the items written from now on.
  Stream live() const { return replay(-1); }

  // Appends `value` with a key assigned by the Fabric. Suspends.
  template <typename V>
  Task<absl::Status> write(V value) const {
    return Write(std::nullopt, value);
  }
  // Writes `value` under `key` (a used key is ALREADY_EXISTS). Suspends.
  template <typename V>
  Task<absl::Status> write(int64_t key, V value) const {
    return Write(key, value);
  }

  // Completes the stream: listeners receive every item, then the end (an error when `error` is
  // not empty). Suspends.
  Task<absl::Status> complete(std::string error = "") const {
    return internal::StreamComplete(core_, model_, std::move(error));
  }

  // Returns once the stream has a listener (or an action trigger). Suspends.
  Task<absl::Status> wait_for_listener() const {
    return internal::StreamWaitForListener(core_, model_);
  }

  // Deletes the stream, its items and its listeners. Suspends.
  Task<absl::Status> remove() const { return internal::StreamDelete(core_, model_); }

  // How far the stream's producer got (FabricStreams.GetProgress); NOT_FOUND for an unknown
  // stream. Suspends.
  Task<absl::StatusOr<StreamProgress>> progress() const {
    return internal::StreamGetProgress(core_, model_);
  }

  // Applies `changes` and moves the named listener `listener` to `key` (the last item the
  // changes account for), atomically (FabricStreams.Step): a consumer that keeps its results
  // in a dictionary and steps once per item counts each item exactly once, however often it
  // is restarted. Nothing applies when the listener is already at or past `key`
  // (already_taken: a re-run), when `expected_position` is given and the listener is elsewhere
  // (position_mismatch), or when a compare_and_set of `changes` fails. Suspends.
  //
  //   for (auto item = co_await reader.next_item(); item.ok() && item->has_value();
  //        item = co_await reader.next_item()) {
  //     ... read the totals ...
  //     co_await stream.step("average", (*item)->key, state.changes().set("total", total));
  //   }
  Task<absl::StatusOr<StepResult>> step(
      std::string listener, int64_t key, Changes changes = {},
      std::optional<int64_t> expected_position = std::nullopt) const {
    return internal::StreamStep(core_, model_, std::move(listener), key, std::move(changes),
                                expected_position);
  }

  // Starts listening from the reference's start key, or, with a listener name, from the
  // listener's saved position (created at the start key the first time). At most `capacity`
  // items are buffered.
  template <typename T>
  StreamReader<T> listen(std::string listener_name = "", std::size_t capacity = 64) const {
    return StreamReader<T>(
        std::make_shared<internal::ItemsReader>(core_, model_, std::move(listener_name), capacity));
  }

 private:
  template <typename T>
  friend class StreamWriter;

  template <typename V>
  Task<absl::Status> Write(std::optional<int64_t> key, const V& value) const {
    absl::StatusOr<google::protobuf::Any> packed = TryToAny(value);
    if (!packed.ok()) {
      return internal::Ready<absl::Status>(packed.status());
    }
    return internal::StreamWrite(core_, model_, key, *std::move(packed));
  }

  internal::Core* core_;
  grpc2::model::PerperStream model_;
};

}  // namespace perper
