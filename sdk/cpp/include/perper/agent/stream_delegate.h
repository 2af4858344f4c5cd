// SPDX-License-Identifier: MIT
// Stream delegates: handlers that produce a stream, and starting them.
//
// Provides:
//   perper::StreamOptions     persistent or ephemeral, packed (stride), action
//   perper::StreamWriter<T>   what a producer writes to: batched, with backpressure
//   perper::DeclaredStream    a stream created before its producer starts (for cycles)
//
// The wire convention, shared with every Perper SDK: starting the stream delegate D of an
// instance creates the stream "D-stream-<uuid>" (ephemeral or not, with the stride; for an action
// stream also the trigger listener "-trigger" at INT64_MAX) and then the producer, the execution
// of the same ID on delegate "D-stream" of the instance, with arguments (stream, args...).
// Calling D itself does both and returns the PerperStream (which replays from key 0). The
// producer waits for a first listener when the stream is ephemeral and not an action.
//
// Example (see perper::Agent::stream for registering the producer):
//
//   app.stream("Count", [](perper::StreamWriter<int64_t>& out, int64_t n) -> perper::Task<void> {
//     for (int64_t i = 0; i < n; ++i) co_await out.write(i);
//   });
//   ...
//   absl::StatusOr<perper::Stream> counted = co_await ctx.stream("Count", 10);
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <google/protobuf/any.pb.h>

#include "perper/agent/stream.h"
#include "perper/agent/task.h"
#include "perper/agent/value.h"
#include "perper/grpc2/model.pb.h"

namespace perper {

// The options of a stream delegate's streams.
//
//   perper::StreamOptions{.ephemeral = false, .stride = 1}   // persistent, packed
//   perper::StreamOptions{.action = true}                    // starts without a listener
struct StreamOptions {
  // Ephemeral: an item is freed once every listener has passed it; the producer waits for a
  // first listener (unless `action`). Persistent (false): items stay until the stream is deleted.
  bool ephemeral = true;
  // 0: unpacked (a value written without a key gets a key chosen by the Fabric). Otherwise
  // packed: such values get the keys 0, stride, 2·stride, ..., and readers receive the keys of
  // that progression in order, whatever order they were written in.
  int64_t stride = 0;
  // The producer starts at once, without waiting for a listener.
  bool action = false;
  // At most this many written items wait to be sent; write() suspends beyond that.
  std::size_t max_pending = 1024;
};

namespace internal {

class Core;
using Values = std::vector<google::protobuf::Any>;

// Sends the items of one producer as FabricStreams.WriteItems batches: the first item at once,
// those written meanwhile together in the next batch (at most 256 per batch). Put suspends while
// `max_pending` items wait. After a failed batch every later Put and Flush return its error.
// Thread-safe; the flushing coroutine runs on the executor of the first Put.
class BatchWriter : public std::enable_shared_from_this<BatchWriter> {
 public:
  BatchWriter(Core* core, grpc2::model::PerperStream stream, std::size_t max_pending);
  ~BatchWriter();
  Task<absl::Status> Put(std::optional<int64_t> key, google::protobuf::Any value);
  // Waits until every item put so far is written (or a batch failed).
  Task<absl::Status> Flush();

 private:
  struct State;
  static Task<void> FlushLoop(std::shared_ptr<BatchWriter> self);
  Task<void> WaitProgress();

  Core* const core_;
  const grpc2::model::PerperStream stream_;
  const std::size_t max_pending_;
  std::unique_ptr<State> state_;
};

}  // namespace internal

// What a stream producer writes to. Values written without a key get the next key of a packed
// stream (0, stride, ...) or an auto key; write(key, value) uses an explicit key. Writes are
// queued and sent in batches: write() returns once the item is queued (suspending while the
// queue is full), and reports the error of an earlier batch if one failed. The SDK flushes the
// queue when the producer returns. Use it from the producer's coroutine.
template <typename T>
class StreamWriter {
 public:
  StreamWriter(const Stream& stream, int64_t stride, std::size_t max_pending = 1024)
      : stream_(stream),
        stride_(stride),
        writer_(
            std::make_shared<internal::BatchWriter>(stream.core_, stream.model(), max_pending)) {}

  // The stream being written.
  const Stream& stream() const { return stream_; }

  // Writes `value` under the next key (packed) or a key chosen by the Fabric. Suspends.
  Task<absl::Status> write(T value) {
    std::optional<int64_t> key;
    if (stride_ != 0) {
      key = next_key_;
      next_key_ += stride_;
    }
    return Put(key, value);
  }

  // Writes `value` under `key`. Suspends.
  Task<absl::Status> write(int64_t key, T value) { return Put(key, value); }

  // Waits until everything written so far is stored. Suspends.
  Task<absl::Status> flush() { return writer_->Flush(); }

 private:
  Task<absl::Status> Put(std::optional<int64_t> key, const T& value) {
    absl::StatusOr<google::protobuf::Any> packed = TryToAny(value);
    if (!packed.ok()) {
      return internal::Ready<absl::Status>(packed.status());
    }
    return writer_->Put(key, *std::move(packed));
  }

  Stream stream_;
  int64_t stride_;
  int64_t next_key_ = 0;
  std::shared_ptr<internal::BatchWriter> writer_;
};

// A stream created before its producer runs, so that its reference can be handed out first
// (two streams that consume each other). Cheap to copy.
//
//   absl::StatusOr<perper::DeclaredStream> node1 = co_await ctx.declare_stream("Node1");
//   absl::StatusOr<perper::Stream> node2 = co_await ctx.stream("Node2", node1->stream().model());
//   co_await node1->start(node2->model());
class DeclaredStream {
 public:
  DeclaredStream(internal::Core* core, grpc2::model::PerperInstance instance, std::string delegate,
                 Stream stream)
      : core_(core),
        instance_(std::move(instance)),
        delegate_(std::move(delegate)),
        stream_(std::move(stream)) {}

  // The stream (it replays from key 0).
  const Stream& stream() const { return stream_; }

  // Starts the producer: the execution "<stream ID>" on delegate "<delegate>-stream" with
  // arguments (stream, args...). Suspends.
  template <typename... Args>
  Task<absl::StatusOr<Stream>> start(Args... args) const {
    auto values = internal::PackAll(args...);
    if (!values.ok()) {
      return internal::Ready<absl::StatusOr<Stream>>(values.status());
    }
    return start_values(*std::move(values));
  }
  Task<absl::StatusOr<Stream>> start_values(std::vector<google::protobuf::Any> args) const;

 private:
  internal::Core* core_;
  grpc2::model::PerperInstance instance_;
  std::string delegate_;
  Stream stream_;
};

namespace internal {

// Creates the stream of `instance`'s delegate `delegate` without starting its producer. Without
// `options`, those registered for the delegate in this process (if `instance` is of this
// process's agent), else the defaults.
Task<absl::StatusOr<DeclaredStream>> DeclareStream(Core* core,
                                                   grpc2::model::PerperInstance instance,
                                                   std::string delegate,
                                                   std::optional<StreamOptions> options);
// DeclareStream, then start its producer with `args`.
Task<absl::StatusOr<Stream>> StartStream(Core* core, grpc2::model::PerperInstance instance,
                                         std::string delegate, std::optional<StreamOptions> options,
                                         Values args);
// Calls `delegate` on `instance` (a stream delegate there starts its stream) and reads the
// PerperStream it returns.
Task<absl::StatusOr<Stream>> StreamOfCall(Core* core, grpc2::model::PerperInstance instance,
                                          std::string delegate, Values args);

}  // namespace internal

}  // namespace perper
