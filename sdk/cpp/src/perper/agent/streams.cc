// SPDX-License-Identifier: MIT
// Streams: writing (one item, or batches from a producer), completing, creating and starting
// streams, and the readers (ListenItems / ListenItemsAndMove, reconnecting after UNAVAILABLE).
#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include "perper/agent/context.h"
#include "perper/agent/core.h"
#include "perper/agent/counters.h"
#include "perper/agent/stream.h"
#include "perper/agent/stream_delegate.h"
#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/text.h"

namespace perper {
namespace internal {

namespace {

// The listener name of an action stream's trigger (the convention every SDK shares).
constexpr char kTriggerListener[] = "-trigger";
// Items in one WriteItems batch, and the most items a reader asks for in one listen response.
constexpr std::size_t kMaxBatch = 256;

// The start function of Connection::Unary for the FabricStreams method `Method` (needs `core`).
#define PERPER_STREAMS_CALL(Method)                                                     \
  [core](auto* context, auto* req, auto* resp, auto done) {                             \
    core->connection().streams()->async()->Method(context, req, resp, std::move(done)); \
  }

Task<absl::Status> StreamsCreate(Core* core, grpc2::StreamsCreateRequest request) {
  auto result =
      co_await core->connection().Unary<grpc2::StreamsCreateRequest, google::protobuf::Empty>(
          std::move(request), PERPER_STREAMS_CALL(Create));
  co_return result.status();
}

Task<absl::Status> MoveListener(Core* core, grpc2::model::PerperStream stream, std::string listener,
                                int64_t key) {
  grpc2::StreamsMoveListenerRequest request;
  *request.mutable_stream() = std::move(stream);
  request.set_listener_name(std::move(listener));
  request.set_reached_key(key);
  auto result =
      co_await core->connection().Unary<grpc2::StreamsMoveListenerRequest, google::protobuf::Empty>(
          std::move(request), PERPER_STREAMS_CALL(MoveListener));
  co_return result.status();
}

Task<absl::StatusOr<grpc2::StreamsStepResponse>> Step(Core* core,
                                                      grpc2::StreamsStepRequest request) {
  return core->connection().Unary<grpc2::StreamsStepRequest, grpc2::StreamsStepResponse>(
      std::move(request), PERPER_STREAMS_CALL(Step));
}

// Stores a named listener's position once its listen call has ended. A Step without
// operations, not MoveListener: a Step never moves a listener backwards, so an
// acknowledgement of this process can never undo a step the consumer took (Stream::step)
// after the item was delivered. (A Fabric without Step gets MoveListener.)
Task<absl::Status> Acknowledge(Core* core, grpc2::model::PerperStream stream, std::string listener,
                               int64_t key) {
  grpc2::StreamsStepRequest request;
  *request.mutable_stream() = stream;
  request.set_listener_name(listener);
  request.set_reached_key(key);
  auto stepped = co_await Step(core, std::move(request));
  if (absl::IsUnimplemented(stepped.status())) {
    co_return co_await MoveListener(core, std::move(stream), std::move(listener), key);
  }
  co_return stepped.status();
}

}  // namespace

Task<absl::StatusOr<StreamProgress>> StreamGetProgress(Core* core,
                                                       grpc2::model::PerperStream stream) {
  grpc2::StreamsGetProgressRequest request;
  *request.mutable_stream() = std::move(stream);
  auto response = co_await core->connection()
                      .Unary<grpc2::StreamsGetProgressRequest, grpc2::StreamsGetProgressResponse>(
                          std::move(request), PERPER_STREAMS_CALL(GetProgress));
  if (!response.ok()) {
    co_return response.status();
  }
  StreamProgress progress;
  if (response->has_items()) {
    progress.last_key = response->last_key();
  }
  progress.written_count = response->written_count();
  progress.completed = response->completed();
  co_return progress;
}

Task<absl::StatusOr<StepResult>> StreamStep(Core* core, grpc2::model::PerperStream stream,
                                            std::string listener, int64_t key, Changes changes,
                                            std::optional<int64_t> expected_position) {
  if (!changes.status().ok()) {
    co_return changes.status();
  }
  grpc2::StreamsStepRequest request;
  *request.mutable_stream() = std::move(stream);
  request.set_listener_name(std::move(listener));
  request.set_reached_key(key);
  if (expected_position.has_value()) {
    request.set_expected_position(*expected_position);
  }
  if (!changes.empty()) {
    request.mutable_dictionary()->set_dictionary(changes.dictionary());
    for (const auto& operation : changes.operations()) {
      *request.add_operations() = operation;
    }
  }
  auto response = co_await Step(core, std::move(request));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return StepResult{.applied = response->applied(),
                       .already_taken = response->already_taken(),
                       .position_mismatch = response->position_mismatch(),
                       .position = response->position()};
}

Task<absl::Status> StreamWrite(Core* core, grpc2::model::PerperStream stream,
                               std::optional<int64_t> key, google::protobuf::Any value) {
  grpc2::StreamsWriteItemRequest request;
  *request.mutable_stream() = std::move(stream);
  if (key.has_value()) {
    request.set_key(*key);
  } else {
    request.set_auto_key(true);
  }
  *request.mutable_value() = std::move(value);
  auto result =
      co_await core->connection().Unary<grpc2::StreamsWriteItemRequest, google::protobuf::Empty>(
          std::move(request), PERPER_STREAMS_CALL(WriteItem));
  co_return result.status();
}

Task<absl::Status> StreamComplete(Core* core, grpc2::model::PerperStream stream,
                                  std::string error) {
  grpc2::StreamsCompleteRequest request;
  *request.mutable_stream() = std::move(stream);
  if (!error.empty()) {
    request.mutable_error()->set_message(BoundedText(error, kMaxErrorTextBytes));
  }
  auto result =
      co_await core->connection().Unary<grpc2::StreamsCompleteRequest, google::protobuf::Empty>(
          std::move(request), PERPER_STREAMS_CALL(Complete));
  co_return result.status();
}

Task<absl::Status> StreamWaitForListener(Core* core, grpc2::model::PerperStream stream) {
  grpc2::StreamsWaitForListenerRequest request;
  *request.mutable_stream() = std::move(stream);
  auto result = co_await core->connection()
                    .Unary<grpc2::StreamsWaitForListenerRequest, google::protobuf::Empty>(
                        std::move(request), PERPER_STREAMS_CALL(WaitForListener));
  co_return result.status();
}

Task<absl::Status> StreamDelete(Core* core, grpc2::model::PerperStream stream) {
  grpc2::StreamsDeleteRequest request;
  *request.mutable_stream() = std::move(stream);
  auto result =
      co_await core->connection().Unary<grpc2::StreamsDeleteRequest, google::protobuf::Empty>(
          std::move(request), PERPER_STREAMS_CALL(Delete));
  co_return result.status();
}

// ---------------------------------------------------------------------------------------------
// Readers.

// How many items a reader with room for `capacity` asks for in one listen response: half its
// room (so one response can arrive while the consumer works through the other half), at least
// one, at most kMaxBatch. One means the upstream form (one item per response).
std::size_t ItemsPerResponse(std::size_t capacity) {
  return std::clamp<std::size_t>(capacity / 2, 1, kMaxBatch);
}

// One listen call: the queue of received items and the end, shared by the two call kinds.
// Each response carries up to `batch` items (ItemsPerResponse). Backpressure: a read is
// outstanding only while a whole response fits in the room left (`capacity` minus the items
// waiting unread); Next restarts reading when it makes that room. A response is always taken
// whole, so a Fabric that sent more than asked only delays the next read. A hold keeps OnDone
// away while a read or a write may still start; it is released once neither will. Keeps itself
// alive until OnDone.
// Thread-safe.
class ItemsCall {
 public:
  ItemsCall(Core* core, std::size_t capacity)
      : core_(core),
        capacity_(capacity),
        batch_(ItemsPerResponse(capacity)),
        context_(core->connection().NewContext()) {}
  virtual ~ItemsCall() = default;

