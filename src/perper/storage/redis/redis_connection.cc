// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_connection.h"

#include <sys/time.h>

#include "absl/strings/str_cat.h"
#include <hiredis/hiredis.h>

#include "perper/common/status_macros.h"

namespace perper::storage::redis {
namespace {

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

RedisReply Convert(const redisReply* r);

}  // namespace

RedisReply ConvertReply(const redisReply* reply) { return Convert(reply); }

namespace {

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

std::string Bounded(std::string_view message) {
  if (message.size() <= kMaxErrorMessageBytes) return std::string(message);
  return std::string(message.substr(0, kMaxErrorMessageBytes)) + "...";
}

}  // namespace

absl::Status ReplyStatus(const RedisReply& reply) {
  if (!reply.is_error()) return absl::OkStatus();
  std::string message = Bounded(reply.str);
  std::string_view code = std::string_view(reply.str).substr(0, reply.str.find(' '));
  if (code == "OOM") return absl::ResourceExhaustedError(message);
  for (std::string_view precondition : {"WRONGTYPE", "NOSCRIPT", "READONLY", "NOPERM", "NOAUTH",
                                        "WRONGPASS", "EXECABORT", "CROSSSLOT"}) {
    if (code == precondition) return absl::FailedPreconditionError(message);
  }
  if (code.starts_with("BUSY")) return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Connect(
    std::string host, int port, const ConnectionOptions& options) {
  std::string address = absl::StrCat(host, ":", port);
  redisContext* context =
      redisConnectWithTimeout(host.c_str(), port, ToTimeval(options.connect_timeout));
  if (context == nullptr)
    return absl::UnavailableError(absl::StrCat("redis ", address, ": out of memory"));
  if (context->err != 0) {
    absl::Status status =
        absl::UnavailableError(absl::StrCat("redis ", address, ": ", Bounded(context->errstr)));
    redisFree(context);
    return status;
  }
  if (redisSetTimeout(context, ToTimeval(options.command_timeout)) != REDIS_OK) {
    redisFree(context);
    return absl::UnavailableError(absl::StrCat("redis ", address, ": cannot set timeout"));
  }
  std::unique_ptr<RedisConnection> connection(new RedisConnection(address, context));
  if (!options.password.empty()) {
    std::vector<std::string_view> auth = {"AUTH"};
    if (!options.username.empty()) auth.push_back(options.username);
    auth.push_back(options.password);
    absl::StatusOr<RedisReply> reply = connection->Run(auth);
    if (!reply.ok()) {
      return absl::Status(reply.status().code(),
                          absl::StrCat("redis ", address, ": AUTH: ", reply.status().message()));
    }
  }
  return connection;
}

RedisConnection::RedisConnection(std::string address, redisContext* context)
    : address_(std::move(address)), context_(context) {}

RedisConnection::~RedisConnection() { redisFree(context_); }

int RedisConnection::fd() const { return context_->fd; }

absl::Status RedisConnection::Unavailable(std::string_view what) {
  broken_ = true;
  std::string detail = context_->err != 0 ? Bounded(context_->errstr) : "connection lost";
  return absl::UnavailableError(
      absl::StrCat("redis ", address_, ": ", std::string(what), ": ", detail));
}

absl::Status RedisConnection::Append(const std::vector<std::string_view>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  args.reserve(argv.size());
  lengths.reserve(argv.size());
  for (std::string_view a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(args.size()), args.data(),
                             lengths.data()) != REDIS_OK) {
    return Unavailable("append");
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisConnection::Read() {
  void* raw = nullptr;
  if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) return Unavailable("read");
  RedisReply reply = Convert(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  return reply;
}

absl::StatusOr<RedisReply> RedisConnection::Command(const std::vector<std::string_view>& argv) {
  if (broken_) return Unavailable("send");
  if (argv.empty()) return absl::InvalidArgumentError("redis: empty command");
  PERPER_RETURN_IF_ERROR(Append(argv));
  return Read();
}

absl::StatusOr<RedisReply> RedisConnection::Run(const std::vector<std::string_view>& argv) {
  absl::StatusOr<RedisReply> reply = Command(argv);
  if (reply.ok() && reply->is_error()) return ReplyStatus(*reply);
  return reply;
}

absl::StatusOr<std::vector<RedisReply>> RedisConnection::Pipeline(
    const std::vector<std::vector<std::string_view>>& commands) {
  if (broken_) return Unavailable("send");
  for (const auto& argv : commands) {
    if (argv.empty()) return absl::InvalidArgumentError("redis: empty command");
  }
  for (const auto& argv : commands) PERPER_RETURN_IF_ERROR(Append(argv));
  std::vector<RedisReply> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    PERPER_ASSIGN_OR_RETURN(RedisReply reply, Read());
    replies.push_back(std::move(reply));
  }
  return replies;
}

}  // namespace perper::storage::redis
