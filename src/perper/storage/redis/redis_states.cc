// SPDX-License-Identifier: MIT
// Round trips per call (one script each unless said):
//   CreateDictionary, CreateList                1 script + 1 ZADD
//   OperateDictionary, OperateList              1; + 1 ZADD when the call created the object
//   ListDictionary, CountDictionary             1
//   LocateInList, ListList, CountList           1
//   DeleteDictionary, DeleteList  keep_cache    1; + 1 ZADD when the call created the object
//                                 otherwise     3 (script, ZREM, re-add check)
//   ListStates                                  1 per page of 256 names + 1 per name
#include "perper/storage/redis/redis_states.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "perper/common/status_macros.h"
#include "perper/common/strings.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/storage/redis/redis_keys.h"

namespace perper::storage::redis {
namespace {

absl::Status CheckName(std::string_view name, std::string_view what) {
  if (!name.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(AbslView(what), " must not be empty"));
}

absl::Status Malformed(std::string_view what) {
  return absl::InternalError(absl::StrCat("unexpected reply from Redis to ", AbslView(what)));
}

const std::string& Dictionaries() {
  static const std::string* const key = new std::string(Key(kGlobalTag, "dicts"));
  return *key;
}
const std::string& Lists() {
  static const std::string* const key = new std::string(Key(kGlobalTag, "lists"));
  return *key;
}

// One dictionary operation, `decide` (kDecideLua) on the stored value.
// KEYS: d, dx. ARGV: key, flags, new value, expected value (as decide takes them).
// Returns {successful, previous value or nil, created}.
constexpr std::string_view kOperateDictionaryBody = R"lua(
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local ok, previous, write, remove = decide(cur, ARGV[2], ARGV[3], ARGV[4])
local created = 0
if write then
  if remove then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  end
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], '1')
    created = 1
  end
end
return {ok and 1 or 0, previous, created}
)lua";

// KEYS: the marker. Returns 1 when it was created.
constexpr std::string_view kCreateMarkerScript = R"lua(
return redis.call('SET', KEYS[1], ARGV[1], 'NX') and 1 or 0
)lua";

// Empties an object and keeps it. KEYS: the items key, the marker. ARGV: the marker's value.
// Returns 1 when the marker was created.
constexpr std::string_view kClearScript = R"lua(
redis.call('DEL', KEYS[1])
local created = redis.call('EXISTS', KEYS[2]) == 0 and 1 or 0
redis.call('SET', KEYS[2], ARGV[1])
return created
)lua";

// Removes an object. KEYS: every key of it.
constexpr std::string_view kDeleteScript = R"lua(
return redis.call('DEL', unpack(KEYS))
)lua";

// KEYS: the marker, the items key. ARGV: the command that counts the items. -1: absent.
constexpr std::string_view kCountScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call(ARGV[1], KEYS[2])
)lua";

// Global zset bookkeeping. KEYS: the zset. ARGV: the name.
constexpr std::string_view kZAddScript = R"lua(
return redis.call('ZADD', KEYS[1], 0, ARGV[1])
)lua";
constexpr std::string_view kZRemScript = R"lua(
return redis.call('ZREM', KEYS[1], ARGV[1])
)lua";

// One list operation, as StatesEngine::OperateListLocked: a splice at a boundary with a
// direction, the raw indices kept stable on one side (see the comment there). The Redis list only
// holds the sequence; the raw index of the front item is the marker's value, so a splice rewrites
// whichever side of it is shorter.
// KEYS: Li, Lm. ARGV: location (0..5 as ListOperation::Location), position, values_count,
// get ('0'/'1'), remove ('0'/'1'), the values to insert...
// Returns {'ok', {collected...}, created} or {'range', start, count}. Raw indices stay far below
// 2^53 (they move by one per item), so Lua numbers hold them exactly; a position beyond that
// range is out of range whatever its rounding.
constexpr std::string_view kOperateListScript = R"lua(
local items, meta = KEYS[1], KEYS[2]
local loc = tonumber(ARGV[1])
local pos = tonumber(ARGV[2])
local vc = tonumber(ARGV[3])
local get = ARGV[4] == '1'
local remove = ARGV[5] == '1'
local nins = #ARGV - 5
local startv = redis.call('GET', meta)
local start = 0
if startv then start = tonumber(startv) end
local count = redis.call('LLEN', items)
local boundary, forward, front
if loc == 0 then
  boundary, forward, front = 0, true, true