  // Sends an acknowledgement (the listener reached `key`) on the call; false when the call can
  // no longer take one.
  virtual bool Ack(int64_t key) { return false; }

  // Acknowledges `key` on the call and returns once no acknowledgement is waiting or being
  // written (at once when the call takes none).
  virtual Task<void> AckAndFlush(int64_t key) { co_return; }

  // Ends the call; Next returns the end (CANCELLED) once the queue is empty.
  void Cancel() {
    context_->TryCancel();
    EndReading();
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
        read = !reading_ && RoomForResponse();
        reading_ = reading_ || read;
      } else if (end_.has_value()) {
        ready.emplace(StreamEvent{0, {}, end_});
      } else {
        waiter_ = waiter;
      }
    }
    if (read) {
      ReadMore();
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

  // Suspends until the call has ended (OnDone).
  Task<void> WaitDone() { (void)co_await done_.Wait(); }

  std::size_t max_queued() const {
    absl::MutexLock lock(&mu_);
    return max_queued_;
  }

 protected:
  virtual void ReadMore() = 0;     // StartRead
  virtual void ReleaseHold() = 0;  // RemoveHold

  void Registered() { call_id_ = core_->connection().AddCall(context_); }

  // The request of every listen call: how many items a response may carry.
  static void AskForBatches(std::size_t capacity, grpc2::StreamsListenItemsRequest& request) {
    request.set_max_items_per_message(static_cast<int32_t>(ItemsPerResponse(capacity)));
  }

  // Takes the items of one response (in `items` when the Fabric packed several, else in `key`
  // and `value`) and starts the next read if there is room for another response.
  void Received(grpc2::StreamsListenItemsResponse& response) {
    std::vector<StreamEvent> events;
    if (response.items_size() > 0) {
      events.reserve(response.items_size());
      for (auto& item : *response.mutable_items()) {
        events.push_back(StreamEvent{item.key(), std::move(*item.mutable_value()), std::nullopt});
      }
    } else {
      events.push_back(
          StreamEvent{response.key(), std::move(*response.mutable_value()), std::nullopt});
    }
    response.Clear();
    Counters& counters = ProcessCounters();
    counters.listen_responses.fetch_add(1, std::memory_order_relaxed);
    counters.listen_items.fetch_add(events.size(), std::memory_order_relaxed);

    std::shared_ptr<Oneshot<StreamEvent>> waiter;
    std::optional<StreamEvent> first;
    bool read = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = events.begin();
      if (waiter_ != nullptr) {
        waiter = std::move(waiter_);
        waiter_.reset();
        first.emplace(std::move(*it++));
      }
      for (; it != events.end(); ++it) {
        queue_.push_back(std::move(*it));
      }
      max_queued_ = std::max(max_queued_, queue_.size());
      read = RoomForResponse();
      reading_ = read;
    }
    if (waiter != nullptr) {
      waiter->Set(*std::move(first));
    }
    if (read) {
      ReadMore();
    }
  }

