// SPDX-License-Identifier: MIT
// One connection to one Redis node shared by every thread of a process, pipelining their
// commands: what threads submit while a write is in flight goes out together in the next write.
// Redis then reads many commands and writes many replies per system call instead of one each,
// which is most of its cost per command on loopback. Replies come back in the order of the
// commands; the waiting threads take turns reading them: the one holding the reading role reads
// and hands each reply to its waiter, and once its own replies are in, passes the role to the
// next waiter. A lone caller thus reads its own reply, and a round trip costs one wake-up, not
// the two a reader thread of its own would cost.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include <hiredis/read.h>

#include "perper/storage/redis/redis_connection.h"

namespace perper::storage::redis {

// Thread safety: every method is safe to call concurrently. A command answered later than the
// command timeout breaks the connection (replies come in order, so nothing after a lost one can
// be matched): every waiting command then fails UNAVAILABLE, and the owner connects again.
class SharedConnection {
 public:
  static absl::StatusOr<std::shared_ptr<SharedConnection>> Connect(
      std::string host, int port, const ConnectionOptions& options = {});
  ~SharedConnection();
  SharedConnection(const SharedConnection&) = delete;
  SharedConnection& operator=(const SharedConnection&) = delete;

  // Sends `commands` together (no other thread's command goes between them) and waits for their
  // replies. An error reply comes back as a reply of type kError; only the transport fails the
  // StatusOr.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      const std::vector<std::vector<std::string_view>>& commands);
  absl::StatusOr<RedisReply> Command(const std::vector<std::string_view>& argv);
  // Like Command, but an error reply becomes its ReplyStatus.
  absl::StatusOr<RedisReply> Run(const std::vector<std::string_view>& argv);

  bool broken() const;
  const std::string& address() const { return address_; }

 private:
  // One submission: its replies, filled in order by whoever holds the reading role.
  struct Waiter {
    size_t expected = 0;
    std::vector<RedisReply> replies;
    absl::Status status;    // not OK when the connection broke first
    bool complete = false;  // every reply is in, or status says why not
    bool reads = false;     // handed the reading role
    absl::CondVar wake;     // complete, or handed the role
  };

  SharedConnection(std::unique_ptr<RedisConnection> setup, std::chrono::milliseconds timeout);
  // Reads replies and hands them out until `own` is complete or the connection breaks.
  // REQUIRES: the caller holds the reading role (reading_ and it alone reads from fd_); mu_ is
  // released while it waits on the socket.
  void ReadUntilComplete(Waiter& own, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the replies parsed so far to their waiters, in order; false when there are more
  // replies than commands (the connection is then broken).
  bool Deliver(std::vector<RedisReply>& parsed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the connection broken with `why`, fails every waiter and wakes a reader in a system
  // call; idempotent.
  void Break(const std::string& why) ABSL_LOCKS_EXCLUDED(mu_);
  void BreakLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why the connection breaks when a reply is late.
  std::string NoReply() const;
  // Writes `data` whole (a short write is continued); false on a failure.
  bool WriteAll(const std::string& data);

  const std::string address_;
  const std::chrono::milliseconds timeout_;
  // Owns the socket (set up, authenticated); after Connect only its file descriptor is used.
  const std::unique_ptr<RedisConnection> setup_;
  const int fd_;

  mutable absl::Mutex mu_;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::string why_broken_ ABSL_GUARDED_BY(mu_);
  std::string outgoing_ ABSL_GUARDED_BY(mu_);         // formatted commands not yet written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;         // a thread is writing; it writes what comes
  std::deque<Waiter*> waiting_ ABSL_GUARDED_BY(mu_);  // in the order of their commands
  bool reading_ ABSL_GUARDED_BY(mu_) = false;         // a waiter holds the reading role
  // The reply parser and its receive buffer: used only by the holder of the reading role, so
  // replies read past the holder's own wait there for the next holder.
  std::unique_ptr<redisReader, void (*)(redisReader*)> parser_;
  std::vector<char> buffer_;
};

}  // namespace perper::storage::redis