elseif loc == 1 then
  boundary, forward, front = count, false, false
elseif loc == 2 then
  if pos < 0 or pos > count then return {'range', start, count} end
  boundary, forward, front = pos, true, false
elseif loc == 3 then
  if pos < 0 or pos > count then return {'range', start, count} end
  boundary, forward, front = count - pos, false, true
elseif loc == 4 then
  if pos < start or pos > start + count then return {'range', start, count} end
  boundary, forward, front = pos - start, true, false
else
  if pos < start - 1 or pos > start + count - 1 then return {'range', start, count} end
  boundary, forward, front = pos - start + 1, false, true
end
local available = boundary
if forward then available = count - boundary end
local reached = 0
if get or remove then reached = math.min(vc, available) end
local lo = boundary
if not forward then lo = boundary - reached end
local hi = lo + reached
local collected = {}
if get and reached > 0 then
  local values = redis.call('LRANGE', items, lo, hi - 1)
  if forward then
    collected = values
  else
    for i = #values, 1, -1 do collected[#collected + 1] = values[i] end
  end
end
local rlo, rhi = boundary, boundary
if remove then rlo, rhi = lo, hi end
if rlo == rhi and nins == 0 then return {'ok', collected, 0} end
local delta = nins - (rhi - rlo)
local function push(command, values, from, to, step)
  local chunk = {}
  for i = from, to, step do
    chunk[#chunk + 1] = values[i]
    if #chunk == 1000 then redis.call(command, items, unpack(chunk)); chunk = {} end
  end
  if #chunk > 0 then redis.call(command, items, unpack(chunk)) end
end
if delta == 0 then
  for i = 1, nins do redis.call('LSET', items, rlo + i - 1, ARGV[5 + i]) end
elseif rlo <= count - rhi then
  -- Rewrite the front: keep the items from rhi on, push the inserted values and the head back.
  local head = {}
  if rlo > 0 then head = redis.call('LRANGE', items, 0, rlo - 1) end
  if rhi > 0 then redis.call('LTRIM', items, rhi, -1) end
  push('LPUSH', ARGV, #ARGV, 6, -1)
  push('LPUSH', head, #head, 1, -1)
else
  -- Rewrite the back: keep the items before rlo, push the inserted values and the tail.
  local tail = {}
  if rhi < count then tail = redis.call('LRANGE', items, rhi, -1) end
  if rlo == 0 then redis.call('DEL', items) else redis.call('LTRIM', items, 0, rlo - 1) end
  push('RPUSH', ARGV, 6, #ARGV, 1)
  push('RPUSH', tail, 1, #tail, 1)
end
local new_start = start
if front then new_start = start - delta end
redis.call('SET', meta, string.format('%d', new_start))
local created = 0
if not startv then created = 1 end
return {'ok', collected, created}
)lua";

// KEYS: Li, Lm. ARGV: the value. Returns {index, start} or nil.
constexpr std::string_view kLocateScript = R"lua(
local index = redis.call('LPOS', KEYS[1], ARGV[1])
if not index then return false end
local start = redis.call('GET', KEYS[2]) or '0'
return {index, start}
)lua";

// KEYS: Li, Lm. Returns {start, {values...}}.
constexpr std::string_view kListListScript = R"lua(
return {redis.call('GET', KEYS[2]) or '0', redis.call('LRANGE', KEYS[1], 0, -1)}
)lua";

// What a dictionary or a list is made of in Redis.
struct StateKeys {
  std::string_view zset;           // The global listing of its kind.
  std::string items;               // The hash of entries, or the list of items.
  std::string marker;              // Exists while the object does.
  std::string_view marker_value;   // What the marker of an emptied object holds.
  std::string_view count_command;  // Counts `items`.
  std::string fences;              // Dictionaries: the step fences (dropped with it).
};
StateKeys DictionaryKeys(std::string_view name) {
  const std::string tag = DictionaryTag(name);
  return {Dictionaries(), Key(tag, "d"), Key(tag, "dx"), "1", "HLEN", Key(tag, "f")};
}
// A list's marker holds the raw index of its front item.
StateKeys ListKeys(std::string_view name) {
  const std::string tag = ListTag(name);
  return {Lists(), Key(tag, "Li"), Key(tag, "Lm"), "0", "LLEN", ""};
}

bool ReplyInt(const RedisReply& reply, int64_t* out) {
  if (reply.type == RedisReply::Type::kInteger) {
    *out = reply.integer;
    return true;
  }
  if (reply.type == RedisReply::Type::kString) return absl::SimpleAtoi(reply.str, out);
  return false;
}

// Adds `name` to the global listing of its kind.
absl::Status List(ClientPool& pool, const StateKeys& keys, std::string_view name) {
  return pool.RunWrite(kZAddScript, {keys.zset}, {name}).status();
}

absl::Status Create(ClientPool& pool, const StateKeys& keys, std::string_view name) {
  PERPER_RETURN_IF_ERROR(
      pool.RunWrite(kCreateMarkerScript, {keys.marker}, {keys.marker_value}).status());
  // Listed every time, so that creating again repairs a listing a crash left out.
  return List(pool, keys, name);
}

absl::StatusOr<uint64_t> Count(ClientPool& pool, const StateKeys& keys) {
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool.Run(keys.items, {keys.count_command, keys.items}));
  if (reply.type != RedisReply::Type::kInteger) return Malformed(keys.count_command);
  return static_cast<uint64_t>(reply.integer);
}

absl::Status Delete(ClientPool& pool, const StateKeys& keys, std::string_view name,
                    bool keep_cache) {
  if (keep_cache) {
    // Emptied, and kept (a dictionary keeps its fences: the steps they record were taken).
    PERPER_ASSIGN_OR_RETURN(
        RedisReply created,
        pool.RunWrite(kClearScript, {keys.items, keys.marker}, {keys.marker_value}));
    if (created.integer == 1) return List(pool, keys, name);
    return absl::OkStatus();
  }
  std::vector<std::string_view> all = {keys.items, keys.marker};
  if (!keys.fences.empty()) all.push_back(keys.fences);
  PERPER_RETURN_IF_ERROR(pool.RunWrite(kDeleteScript, all, {}).status());
  // Unlisted after the delete, and listed again when it was created again meanwhile (its marker
  // exists), so a race never leaves an existing object out of the listing.
  PERPER_RETURN_IF_ERROR(pool.RunWrite(kZRemScript, {keys.zset}, {name}).status());
  PERPER_ASSIGN_OR_RETURN(RedisReply exists, pool.Run(keys.marker, {"EXISTS", keys.marker}));
  if (exists.type == RedisReply::Type::kInteger && exists.integer > 0) {
    return List(pool, keys, name);
  }
  return absl::OkStatus();
}

}  // namespace

