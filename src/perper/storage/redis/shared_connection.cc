// SPDX-License-Identifier: MIT
#include "perper/storage/redis/shared_connection.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <hiredis/hiredis.h>

namespace perper::storage::redis {

absl::StatusOr<std::shared_ptr<SharedConnection>> SharedConnection::Connect(
    std::string host, int port, const ConnectionOptions& options) {
  absl::StatusOr<std::unique_ptr<RedisConnection>> setup =
      RedisConnection::Connect(std::move(host), port, options);
  if (!setup.ok()) return setup.status();
  // The reader blocks until a reply or the end of the connection; waiters time out instead.
  timeval none = {0, 0};
  if (setsockopt((*setup)->fd(), SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("redis ", (*setup)->address(), ": cannot clear the receive timeout"));
  }
  std::shared_ptr<SharedConnection> connection(
      new SharedConnection(*std::move(setup), options.command_timeout));
  connection->reader_ = std::thread([raw = connection.get()] { raw->ReadLoop(); });
  return connection;
}

SharedConnection::SharedConnection(std::unique_ptr<RedisConnection> setup,
                                   std::chrono::milliseconds timeout)
    : address_(setup->address()), timeout_(timeout), setup_(std::move(setup)), fd_(setup_->fd()) {}

SharedConnection::~SharedConnection() {
  Break("connection closed");
  if (reader_.joinable()) reader_.join();
}

bool SharedConnection::broken() const {
  absl::MutexLock lock(&mu_);
  return broken_;
}

void SharedConnection::Break(const std::string& why) {
  std::deque<Waiter*> failed;
  {
    absl::MutexLock lock(&mu_);
    if (broken_) return;
    broken_ = true;
    why_broken_ = why;
    outgoing_.clear();
    failed.swap(waiting_);
  }
  for (Waiter* waiter : failed) {
    waiter->status = absl::UnavailableError(absl::StrCat("redis ", address_, ": ", why));
    waiter->done.Notify();
  }
  // Wakes the reader (its recv returns) and fails a write in progress.
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
      Break(absl::StrCat("write: ", errno != 0 ? strerror(errno) : "connection lost"));
      absl::MutexLock lock(&mu_);
      writing_ = false;
      break;
    }
  }
  if (!waiter.done.WaitForNotificationWithTimeout(absl::FromChrono(timeout_))) {
    Break(absl::StrCat("no reply within ", timeout_.count(), " ms"));
    waiter.done.WaitForNotification();  // By the reader, or by Break: either is immediate.
  }
  if (!waiter.status.ok()) return waiter.status;
  return std::move(waiter.replies);
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

void SharedConnection::ReadLoop() {
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(),
                                                              &redisReaderFree);
  std::vector<char> buffer(64 * 1024);
  std::vector<Waiter*> completed;
  // Hands the replies of a read to their waiters; false when the connection is done for.
  auto deliver = [&]() -> bool {
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
        Break("unreadable reply");
        return false;
      }
      if (raw == nullptr) return true;
      RedisReply reply = ConvertReply(static_cast<const redisReply*>(raw));
      freeReplyObject(raw);
      bool unexpected = false;
      {
        absl::MutexLock lock(&mu_);
        if (waiting_.empty()) {
          // Broken already (its waiters were failed), or a reply to nothing.
          unexpected = !broken_;
        } else {
          Waiter* front = waiting_.front();
          front->replies.push_back(std::move(reply));
          if (front->replies.size() == front->expected) {
            waiting_.pop_front();
            completed.push_back(front);
          }
          continue;
        }
      }
      if (unexpected) Break("a reply nobody asked for");
      return false;
    }
  };
  for (;;) {
    ssize_t n = recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Break(n == 0 ? "connection closed by the server" : absl::StrCat("read: ", strerror(errno)));
      return;
    }
    bool go_on = redisReaderFeed(reader.get(), buffer.data(), static_cast<size_t>(n)) == REDIS_OK;
    if (!go_on) {
      Break("unreadable reply");
    } else {
      go_on = deliver();
    }
    // Those completed were taken off the queue: nobody else will wake them.
    for (Waiter* waiter : completed) waiter->done.Notify();
    completed.clear();
    if (!go_on) return;
  }
}

}  // namespace perper::storage::redis
