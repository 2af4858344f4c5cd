// SPDX-License-Identifier: MIT
// Streams: key-ordered logs of items kept by the Fabric.
//
// Provides:
//   perper::Stream          a reference to a stream: write items, complete it, listen to it
//   perper::StreamReader<T> one listen call: `co_await reader.next()` until the stream completes
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

#include "perper/agent/task.h"
#include "perper/agent/value.h"
#include "perper/grpc2/model.pb.h"

namespace perper {

namespace internal {

class Core;
class ItemsReactor;

// One item, or the end of the stream (`end` set: OK when it completed, else the error).
struct StreamEvent {
  int64_t key = 0;
  google::protobuf::Any value;
  std::optional<absl::Status> end;
};

// The consumer side of one ListenItems call. Holds at most `capacity` received items: when the
// queue is full no read is outstanding, so the Fabric (and the producer's stream) waits.
// Next is called by one coroutine at a time.
class ItemsReader {
 public:
  ItemsReader(Core* core, grpc2::model::PerperStream stream, std::string listener,
              std::size_t capacity);
  ~ItemsReader();  // cancels the call
  Task<StreamEvent> Next();
  std::size_t MaxQueuedForTest() const;

 private:
  std::shared_ptr<ItemsReactor> reactor_;
};

Task<absl::Status> StreamWrite(Core* core, grpc2::model::PerperStream stream,
                               google::protobuf::Any value);
Task<absl::Status> StreamComplete(Core* core, grpc2::model::PerperStream stream, std::string error);

template <typename T>
Task<absl::StatusOr<std::optional<T>>> TypedNext(std::shared_ptr<ItemsReader> reader) {
  StreamEvent event = co_await reader->Next();
  if (event.end.has_value()) {
    if (!event.end->ok()) {
      co_return *event.end;
    }
    co_return std::optional<T>();
  }
  auto value = FromAny<T>(event.value);
  if (!value.ok()) {
    co_return value.status();
  }
  co_return std::optional<T>(*std::move(value));
}

}  // namespace internal

// Reads a stream in key order through one listen call. Move-only; destroying it ends the call.
template <typename T>
class StreamReader {
 public:
  explicit StreamReader(std::shared_ptr<internal::ItemsReader> reader)
      : reader_(std::move(reader)) {}

  // The next item; nullopt once the stream completed; the stream's error if it failed, or
  // CANCELLED if the calling handler was cancelled. Suspends.
  Task<absl::StatusOr<std::optional<T>>> next() { return internal::TypedNext<T>(reader_); }

  // The most items this reader ever held unread (at most its capacity).
  std::size_t MaxQueuedForTest() const { return reader_->MaxQueuedForTest(); }

 private:
  std::shared_ptr<internal::ItemsReader> reader_;
};

// A reference to a stream. Cheap to copy; valid while the runtime runs. Pass model() to other
// agents as an argument (it travels as perper.grpc2.model.PerperStream).
class Stream {
 public:
  Stream(internal::Core* core, grpc2::model::PerperStream model)
      : core_(core), model_(std::move(model)) {}

  const grpc2::model::PerperStream& model() const { return model_; }

  // Appends `value` with a key assigned by the Fabric. Suspends.
  template <typename V>
  Task<absl::Status> write(V value) const {
    return internal::StreamWrite(core_, model_, ToAny(value));
  }

  // Completes the stream: listeners receive every item, then the end (an error when `error` is
  // not empty). Suspends.
  Task<absl::Status> complete(std::string error = "") const {
    return internal::StreamComplete(core_, model_, std::move(error));
  }

  // Starts listening from the reference's start key (or from the saved position of a named
  // listener). At most `capacity` items are buffered.
  template <typename T>
  StreamReader<T> listen(std::string listener_name = "", std::size_t capacity = 64) const {
    return StreamReader<T>(
        std::make_shared<internal::ItemsReader>(core_, model_, std::move(listener_name), capacity));
  }

 private:
  internal::Core* core_;
  grpc2::model::PerperStream model_;
};

}  // namespace perper