std::string DecideFlags(const DictionaryOperation& op) {
  return {op.get_existing_value ? '1' : '0', op.set_new_value ? '1' : '0',
          op.compare_existing_value ? '1' : '0',
          IsNullValue(op.expected_existing_value) ? '1' : '0',
          IsNullValue(op.new_value) ? '1' : '0'};
}

// ---------------------------------------------------------------------------------------------
// Dictionaries

absl::Status RedisStates::CreateDictionary(std::string_view name) {
  PERPER_RETURN_IF_ERROR(CheckName(name, "dictionary"));
  return Create(pool_, DictionaryKeys(name), name);
}

absl::Status NoteDictionaryCreated(ClientPool& pool, std::string_view name) {
  return List(pool, DictionaryKeys(name), name);
}

absl::StatusOr<DictionaryOutcome> RedisStates::OperateDictionary(std::string_view name,
                                                                 const DictionaryOperation& op) {
  PERPER_RETURN_IF_ERROR(CheckName(name, "dictionary"));
  if (IsNullValue(op.key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("key must not be null (dictionary ", Quoted(name), ")"));
  }
  const StateKeys keys = DictionaryKeys(name);
  const std::string flags = DecideFlags(op);
  static const std::string* const script =
      new std::string(absl::StrCat(AbslView(kDecideLua), AbslView(kOperateDictionaryBody)));
  std::vector<std::string_view> args = {op.key, flags, op.new_value, op.expected_existing_value};
  // A read goes without WAIT.
  absl::StatusOr<RedisReply> reply =
      op.set_new_value ? pool_.RunWrite(*script, {keys.items, keys.marker}, args)
                       : pool_.RunScript(*script, {keys.items, keys.marker}, args);
  PERPER_RETURN_IF_ERROR(reply.status());
  if (reply->type != RedisReply::Type::kArray || reply->elements.size() != 3) {
    return Malformed("a dictionary operation");
  }
  DictionaryOutcome outcome;
  outcome.operation_successful = reply->elements[0].integer == 1;
  if (reply->elements[1].type == RedisReply::Type::kString) {
    outcome.previous_value = std::move(reply->elements[1].str);
  }
  if (reply->elements[2].integer == 1) PERPER_RETURN_IF_ERROR(List(pool_, keys, name));
  return outcome;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RedisStates::ListDictionary(
    std::string_view name) {
  const StateKeys keys = DictionaryKeys(name);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool_.Run(keys.items, {"HGETALL", keys.items}));
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() % 2 != 0) {
    return Malformed("HGETALL");
  }
  std::vector<std::pair<std::string, std::string>> entries;
  entries.reserve(reply.elements.size() / 2);
  for (size_t i = 0; i < reply.elements.size(); i += 2) {
    entries.emplace_back(std::move(reply.elements[i].str), std::move(reply.elements[i + 1].str));
  }
  // Key-byte order, as the engines list them (std::string compares bytes as unsigned).
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return entries;
}

