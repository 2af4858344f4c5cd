// SPDX-License-Identifier: MIT
// Round trips per call: RegisterDescriptor 1 script (+ WAIT when asked), GetDescriptor 1 HGET.
#include "perper/storage/redis/redis_descriptors.h"

#include <utility>

#include "perper/common/status_macros.h"
#include "perper/storage/redis/redis_keys.h"

namespace perper::storage::redis {
namespace {

const std::string& Descriptors() {
  static const std::string* const key = new std::string(Key(kGlobalTag, "desc"));
  return *key;
}

// KEYS: the hash. ARGV: type URL, bytes.
constexpr std::string_view kRegisterScript = R"lua(
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
)lua";

}  // namespace

absl::Status RedisDescriptors::RegisterDescriptor(std::string_view type_url, std::string bytes) {
  if (type_url.empty()) return absl::InvalidArgumentError("type_url must not be empty");
  return pool_.RunWrite(kRegisterScript, {Descriptors()}, {type_url, bytes}).status();
}

absl::StatusOr<std::optional<std::string>> RedisDescriptors::GetDescriptor(
    std::string_view type_url) {
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_.Run(Descriptors(), {"HGET", Descriptors(), type_url}));
  if (reply.type != RedisReply::Type::kString) return std::nullopt;
  return std::move(reply.str);
}

}  // namespace perper::storage::redis
