// SPDX-License-Identifier: MIT
// Round trips per step: ListenerPosition 1, the fence script 1 (+ 1 ZADD when the step created
// the dictionary), AdvanceListener 1 when the listener must move. Without operations and
// dictionary: ListenerPosition 1, AdvanceListener 1 when it applies.
#include "perper/storage/redis/redis_step.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "perper/common/status_macros.h"
#include "perper/storage/redis/redis_keys.h"
#include "perper/storage/redis/redis_states.h"

namespace perper::storage::redis {
namespace {

// After kDecideLua. Positions are decimal strings compared as such (`cmp`): stream keys are
// ticks, beyond the 2^53 a Lua number holds exactly.
// KEYS: d, dx, f. ARGV: fence field, P, reached_key, expected_position ('' when unset),
// whether the listener exists ('0'/'1'), then four per operation: key, flags, new value,
// expected value.
// Returns {verdict, effective position, created, successful 1, previous 1, ...} with verdict
// 'applied', 'taken', 'mismatch' or 'refused' (a compare failed).
constexpr std::string_view kStepBody = R"lua(
local function cmp(a, b)
  if a == b then return 0 end
  local na, nb = a:byte(1) == 45, b:byte(1) == 45
  if na ~= nb then return na and -1 or 1 end
  local r = 0
  if #a ~= #b then
    r = #a < #b and -1 or 1
  else
    for i = 1, #a do
      local x, y = a:byte(i), b:byte(i)
      if x ~= y then r = x < y and -1 or 1; break end
    end
  end
  if na then r = -r end
  return r
end
local reached = ARGV[3]
local effective = ARGV[2]
local exists = ARGV[5] == '1'
local fence = redis.call('HGET', KEYS[3], ARGV[1])
if fence then
  exists = true
  if cmp(fence, effective) > 0 then effective = fence end
end
local verdict = 'applied'
if exists and cmp(reached, effective) <= 0 then
  verdict = 'taken'
elseif ARGV[4] ~= '' and cmp(ARGV[4], effective) ~= 0 then
  verdict = 'mismatch'
end
local reply = {verdict, effective, 0}
local changes, changed = {}, {}
for b = 6, #ARGV, 4 do
  local key = ARGV[b]
  local cur
  if changes[key] then cur = changes[key][1] else cur = redis.call('HGET', KEYS[1], key) end
  local ok, previous, write, remove = decide(cur, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3])
  if ARGV[b + 1]:sub(3, 3) == '1' and not ok and verdict == 'applied' then verdict = 'refused' end
  if write then
    if not changes[key] then changed[#changed + 1] = key end
    if remove then changes[key] = {false} else changes[key] = {ARGV[b + 2]} end
  end
  reply[#reply + 1] = ok and 1 or 0
  reply[#reply + 1] = previous
end
reply[1] = verdict
if verdict ~= 'applied' then return reply end
local wrote = false
for _, key in ipairs(changed) do
  local value = changes[key][1]
  local stored = redis.call('HGET', KEYS[1], key)
  if value == false then
    if stored then redis.call('HDEL', KEYS[1], key); wrote = true end
  elseif stored ~= value then
    redis.call('HSET', KEYS[1], key, value); wrote = true
  end
end
if wrote and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], '1')
  reply[3] = 1
end
redis.call('HSET', KEYS[3], ARGV[1], reached)
return reply
)lua";

absl::Status Malformed() {
  return absl::InternalError("unexpected reply from Redis to a step's fence script");
}

}  // namespace

absl::StatusOr<StepResult> FenceStep(ClientPool& pool, const StepRequest& request,
                                     int64_t listener_position) {
  static const std::string* const script =
      new std::string(std::string(kDecideLua) + std::string(kStepBody));
  const std::string tag = DictionaryTag(request.dictionary);
  const std::string entries = Key(tag, "d"), marker = Key(tag, "dx"), fences = Key(tag, "f");
  const std::string field = absl::StrCat(request.stream, "\n", request.listener);
  const std::string position = std::to_string(listener_position);
  const std::string reached = std::to_string(request.reached_key);
  const std::string expected =
      request.expected_position.has_value() ? std::to_string(*request.expected_position) : "";
  std::vector<std::string> flags;
  flags.reserve(request.operations.size());
  std::vector<std::string_view> args = {field, position, reached, expected,
                                        listener_position != kPositionNotStarted ? "1" : "0"};
  for (const DictionaryOperation& op : request.operations) {
    flags.push_back(DecideFlags(op));
  }
  for (size_t i = 0; i < request.operations.size(); ++i) {
    const DictionaryOperation& op = request.operations[i];
    args.insert(args.end(), {op.key, flags[i], op.new_value, op.expected_existing_value});
  }
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool.RunWrite(*script, {entries, marker, fences}, args));
  if (reply.type != RedisReply::Type::kArray ||
      reply.elements.size() != 3 + 2 * request.operations.size()) {
    return Malformed();
  }
  StepResult result;
  const std::string& verdict = reply.elements[0].str;
  result.applied = verdict == "applied";
  result.already_taken = verdict == "taken";
  result.position_mismatch = verdict == "mismatch";
  if (!absl::SimpleAtoi(reply.elements[1].str, &result.position)) return Malformed();
  if (result.applied) result.position = request.reached_key;
  result.outcomes.reserve(request.operations.size());
  for (size_t i = 3; i < reply.elements.size(); i += 2) {
    DictionaryOutcome& outcome = result.outcomes.emplace_back();
    outcome.operation_successful = reply.elements[i].integer == 1;
    if (reply.elements[i + 1].type == RedisReply::Type::kString) {
      outcome.previous_value = std::move(reply.elements[i + 1].str);
    }
  }
  if (reply.elements[2].integer == 1) {
    PERPER_RETURN_IF_ERROR(NoteDictionaryCreated(pool, request.dictionary));
  }
  return result;
}

absl::StatusOr<StepResult> RunStep(ClientPool& pool, RedisStreams& streams, RedisNotifier& notifier,
                                   const StepRequest& request) {
  PERPER_RETURN_IF_ERROR(ValidateStepRequest(request));
  PERPER_ASSIGN_OR_RETURN(const int64_t listener_position,
                          streams.ListenerPosition(request.stream, request.listener));
  StepResult result;
  if (request.dictionary.empty()) {
    // Nothing to fence: the checks on P, then the move.
    const bool exists = listener_position != kPositionNotStarted;
    result.already_taken = exists && request.reached_key <= listener_position;
    result.position_mismatch = !result.already_taken && request.expected_position.has_value() &&
                               *request.expected_position != listener_position;
    result.applied = !result.already_taken && !result.position_mismatch;
    result.position = listener_position;
  } else {
    PERPER_ASSIGN_OR_RETURN(result, FenceStep(pool, request, listener_position));
    // A taken step whose listener is behind: the process that took it died before the move.
    if (result.already_taken) result.position = listener_position;
  }
  if (result.applied || (result.already_taken && listener_position < request.reached_key)) {
    PERPER_ASSIGN_OR_RETURN(
        result.position,
        streams.AdvanceListener(request.stream, request.listener, request.reached_key));
  }
  return result;
}

}  // namespace perper::storage::redis