  // Whether a read may start: a whole response fits in the room left.
  bool RoomForResponse() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !ended_ && queue_.size() + batch_ <= capacity_;
  }

  // No read will start again.
  void EndReading() {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      ended_ = true;
      release = TakeRelease();
    }
    if (release) {
      ReleaseHold();
    }
  }

  void Done(const grpc::Status& status) {
    std::shared_ptr<Oneshot<StreamEvent>> waiter;
    absl::Status end = FromGrpcStatus(status);
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      end_ = end;
      waiter = std::move(waiter_);
      waiter_.reset();
    }
    if (waiter != nullptr) {
      waiter->Set(StreamEvent{0, {}, end});
    }
    core_->connection().RemoveCall(call_id_);
    done_.Set(true);
    self_.reset();  // may delete this: nothing after
  }

  bool TakeRelease() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ended_ || writing_ || released_) {
      return false;
    }
    released_ = true;
    return true;
  }

  Core* const core_;
  const std::size_t capacity_;
  const std::size_t batch_;  // the most items one response carries
  const std::shared_ptr<grpc::ClientContext> context_;
  uint64_t call_id_ = 0;
  std::shared_ptr<ItemsCall> self_;
  Oneshot<bool> done_;
  mutable absl::Mutex mu_;
  std::deque<StreamEvent> queue_ ABSL_GUARDED_BY(mu_);
  std::size_t max_queued_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // no further read or write may start
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Oneshot<StreamEvent>> waiter_ ABSL_GUARDED_BY(mu_);
};