absl::StatusOr<uint64_t> RedisStates::CountDictionary(std::string_view name) {
  return Count(pool_, DictionaryKeys(name));
}

absl::Status RedisStates::DeleteDictionary(std::string_view name, bool keep_cache) {
  PERPER_RETURN_IF_ERROR(CheckName(name, "dictionary"));
  return Delete(pool_, DictionaryKeys(name), name, keep_cache);
}

// ---------------------------------------------------------------------------------------------
// Lists

absl::Status RedisStates::CreateList(std::string_view name) {
  PERPER_RETURN_IF_ERROR(CheckName(name, "list"));
  return Create(pool_, ListKeys(name), name);
}

absl::StatusOr<std::vector<std::string>> RedisStates::OperateList(std::string_view name,
                                                                  const ListOperation& op) {
  PERPER_RETURN_IF_ERROR(CheckName(name, "list"));
  const StateKeys keys = ListKeys(name);
  const bool writes = !op.insert_values.empty() || (op.remove_values && op.values_count > 0);
  const std::string location = std::to_string(static_cast<int>(op.location));
  const std::string position = std::to_string(op.position);
  // Clamped so the script's Lua number holds it exactly; no list is that long.
  const std::string values_count =
      std::to_string(std::min<uint64_t>(op.values_count, uint64_t{1} << 52));
  std::vector<std::string_view> args = {location, position, values_count, op.get_values ? "1" : "0",
                                        op.remove_values ? "1" : "0"};
  for (const std::string& value : op.insert_values) args.push_back(value);
  absl::StatusOr<RedisReply> reply =
      writes ? pool_.RunWrite(kOperateListScript, {keys.items, keys.marker}, args)
             : pool_.RunScript(kOperateListScript, {keys.items, keys.marker}, args);
  PERPER_RETURN_IF_ERROR(reply.status());
  if (reply->type != RedisReply::Type::kArray || reply->elements.size() != 3) {
    return Malformed("a list operation");
  }
  if (reply->elements[0].str == "range") {
    // The engine's messages, built here where the position is exact.
    using Location = ListOperation::Location;
    int64_t start = 0, count = 0;
    ReplyInt(reply->elements[1], &start);
    ReplyInt(reply->elements[2], &count);
    switch (op.location) {
      case Location::kIndex:
      case Location::kIndexBackwards:
        return absl::OutOfRangeError(absl::StrCat(
            op.location == Location::kIndex ? "index" : "index_backwards", " ", op.position,
            " is past the end of list ", Quoted(name), " (", count, " items)"));
      case Location::kRawIndex:
        return absl::OutOfRangeError(absl::StrCat("raw_index ", op.position, " is outside list ",
                                                  Quoted(name), " (valid: ", start, " .. ",
                                                  start + count, ")"));
      default:
        return absl::OutOfRangeError(
            absl::StrCat("raw_index_backwards ", op.position, " is outside list ", Quoted(name),
                         " (valid: ", start - 1, " .. ", start + count - 1, ")"));
    }
  }
  std::vector<std::string> collected;
  collected.reserve(reply->elements[1].elements.size());
  for (RedisReply& value : reply->elements[1].elements) collected.push_back(std::move(value.str));
  if (reply->elements[2].integer == 1) PERPER_RETURN_IF_ERROR(List(pool_, keys, name));
  return collected;
}

