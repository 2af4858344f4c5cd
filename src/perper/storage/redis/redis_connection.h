// SPDX-License-Identifier: MIT
// A synchronous connection to one Redis node over hiredis (RESP2), with replies copied into an
// owned C++ type so no hiredis object outlives the call that produced it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct redisContext;
struct redisReply;

namespace perper::storage::redis {

// One RESP2 reply. `str` holds a bulk string, a status line or an error line (without the '-').
struct RedisReply {
  enum class Type { kString, kStatus, kInteger, kNil, kArray, kError };
  Type type = Type::kNil;
  std::string str;
  long long integer = 0;
  std::vector<RedisReply> elements;

  bool is_error() const { return type == Type::kError; }
};

// Error messages taken from a server reply are cut to this many bytes: a Status must stay small
// whatever the server (or a script) put into its error line.
inline constexpr size_t kMaxErrorMessageBytes = 256;

// The Status for an error reply: -OOM → RESOURCE_EXHAUSTED; -WRONGTYPE, -NOSCRIPT, -READONLY,
// -BUSY*, -NOPERM, -NOAUTH, -WRONGPASS, -EXECABORT, -CROSSSLOT → FAILED_PRECONDITION; anything
// else → INTERNAL. OK for a reply that is not an error.
absl::Status ReplyStatus(const RedisReply& reply);
// A copy of a hiredis reply.
RedisReply ConvertReply(const redisReply* reply);

struct ConnectionOptions {
  std::chrono::milliseconds connect_timeout{1000};
  // Bounds every command, so a stalled server cannot hang a caller.
  std::chrono::milliseconds command_timeout{5000};
  // AUTH with a username needs Redis 6 ACLs; an empty username sends the legacy AUTH password.
  std::string username;
  std::string password;
};

// Owns one hiredis context. After a network error (timeout, reset, EOF) the context is unusable
// and every later call answers UNAVAILABLE; the owner drops it and connects again.
// Owned by one user (a ClusterClient, a test). Not thread-safe: one caller at a time.
class RedisConnection {
 public:
  static absl::StatusOr<std::unique_ptr<RedisConnection>> Connect(
      std::string host, int port, const ConnectionOptions& options = {});
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends one command (binary-safe arguments). An error reply comes back as a reply of type
  // kError (the caller may need to read a redirection); only the transport fails the StatusOr.
  absl::StatusOr<RedisReply> Command(const std::vector<std::string_view>& argv);
  // Like Command, but an error reply becomes its ReplyStatus.
  absl::StatusOr<RedisReply> Run(const std::vector<std::string_view>& argv);
  // Sends all commands in one write, then reads one reply per command, in order.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      const std::vector<std::vector<std::string_view>>& commands);

  bool broken() const { return broken_; }
  const std::string& address() const { return address_; }  // "host:port"
  // The socket, for a SharedConnection built on this one's set-up.
  int fd() const;

 private:
  RedisConnection(std::string address, redisContext* context);
  absl::Status Unavailable(std::string_view what);
  absl::Status Append(const std::vector<std::string_view>& argv);
  absl::StatusOr<RedisReply> Read();

  std::string address_;
  redisContext* context_;
  bool broken_ = false;
};

}  // namespace perper::storage::redis