// ListenItems: an anonymous listener, or a named one that is not moved.
class ListenCall final : public grpc::ClientReadReactor<grpc2::StreamsListenItemsResponse>,
                         public ItemsCall {
 public:
  using ItemsCall::ItemsCall;

  static std::shared_ptr<ItemsCall> Start(Core* core, std::size_t capacity,
                                          grpc2::StreamsListenItemsRequest request) {
    auto call = std::make_shared<ListenCall>(core, capacity);
    call->self_ = call;
    call->request_ = std::move(request);
    AskForBatches(capacity, call->request_);
    call->Registered();
    call->context_->set_wait_for_ready(core->connection().wait_for_ready());
    core->connection().streams()->async()->ListenItems(call->context_.get(), &call->request_,
                                                       call.get());
    call->AddHold();
    {
      // (No other thread sees the call yet; the lock is for the annotations.)
      absl::MutexLock lock(&call->mu_);
      call->reading_ = true;
    }
    call->StartRead(&call->response_);
    call->StartCall();
    return call;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      EndReading();
      return;
    }
    Received(response_);
  }

  void OnDone(const grpc::Status& status) override { Done(status); }

 private:
  void ReadMore() override { StartRead(&response_); }
  void ReleaseHold() override { RemoveHold(); }

  grpc2::StreamsListenItemsRequest request_;
  grpc2::StreamsListenItemsResponse response_;  // only touched by the read chain
};

// ListenItemsAndMove: a named listener acknowledged on the call. One write in flight; an
// acknowledgement made meanwhile replaces any earlier waiting one (positions only advance).
class ListenAndMoveCall final
    : public grpc::ClientBidiReactor<grpc2::StreamsListenItemsAndMoveRequest,
                                     grpc2::StreamsListenItemsResponse>,
      public ItemsCall {
 public:
  using ItemsCall::ItemsCall;

  static std::shared_ptr<ItemsCall> Start(Core* core, std::size_t capacity,
                                          grpc2::StreamsListenItemsRequest request) {
    auto call = std::make_shared<ListenAndMoveCall>(core, capacity);
    call->self_ = call;
    *call->first_.mutable_listen() = std::move(request);
    AskForBatches(capacity, *call->first_.mutable_listen());
    call->Registered();
    call->context_->set_wait_for_ready(core->connection().wait_for_ready());
    core->connection().streams()->async()->ListenItemsAndMove(call->context_.get(), call.get());
    call->AddHold();
    {
      absl::MutexLock lock(&call->mu_);
      call->reading_ = true;
      call->writing_ = true;
    }
    call->StartWrite(&call->first_);
    call->StartRead(&call->response_);
    call->StartCall();
    return call;
  }

  bool Ack(int64_t key) override {
    {
      absl::MutexLock lock(&mu_);
      if (ended_ || write_failed_) {
        return false;
      }
      if (writing_) {
        pending_ack_ = key;
        return true;
      }
      writing_ = true;
      ack_.Clear();
      ack_.set_reached_key(key);
    }
    StartWrite(&ack_);
    return true;
  }

  Task<void> AckAndFlush(int64_t key) override {
    auto flushed = std::make_shared<Oneshot<bool>>();
    {
      absl::MutexLock lock(&mu_);
      flushed_ = flushed;
    }
    if (!Ack(key)) {
      co_return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (!writing_) {
        co_return;
      }
    }
    (void)co_await flushed->Wait();
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    bool release = false;
    std::shared_ptr<Oneshot<bool>> flushed;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      write_failed_ = write_failed_ || !ok;
      if (pending_ack_.has_value() && !ended_ && !write_failed_) {
        ack_.Clear();
        ack_.set_reached_key(*pending_ack_);
        writing_ = true;
        write = true;
      }
      pending_ack_.reset();
      if (!writing_) {
        flushed = std::move(flushed_);
        flushed_.reset();
      }
      release = TakeRelease();
    }
    if (flushed != nullptr) {
      flushed->Set(true);
    }
    if (write) {
      StartWrite(&ack_);
    }
    if (release) {
      RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      EndReading();
      return;
    }
    Received(response_);
  }

  void OnDone(const grpc::Status& status) override { Done(status); }

 private:
  void ReadMore() override { StartRead(&response_); }
  void ReleaseHold() override { RemoveHold(); }

  grpc2::StreamsListenItemsAndMoveRequest first_;
  grpc2::StreamsListenItemsAndMoveRequest ack_;  // only touched while no write is in flight
  grpc2::StreamsListenItemsResponse response_;   // only touched by the read chain
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<int64_t> pending_ack_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Oneshot<bool>> flushed_ ABSL_GUARDED_BY(mu_);  // AckAndFlush's waiter
};

