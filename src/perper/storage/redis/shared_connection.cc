// SPDX-License-Identifier: MIT
#include "perper/storage/redis/shared_connection.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <hiredis/hiredis.h>

namespace perper::storage::redis {

absl::StatusOr<std::shared_ptr<SharedConnection>> SharedConnection::Connect(
    std::string host, int port, const ConnectionOptions& options) {
  absl::StatusOr<std::unique_ptr<RedisConnection>> setup =
      RedisConnection::Connect(std::move(host), port, options);
  if (!setup.ok()) return setup.status();
  // Readers wait in poll() until their deadline; a receive itself never waits once poll said
  // there is something to read.
  timeval none = {0, 0};
  if (setsockopt((*setup)->fd(), SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("redis ", (*setup)->address(), ": cannot clear the receive timeout"));
  }
  std::shared_ptr<SharedConnection> connection(
      new SharedConnection(*std::move(setup), options.command_timeout));
  if (connection->parser_ == nullptr) return absl::ResourceExhaustedError("redis: out of memory");
  return connection;
}

SharedConnection::SharedConnection(std::unique_ptr<RedisConnection> setup,
                                   std::chrono::milliseconds timeout)
    : address_(setup->address()),
      timeout_(timeout),
      setup_(std::move(setup)),
      fd_(setup_->fd()),
      parser_(redisReaderCreate(), &redisReaderFree),
      buffer_(64 * 1024) {}

SharedConnection::~SharedConnection() { Break("connection closed"); }

bool SharedConnection::broken() const {
  absl::MutexLock lock(&mu_);
  return broken_;
}

void SharedConnection::Break(const std::string& why) {
  absl::MutexLock lock(&mu_);
  BreakLocked(why);
}

void SharedConnection::BreakLocked(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  why_broken_ = why;
  outgoing_.clear();
  for (Waiter* waiter : waiting_) {
    waiter->status = absl::UnavailableError(absl::StrCat("redis ", address_, ": ", why));
    waiter->complete = true;
    waiter->wake.Signal();
  }
  waiting_.clear();
  // Wakes a reader in poll() and fails a write in progress.
  shutdown(fd_, SHUT_RDWR);
}

bool SharedConnection::WriteAll(const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

absl::StatusOr<std::vector<RedisReply>> SharedConnection::Pipeline(
    const std::vector<std::vector<std::string_view>>& commands) {
  if (commands.empty()) return std::vector<RedisReply>();
  std::string formatted;
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const auto& argv : commands) {
    if (argv.empty()) return absl::InvalidArgumentError("redis: empty command");
    args.clear();
    lengths.clear();
    for (std::string_view a : argv) {
      args.push_back(a.data());
      lengths.push_back(a.size());
    }
    char* command = nullptr;
    const int length = redisFormatCommandArgv(&command, static_cast<int>(args.size()), args.data(),
                                              lengths.data());
    if (length < 0 || command == nullptr)
      return absl::ResourceExhaustedError("redis: out of memory");
    formatted.append(command, static_cast<size_t>(length));
    redisFreeCommand(command);
  }
  const absl::Time deadline = absl::Now() + absl::FromChrono(timeout_);
  Waiter waiter;
  waiter.expected = commands.size();
  waiter.replies.reserve(commands.size());
  bool write = false;
  {
    absl::MutexLock lock(&mu_);
    if (broken_) return absl::UnavailableError(absl::StrCat("redis ", address_, ": ", why_broken_));
    outgoing_ += formatted;
    waiting_.push_back(&waiter);
    if (!writing_) write = writing_ = true;
  }
  // The first thread to find no write in flight writes, and goes on writing what others queue
  // meanwhile: one system call carries every command submitted during the previous one.
  while (write) {
    std::string data;
    {
      absl::MutexLock lock(&mu_);
      if (outgoing_.empty() || broken_) {
        writing_ = false;
        break;
      }
      data.swap(outgoing_);
    }
    if (!WriteAll(data)) {
      absl::MutexLock lock(&mu_);
      BreakLocked(absl::StrCat("write: ", errno != 0 ? strerror(errno) : "connection lost"));
      writing_ = false;
      break;
    }
  }
  absl::MutexLock lock(&mu_);
  while (!waiter.complete) {
    if (!reading_ || waiter.reads) {
      reading_ = true;
      waiter.reads = false;
      ReadUntilComplete(waiter, deadline);
      // Pass the role on to the waiter whose reply comes next, or leave it to the next caller.
      if (waiting_.empty()) {
        reading_ = false;
      } else {
        waiting_.front()->reads = true;
        waiting_.front()->wake.Signal();
      }
      break;
    }
    if (waiter.wake.WaitWithDeadline(&mu_, deadline) && !waiter.complete && !waiter.reads) {
      BreakLocked(NoReply());
    }
  }
  if (!waiter.status.ok()) return waiter.status;
  return std::move(waiter.replies);
}

std::string SharedConnection::NoReply() const {
  return absl::StrCat("no reply within ", timeout_.count(), " ms");
}

absl::StatusOr<RedisReply> SharedConnection::Command(const std::vector<std::string_view>& argv) {
  absl::StatusOr<std::vector<RedisReply>> replies = Pipeline({argv});
  if (!replies.ok()) return replies.status();
  return std::move(replies->front());
}

absl::StatusOr<RedisReply> SharedConnection::Run(const std::vector<std::string_view>& argv) {
  absl::StatusOr<RedisReply> reply = Command(argv);
  if (reply.ok() && reply->is_error()) return ReplyStatus(*reply);
  return reply;
}

void SharedConnection::ReadUntilComplete(Waiter& own, absl::Time deadline) {
  std::vector<RedisReply> parsed;
  while (!own.complete) {
    mu_.Unlock();
    // What an earlier holder read past its own replies is parsed first.
    std::string failure;
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(parser_.get(), &raw) != REDIS_OK) {
        failure = "unreadable reply";
        break;
      }
      if (raw == nullptr) break;
      parsed.push_back(ConvertReply(static_cast<const redisReply*>(raw)));
      freeReplyObject(raw);
    }
    if (failure.empty() && parsed.empty()) {
      const int64_t wait_ms = std::max<int64_t>(
          0, absl::ToInt64Milliseconds(absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1))));
      pollfd readable = {fd_, POLLIN, 0};
      const int ready = poll(&readable, 1, static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
      if (ready == 0) {
        failure = NoReply();
      } else if (ready > 0) {
        const ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), 0);
        if (n == 0) {
          failure = "connection closed by the server";
        } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
          failure = absl::StrCat("read: ", strerror(errno));
        } else if (n > 0 && redisReaderFeed(parser_.get(), buffer_.data(),
                                            static_cast<size_t>(n)) != REDIS_OK) {
          failure = "unreadable reply";
        }
      } else if (errno != EINTR) {
        failure = absl::StrCat("poll: ", strerror(errno));
      }
    }
    mu_.Lock();
    if (!failure.empty()) {
      BreakLocked(failure);
      return;
    }
    if (!Deliver(parsed)) return;
  }
}

bool SharedConnection::Deliver(std::vector<RedisReply>& parsed) {
  for (RedisReply& reply : parsed) {
    if (waiting_.empty()) {
      // Broken already (its waiters were failed: no-op), or a reply to nothing.
      BreakLocked("a reply nobody asked for");
      parsed.clear();
      return false;
    }
    Waiter* front = waiting_.front();
    front->replies.push_back(std::move(reply));
    if (front->replies.size() == front->expected) {
      waiting_.pop_front();
      front->complete = true;
      front->wake.Signal();
    }
  }
  parsed.clear();
  return true;
}

}  // namespace perper::storage::redis