absl::StatusOr<std::optional<ListEntry>> RedisStates::LocateInList(std::string_view name,
                                                                   std::string_view value) {
  const StateKeys keys = ListKeys(name);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_.RunScript(kLocateScript, {keys.items, keys.marker}, {value}));
  if (reply.type == RedisReply::Type::kNil) return std::nullopt;
  int64_t index = 0, start = 0;
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2 ||
      !ReplyInt(reply.elements[0], &index) || !ReplyInt(reply.elements[1], &start)) {
    return Malformed("LPOS");
  }
  return ListEntry{static_cast<uint32_t>(index), start + index, std::string(value)};
}

absl::StatusOr<std::vector<ListEntry>> RedisStates::ListList(std::string_view name) {
  const StateKeys keys = ListKeys(name);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_.RunScript(kListListScript, {keys.items, keys.marker}, {}));
  int64_t start = 0;
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2 ||
      !ReplyInt(reply.elements[0], &start)) {
    return Malformed("LRANGE");
  }
  std::vector<ListEntry> entries;
  entries.reserve(reply.elements[1].elements.size());
  for (RedisReply& value : reply.elements[1].elements) {
    const size_t i = entries.size();
    entries.push_back(
        {static_cast<uint32_t>(i), start + static_cast<int64_t>(i), std::move(value.str)});
  }
  return entries;
}

absl::StatusOr<uint64_t> RedisStates::CountList(std::string_view name) {
  return Count(pool_, ListKeys(name));
}

absl::Status RedisStates::DeleteList(std::string_view name, bool keep_cache) {
  PERPER_RETURN_IF_ERROR(CheckName(name, "list"));
  // With keep_cache the list stays, empty, its raw indices starting again at 0.
  return Delete(pool_, ListKeys(name), name, keep_cache);
}

// ---------------------------------------------------------------------------------------------
// Listing

absl::StatusOr<std::vector<StateSummary>> RedisStates::ListStates(std::string_view prefix,
                                                                  size_t limit) {
  constexpr int64_t kPage = 256;
  std::vector<StateSummary> result;
  const std::string from = absl::StrCat("[", AbslView(prefix));
  for (StateSummary::Kind kind : {StateSummary::Kind::kDictionary, StateSummary::Kind::kList}) {
    const bool dictionary = kind == StateSummary::Kind::kDictionary;
    const std::string_view zset = dictionary ? Dictionaries() : Lists();
    for (int64_t offset = 0; result.size() < limit; offset += kPage) {
      const std::string offset_text = std::to_string(offset);
      const std::string page_text = std::to_string(kPage);
      PERPER_ASSIGN_OR_RETURN(RedisReply page, pool_.Run(zset, {"ZRANGEBYLEX", zset, from, "+",
                                                                "LIMIT", offset_text, page_text}));
      if (page.type != RedisReply::Type::kArray) return Malformed("ZRANGEBYLEX");
      bool past_prefix = false;
      for (RedisReply& entry : page.elements) {
        if (result.size() >= limit) break;
        std::string& name = entry.str;
        if (std::string_view(name).substr(0, prefix.size()) != prefix) {
          past_prefix = true;
          break;
        }
        const StateKeys keys = dictionary ? DictionaryKeys(name) : ListKeys(name);
        PERPER_ASSIGN_OR_RETURN(
            RedisReply count,
            pool_.RunScript(kCountScript, {keys.marker, keys.items}, {keys.count_command}));
        if (count.type != RedisReply::Type::kInteger) return Malformed("a count");
        // A name whose object is gone (a crash between the two writes) is not listed.
        if (count.integer < 0) continue;
        result.push_back({std::move(name), kind, static_cast<uint64_t>(count.integer)});
      }
      if (past_prefix || static_cast<int64_t>(page.elements.size()) < kPage) break;
    }
  }
  return result;
}

}  // namespace perper::storage::redis