ItemsReader::ItemsReader(Core* core, grpc2::model::PerperStream stream, std::string listener,
                         std::size_t capacity)
    : core_(core),
      stream_(std::move(stream)),
      listener_(std::move(listener)),
      capacity_(capacity == 0 ? 1 : capacity) {
  Open();
}

ItemsReader::~ItemsReader() {
  if (call_ != nullptr) {
    call_->Cancel();
  }
}

void ItemsReader::Open() {
  grpc2::StreamsListenItemsRequest request;
  *request.mutable_stream() = stream_;
  request.set_listener_name(listener_);
  if (last_key_.has_value()) {
    // Resume after the last delivered item; a named listener resumes at its saved position
    // (at most the last delivered key), and what was delivered already is skipped.
    request.mutable_stream()->set_start_key(
        listener_.empty() ? *last_key_ + (stream_.stride() != 0 ? stream_.stride() : 1)
                          : *last_key_);
  } else {
    request.set_start_from_latest(stream_.start_key() == -1);
  }
  if (call_ != nullptr) {
    max_queued_ = std::max(max_queued_, call_->max_queued());
  }
  endpoint_ = core_->connection().endpoint_index();
  call_ = listener_.empty() ? ListenCall::Start(core_, capacity_, std::move(request))
                            : ListenAndMoveCall::Start(core_, capacity_, std::move(request));
  ++calls_;
}

Task<StreamEvent> ItemsReader::Next() {
  Backoff backoff;  // from the first delay again after an item
  while (true) {
    if (closed_) {
      co_return StreamEvent{0, {}, absl::CancelledError("the stream reader was closed")};
    }
    if (call_ == nullptr) {
      Open();
    }
    if (unacked_key_.has_value()) {
      int64_t key = *unacked_key_;
      unacked_key_.reset();
      if (!call_->Ack(key)) {
        // The call has ended (the stream completed, or the connection broke): store the
        // position directly. A failure only means the item may be delivered again later.
        (void)co_await Acknowledge(core_, stream_, listener_, key);
      }
    }
    StreamEvent event = co_await call_->Next();
    if (!event.end.has_value()) {
      if (last_key_.has_value() && event.key <= *last_key_) {
        continue;  // delivered already, before a reconnection
      }
      last_key_ = event.key;
      if (!listener_.empty()) {
        unacked_key_ = event.key;
      }
      co_return event;
    }
    if (!absl::IsUnavailable(*event.end) || closed_ || core_->stopping()) {
      co_return event;
    }
    // The connection broke: open a new call after a back-off (at the next address, if several).
    core_->connection().MoveFrom(endpoint_);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      co_return StreamEvent{0, {}, absl::CancelledError("the reading handler was cancelled")};
    }
    asio::steady_timer timer(co_await asio::this_coro::executor,
                             absl::ToChronoMilliseconds(backoff.Next()));
    auto [error] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (error) {
      co_return StreamEvent{0, {}, absl::CancelledError("the reading handler was cancelled")};
    }
    Open();
  }
}

