// SPDX-License-Identifier: MIT
// The streams part of the `redis` backend: StreamStore on Redis 7 (standalone or cluster), with
// the semantics of the engines (streams_engine.h; keys in docs/cluster.md) so that several Fabric
// processes sharing one Redis deployment behave as one Fabric.
//
// Keys. Everything of stream S lives under the hash tag {s:<S escaped>}, so every operation on
// it is one Lua script in one slot:
//
//   {s:S}:m   hash: e (ephemeral "1"/"0"), st (stride), c (completed "1"/"0"), err (error, when
//             completed with one), lk (largest key ever written), gf (GC floor: largest key ever
//             collected), cc (items ever collected), rb (RetainedBytes of the stored items);
//             wt, wn, wl, wk: the token and answer of the last write with auto keys (Retries)
//   {s:S}:k   zset, score 0, member = stored key as 8 bytes (big-endian, sign bit flipped: byte
//             order is numeric order, so ZRANGEBYLEX walks keys in order)
//   {s:S}:v   hash: 8-byte key -> value
//   {s:S}:l   hash: listener name -> 8-byte position + "d" (durable), or + "t<process id>"
//             (transient, owned by that process)
//   {perper}:streams   zset, score 0, of stream IDs (ListStreams by prefix)
//   {p:<pid>}:tl       set of the transient listeners process <pid> registered, each
//                      "<decimal length of the stream ID>:<stream ID><listener name>"
//   {perper}:tlp       set of the process IDs that registered transient listeners
//
// Keys and positions are int64 and Lua numbers are doubles, so scripts never do arithmetic on
// them: they compare the 8-byte encodings byte by byte and add one by carrying bytes (auto keys).
// Counts and byte totals stay far below 2^53.
//
// Retries: ClusterClient resends a script whose connection broke before the reply came. Every
// script here leaves the same state when run twice: explicit keys are replays the second time,
// listener moves converge, and a write with auto keys carries a token under which the stream
// keeps its answer, so a resent one answers the same keys instead of storing its items again
// (unless another auto-key write to the stream came in between). A resent completion or
// deletion answers as if it had been done before (it had).
//
// Transient listeners belong to a live call of one Fabric process. A process that dies leaves
// them behind; the sweeper (SweepDeadProcesses, run a few times per lease period) removes
// the transient listeners of every process whose lease {p:<pid>}:lease (leases.h) is gone,
// collecting what they held, so a dead Fabric never pins an ephemeral stream for much longer
// than its lease. It judges nobody while its own process holds no lease. A store closed cleanly
// removes its own transient listeners.
//
// Thread safety: every method is safe to call concurrently (the state is in Redis; the pool
// serialises connection use).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

class RedisStreams final : public StreamStore {
 public:
  // Both must outlive this object.
  RedisStreams(ClientPool& pool, RedisNotifier& notifier);
  // Stops the sweeper and removes this process's transient listeners (best effort).
  ~RedisStreams() override;
  RedisStreams(const RedisStreams&) = delete;
  RedisStreams& operator=(const RedisStreams&) = delete;

  // Starts the sweeper (SweepDeadProcesses a few times per lease period); called once by
  // RedisStore::Open.
  absl::Status Start();

