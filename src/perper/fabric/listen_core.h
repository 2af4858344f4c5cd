// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/support/server_callback.h>

#include "perper/fabric/change_hub.h"
#include "perper/fabric/response_queue.h"
#include "perper/fabric/service_context.h"
#include "perper/grpc2/streams.pb.h"

namespace perper::fabric {

// NOT_FOUND "stream <stream> was deleted".
absl::Status StreamDeleted(const std::string& stream);

// A read that failed after the call started: NOT_FOUND means the stream went away; anything else
// (a remote store out of reach) ends the call with that status, so the client reconnects.
absl::Status ReadFailure(const std::string& stream, const absl::Status& status);

// ListenCore: the delivery logic shared by ListenItems and ListenItemsAndMove: listener
// registration, the cursor, the bounded queue of one batch, and the end of the call.
//
// Thread safety: hub hints (on writers' threads), gRPC reactions and the start of the call all
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
  virtual void DoStartWrite(const grpc2::StreamsListenItemsResponse* response,
                            grpc::WriteOptions options) = 0;
  virtual void DoFinish(const grpc::Status& status) = 0;

  // Validates the request, subscribes, registers the listener, and starts delivering. May
  // finish the call; the caller must not touch the reactor afterwards unless it runs inside a
  // gRPC reaction (which keeps OnDone away until it returns).
  void Begin(const grpc2::StreamsListenItemsRequest& request);

  // A write finished: continue with the next item, or end.
  void WriteDone(bool ok);

  void Cancel();

  // Moves the call's listener to `key` (an acknowledgement from the client). A named listener
  // only moves forward: an ack at or below its position is ignored, so that a late ack cannot
  // undo a Step that moved it further (the check and the move are one store step).
  void Ack(int64_t key);

  // Called from OnDone: no callback runs after this, and a transient listener is removed.
  void End();

  // Finishes with RESOURCE_EXHAUSTED when no open-call slot was free; then returns false.
  bool HasSlot();

  // Finishes the call once, before it started delivering (a bad request, or no first message).
  // Once delivering, the call ends through final_status_, after the queued items.
  void FinishOnce(const absl::Status& status);

  // Runs `start_read` (the subclass's StartRead) unless the call has finished, under mu_ so
  // that no Finish comes between the check and the read.
  void StartReadUnlessFinished(absl::FunctionRef<void()> start_read);

 private:
  void OnHint(const storage::Change& change);

  void Pump();

  // Decides the next step under mu_, releases mu_, then takes the step. After DoFinish the
  // reactor may already be gone (OnDone on another thread), so nothing follows it.
  void PumpAndUnlock() ABSL_UNLOCK_FUNCTION(mu_);

  // Reads the next batch after the cursor into queue_, or sets final_status_ when the stream
  // has ended for this call.
  void Refill() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Items per store read: a batch, or one packed response's worth if that is more.
  size_t ReadBatchItems() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Unpacked: every stored key >= cursor, in key order; the cursor then passes the last one, so
  // only keys strictly greater than the last delivered are delivered later.
  absl::Status ReadUnpacked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Packed: cursor, cursor + stride, ... each once it exists, in that order. Once the stream is
  // completed a missing key can never appear, so (for a positive stride) it is skipped.
  absl::Status ReadPacked(bool completed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ServiceContext context_;
  const OpenCalls::Slot slot_;
  const bool auto_advance_anonymous_;
  std::shared_ptr<GuardedSubscriber> subscriber_;  // Set in Begin, before any hint.
  ChangeHub::Subscription subscription_;
  std::string stream_;  // Set in Begin before any other thread can see the call.

  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::string name_ ABSL_GUARDED_BY(mu_);
  bool transient_ ABSL_GUARDED_BY(mu_) = false;
  bool auto_advance_ ABSL_GUARDED_BY(mu_) = false;
  int64_t stride_ ABSL_GUARDED_BY(mu_) = 0;
  int max_items_ ABSL_GUARDED_BY(mu_) = 1;   // Items per response message.
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

}  // namespace perper::fabric