Task<absl::Status> ItemsReader::Close() {
  if (closed_) {
    co_return absl::OkStatus();
  }
  closed_ = true;
  if (call_ == nullptr) {
    co_return absl::OkStatus();  // never opened
  }
  if (!listener_.empty() && last_key_.has_value()) {
    // The last acknowledgement goes on the call, after the earlier ones, before the call is
    // cancelled: the Fabric applies a call's acknowledgements in order, so none of them can
    // land after the Acknowledge below (which never moves back anyway).
    unacked_key_.reset();
    co_await call_->AckAndFlush(*last_key_);
  }
  call_->Cancel();
  co_await call_->WaitDone();
  if (listener_.empty() || !last_key_.has_value()) {
    co_return absl::OkStatus();
  }
  co_return co_await Acknowledge(core_, stream_, listener_, *last_key_);
}

std::size_t ItemsReader::MaxQueuedForTest() const {
  return call_ == nullptr ? max_queued_ : std::max(max_queued_, call_->max_queued());
}

// ---------------------------------------------------------------------------------------------
// Producers.

struct BatchWriter::State {
  absl::Mutex mu;
  std::deque<std::pair<std::optional<int64_t>, google::protobuf::Any>> pending ABSL_GUARDED_BY(mu);
  bool flushing ABSL_GUARDED_BY(mu) = false;
  absl::Status error ABSL_GUARDED_BY(mu);
  std::vector<std::shared_ptr<Oneshot<bool>>> waiters ABSL_GUARDED_BY(mu);
};

BatchWriter::BatchWriter(Core* core, grpc2::model::PerperStream stream, std::size_t max_pending)
    : core_(core),
      stream_(std::move(stream)),
      max_pending_(std::max<std::size_t>(max_pending, 1)),
      state_(std::make_unique<State>()) {}

BatchWriter::~BatchWriter() = default;

Task<absl::Status> BatchWriter::Put(std::optional<int64_t> key, google::protobuf::Any value) {
  bool start = false;
  {
    absl::MutexLock lock(&state_->mu);
    if (!state_->error.ok()) {
      co_return state_->error;
    }
    state_->pending.emplace_back(key, std::move(value));
    if (!state_->flushing) {
      state_->flushing = true;
      start = true;
    }
  }
  if (start) {
    asio::co_spawn(co_await asio::this_coro::executor, FlushLoop(shared_from_this()),
                   asio::detached);
  }
  while (true) {
    {
      absl::MutexLock lock(&state_->mu);
      if (!state_->error.ok()) {
        co_return state_->error;
      }
      if (state_->pending.size() < max_pending_) {
        co_return absl::OkStatus();
      }
    }
    co_await WaitProgress();
  }
}

Task<absl::Status> BatchWriter::Flush() {
  while (true) {
    {
      absl::MutexLock lock(&state_->mu);
      if (!state_->flushing) {
        co_return state_->error;
      }
    }
    co_await WaitProgress();
  }
}

Task<void> BatchWriter::WaitProgress() {
  auto waiter = std::make_shared<Oneshot<bool>>();
  {
    absl::MutexLock lock(&state_->mu);
    if (!state_->flushing) {
      co_return;
    }
    state_->waiters.push_back(waiter);
  }
  (void)co_await waiter->Wait();
}

Task<void> BatchWriter::FlushLoop(std::shared_ptr<BatchWriter> self) {
  State& state = *self->state_;
  while (true) {
    grpc2::StreamsWriteItemsRequest request;
    std::vector<std::shared_ptr<Oneshot<bool>>> waiters;
    bool done = false;
    {
      absl::MutexLock lock(&state.mu);
      if (state.pending.empty() || !state.error.ok()) {
        state.pending.clear();
        state.flushing = false;
        done = true;
        waiters.swap(state.waiters);
      } else {
        *request.mutable_stream() = self->stream_;
        while (!state.pending.empty() && request.items_size() < static_cast<int>(kMaxBatch)) {
          auto& [key, value] = state.pending.front();
          auto* item = request.add_items();
          if (key.has_value()) {
            item->set_key(*key);
          } else {
            item->set_auto_key(true);
          }
          *item->mutable_value() = std::move(value);
          state.pending.pop_front();
        }
      }
    }
    if (!done) {
      Core* core = self->core_;
      auto result = co_await core->connection()
                        .Unary<grpc2::StreamsWriteItemsRequest, grpc2::StreamsWriteItemsResponse>(
                            std::move(request), PERPER_STREAMS_CALL(WriteItems));
      absl::MutexLock lock(&state.mu);
      if (!result.ok() && state.error.ok()) {
        state.error = result.status();
      }
      waiters.swap(state.waiters);
    }
    for (auto& waiter : waiters) {
      waiter->Set(true);
    }
    if (done) {
      co_return;
    }
  }
}