  absl::StatusOr<bool> CreateStream(StreamRecord record) override;
  absl::StatusOr<StreamRecord> GetStream(std::string_view stream) override;
  absl::StatusOr<std::vector<int64_t>> WriteItems(std::string_view stream,
                                                  std::vector<ItemToWrite> items) override;
  absl::StatusOr<std::vector<int64_t>> WriteItemsBounded(std::string_view stream,
                                                         std::vector<ItemToWrite>& items,
                                                         size_t max_retained_bytes) override;
  absl::StatusOr<std::vector<StreamItem>> ReadItems(std::string_view stream, int64_t from_key,
                                                    size_t max_items, size_t max_bytes) override;
  absl::StatusOr<size_t> VisitItems(
      std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
      absl::FunctionRef<void(int64_t key, std::string_view value)> visit) override;
  absl::StatusOr<std::optional<int64_t>> LastKey(std::string_view stream) override;
  absl::StatusOr<StreamProgress> GetProgress(std::string_view stream) override;
  absl::Status CompleteStream(std::string_view stream, std::optional<std::string> error) override;
  absl::StatusOr<bool> DeleteStream(std::string_view stream) override;
  absl::StatusOr<ListenerRecord> RegisterListener(std::string_view stream, std::string_view name,
                                                  int64_t position, bool transient) override;
  absl::Status MoveListener(std::string_view stream, std::string_view name,
                            int64_t position) override;
  absl::StatusOr<bool> DeleteListener(std::string_view stream, std::string_view name) override;
  absl::StatusOr<std::vector<ListenerRecord>> ListListeners(std::string_view stream) override;
  absl::StatusOr<std::vector<StreamSummary>> ListStreams(std::string_view prefix,
                                                         size_t limit) override;

  // For Store::Step (redis_step.cc). The position of listener `name`, kPositionNotStarted when
  // it does not exist; NOT_FOUND unknown stream.
  absl::StatusOr<int64_t> ListenerPosition(std::string_view stream, std::string_view name);
  // Moves listener `name` to `reached` unless it already is at or past it (never back),
  // creating a durable listener when absent (a transient one stays transient), and collects as
  // MoveListener does. Returns the position after the call; reports kListenerChanged when it
  // moved. NOT_FOUND unknown stream.
  absl::StatusOr<int64_t> AdvanceListener(std::string_view stream, std::string_view name,
                                          int64_t reached);

  // The key of a stream's metadata hash, whose field `c` is "1" once the stream is completed
  // and `err` its error: for the completion of an execution and its stream in one script
  // (RedisExecutions::CompleteWithStream).
  static std::string MetaKey(std::string_view stream);

  // Removes the transient listeners of every other process whose lease is gone (collecting
  // what they held). Returns how many listeners it removed. Does nothing while this process
  // holds no lease itself.
  absl::StatusOr<size_t> SweepDeadProcesses();

 private:
  struct Keys;
  // Runs more collection scripts on `stream` while the last one said more may remain (a script
  // deletes at most 1,000 items, so that Redis is never blocked for long).
  absl::Status FinishCollection(const Keys& keys, int64_t more);
  // MoveListener (forward_only false) and AdvanceListener (true); returns the position after.
  absl::StatusOr<int64_t> SetListener(std::string_view stream, std::string_view name,
                                      int64_t position, bool forward_only);
  // Deletes listener `name` of `stream`; with `owner` set, only a transient listener of that
  // process. Returns whether it was deleted and its stored suffix ("d" or "t<pid>").
  absl::StatusOr<std::pair<bool, std::string>> RemoveListener(std::string_view stream,
                                                              std::string_view name,
                                                              std::string_view owner);
  // Removes the transient listeners process `pid` registered; stops at the first failure.
  absl::StatusOr<size_t> DropTransientListenersOf(std::string_view pid);
  absl::StatusOr<StreamSummary> Summary(std::string_view stream, bool with_listeners, bool* found);
  // Runs `command` (a write command name, then its arguments after the key) on `key`.
  absl::Status WriteCommand(std::string_view key, std::vector<std::string_view> command);
  void Notify(Change::Kind kind, std::string_view stream, int64_t key = 0) const;
  void SweepLoop(std::chrono::milliseconds every);

  ClientPool* const pool_;
  RedisNotifier* const notifier_;

  std::atomic<uint64_t> write_tokens_{0};  // Numbers the writes with auto keys.
  std::atomic<bool> closing_{false};       // Set by the destructor: report nothing more.
  absl::Mutex sweeper_mu_;
  bool stopping_ ABSL_GUARDED_BY(sweeper_mu_) = false;
  std::thread sweeper_;
};

}  // namespace perper::storage::redis