Task<absl::StatusOr<DeclaredStream>> DeclareStream(Core* core,
                                                   grpc2::model::PerperInstance instance,
                                                   std::string delegate,
                                                   std::optional<StreamOptions> options) {
  if (!options.has_value()) {
    const StreamOptions* registered =
        instance.agent() == core->agent().name() ? core->agent().stream_options(delegate) : nullptr;
    options = registered != nullptr ? *registered : StreamOptions{};
  }
  grpc2::StreamsCreateRequest request;
  request.mutable_stream()->set_stream(NewId(absl::StrCat(delegate, "-stream")));
  request.mutable_stream()->set_start_key(0);
  request.mutable_stream()->set_stride(options->stride);
  request.set_ephemeral(options->ephemeral);
  grpc2::model::PerperStream model = request.stream();
  absl::Status created = co_await StreamsCreate(core, std::move(request));
  if (!created.ok()) {
    co_return created;
  }
  if (options->action) {
    absl::Status trigger =
        co_await MoveListener(core, model, kTriggerListener, std::numeric_limits<int64_t>::max());
    if (!trigger.ok()) {
      co_return trigger;
    }
  }
  co_return DeclaredStream(core, std::move(instance), std::move(delegate),
                           Stream(core, std::move(model)));
}

Task<absl::StatusOr<Stream>> StartStream(Core* core, grpc2::model::PerperInstance instance,
                                         std::string delegate, std::optional<StreamOptions> options,
                                         Values args) {
  auto declared =
      co_await DeclareStream(core, std::move(instance), std::move(delegate), std::move(options));
  if (!declared.ok()) {
    co_return declared.status();
  }
  co_return co_await declared->start_values(std::move(args));
}

Task<absl::StatusOr<Stream>> StreamOfCall(Core* core, grpc2::model::PerperInstance instance,
                                          std::string delegate, Values args) {
  auto results = co_await CallRaw(core, std::move(instance), delegate, std::move(args));
  if (!results.ok()) {
    co_return results.status();
  }
  auto model = FromAny<grpc2::model::PerperStream>(results->empty() ? google::protobuf::Any()
                                                                    : (*results)[0]);
  if (!model.ok()) {
    co_return absl::InvalidArgumentError(
        absl::StrCat(delegate, " did not return a stream: ", model.status().message()));
  }
  co_return Stream(core, *std::move(model));
}

}  // namespace internal

Task<absl::StatusOr<Stream>> DeclaredStream::start_values(
    std::vector<google::protobuf::Any> args) const {
  internal::Core* core = core_;
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution(stream_.id());
  *request.mutable_instance() = instance_;
  request.set_delegate(absl::StrCat(delegate_, "-stream"));
  *request.add_arguments() = ToAny(stream_.model());
  for (auto& arg : args) {
    *request.add_arguments() = std::move(arg);
  }
  Stream stream = stream_;
  auto created =
      co_await core->connection().Unary<grpc2::ExecutionsCreateRequest, google::protobuf::Empty>(
          std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
            core->connection().executions()->async()->Create(context, req, resp, std::move(done));
          });
  if (!created.ok()) {
    co_return created.status();
  }
  co_return stream;
}

Task<absl::StatusOr<Stream>> Context::blank_stream(bool ephemeral) const {
  internal::Core* core = core_;
  grpc2::StreamsCreateRequest request;
  request.mutable_stream()->set_stream(internal::NewId(""));
  request.mutable_stream()->set_start_key(0);
  request.set_ephemeral(ephemeral);
  grpc2::model::PerperStream model = request.stream();
  absl::Status created = co_await internal::StreamsCreate(core, std::move(request));
  if (!created.ok()) {
    co_return created;
  }
  co_return Stream(core, std::move(model));
}

#undef PERPER_STREAMS_CALL

}  // namespace perper
