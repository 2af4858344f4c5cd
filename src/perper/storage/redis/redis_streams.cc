// SPDX-License-Identifier: MIT
// RedisStreams: StreamStore on Redis (layout and rules in redis_streams.h).
//
// Round trips per call (each script runs in the stream's slot):
//   CreateStream        2: the create script, then ZADD to {perper}:streams (always, so a retry
//                          repairs a create interrupted between the two)
//   WriteItems(Bounded) 1 script (keys chosen, checked and written in it)
//   GetStream           1 command (HGETALL)
//   ReadItems, VisitItems, LastKey, GetProgress, ListListeners, ListenerPosition
//                       1 script
//   CompleteStream      1 script
//   DeleteStream        2: the delete script (UNLINK: Redis frees large keys in the
//                          background), then ZREM from {perper}:streams
//   RegisterListener    1 script; a transient one 3 (SADD {perper}:tlp and {p:<pid>}:tl first,
//                          so that no transient listener exists that the sweeper cannot find)
//   MoveListener, AdvanceListener, DeleteListener
//                       1 script, plus one collection script per further 1,000 items to collect
//                       (plus SREM {p:<pid>}:tl when deleting a transient listener of ours)
//   ListStreams         1 ZRANGEBYLEX, then 1 script per stream
//   SweepDeadProcesses  2 (own lease, SMEMBERS {perper}:tlp), 1 EXISTS per other process, and
//                       per dead one SMEMBERS, then per listener its delete script and SREM
#include "perper/storage/redis/redis_streams.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <utility>

#include "perper/common/status_macros.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/storage/redis/leases.h"
#include "perper/storage/redis/redis_keys.h"

namespace perper::storage::redis {
namespace {

// Every script starts with these helpers. Keys and positions are 8-byte strings (see the
// header); `cmp` compares them byte by byte (Lua's `<` on strings follows the server's collation
// locale, so it is not used).
constexpr std::string_view kHelpers = R"lua(
local NOT_STARTED = string.rep('\0', 8)
local TRIGGER = string.rep('\255', 8)
local BATCH = 1000
local OVERHEAD = tonumber(ARGV[1])
local function cmp(a, b)
  if a == b then return 0 end
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end
-- a + 1, or nil when a is the largest key.
local function inc(a)
  local bytes = {string.byte(a, 1, 8)}
  for i = 8, 1, -1 do
    if bytes[i] < 255 then
      bytes[i] = bytes[i] + 1
      return string.char(unpack(bytes))
    end
    bytes[i] = 0
  end
  return nil
end
-- The lowest listener position that protects items (triggers protect nothing) and its
-- listener's name, or nil when none does; and the number of listeners.
local function lowest(l)
  local low, low_name = nil, nil
  local all = redis.call('HGETALL', l)
  for i = 1, #all, 2 do
    local p = string.sub(all[i + 1], 1, 8)
    if p ~= TRIGGER and (low == nil or cmp(p, low) < 0) then
      low, low_name = p, all[i]
    end
  end
  return low, low_name, #all / 2
end
-- Deletes at most BATCH items of an ephemeral stream below the lowest protecting listener
-- position (every item when no listener protects any); returns 1 when more may remain.
local function collect(m, k, v, l)
  if redis.call('HGET', m, 'e') ~= '1' then return 0 end
  local low = lowest(l)
  if low == NOT_STARTED then return 0 end
  local hi = '+'
  if low then hi = '(' .. low end
  local victims = redis.call('ZRANGEBYLEX', k, '-', hi, 'LIMIT', 0, BATCH)
  local n = #victims
  if n == 0 then return 0 end
  local freed = 0
  for i = 1, n do freed = freed + redis.call('HSTRLEN', v, victims[i]) + OVERHEAD end
  redis.call('HDEL', v, unpack(victims))
  redis.call('ZREM', k, unpack(victims))
  local top = victims[n]
  local floor = redis.call('HGET', m, 'gf')
  if not floor or cmp(top, floor) > 0 then redis.call('HSET', m, 'gf', top) end
  redis.call('HINCRBY', m, 'cc', n)
  redis.call('HINCRBY', m, 'rb', -freed)
  if n == BATCH then return 1 end
  return 0
end
)lua";

// Script conventions: KEYS are m, k, v, l of one stream (a prefix of them); ARGV[1] is the item
// overhead for `collect`; a missing stream answers false (nil) or {'NOTFOUND'}.

// ARGV: overhead, ephemeral, stride. {1} created, or {0, e, st, c} of the existing stream.
constexpr std::string_view kCreateScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
  local f = redis.call('HMGET', KEYS[1], 'e', 'st', 'c')
  return {0, f[1] or '', f[2] or '', f[3] or ''}
end
redis.call('HSET', KEYS[1], 'e', ARGV[2], 'st', ARGV[3], 'c', '0', 'cc', '0', 'rb', '0')
return {1}
)lua";

// ARGV: overhead, now (8 bytes), retention limit ('' for none), write token ('' for none), then
// per item its key (8 bytes, or '' for an auto key) and its value. A write with a token records
// its answer under it (fields wt, wn, wl, wk): a resent script with the same token (its reply was
// lost with the connection) answers that again instead of choosing new auto keys. As
// StreamsEngine::WriteItemsBounded:
// {'OK', fresh count, largest fresh key or '', key...}, {'CONFLICT', key}, {'TWICE', key},
// {'RANGE'}, {'COMPLETED'}, {'FULL', retained, items, bytes, lowest name, lowest position,
// listeners}.
constexpr std::string_view kWriteScript = R"lua(
local m, k, v, l = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', m) == 0 then return {'NOTFOUND'} end
local meta = redis.call('HMGET', m, 'lk', 'gf', 'c', 'e', 'rb')
local last, floor = meta[1], meta[2]
local now, token = ARGV[2], ARGV[4]
local n = (#ARGV - 4) / 2
if token ~= '' then
  local done = redis.call('HMGET', m, 'wt', 'wn', 'wl', 'wk')
  if done[1] == token then
    local again = {'OK', tonumber(done[2]), done[3]}
    for i = 1, n do again[3 + i] = string.sub(done[4], 8 * i - 7, 8 * i) end
    return again
  end
end
local written, replayed = {}, {}
local fresh, bytes, any_explicit, largest = 0, 0, false, ''
for i = 1, n do
  local key, value = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local replay = false
  if key ~= '' then
    any_explicit = true
    local stored = redis.call('HGET', v, key)
    if stored then
      if stored ~= value then return {'CONFLICT', key} end
      replay = true
    elseif floor and cmp(key, floor) <= 0 then
      replay = true
    end
  elseif last then
    local after = inc(last)
    if not after then return {'RANGE'} end
    if cmp(now, after) > 0 then key = now else key = after end
  else
    key = now
  end
  if not replay then
    if not last or cmp(last, key) < 0 then last = key end
    if largest == '' or cmp(largest, key) < 0 then largest = key end
    bytes = bytes + #value + OVERHEAD
    fresh = fresh + 1
  end
  written[i] = key
  replayed[i] = replay
end
if any_explicit and n > 1 then
  local seen = {}
  for i = 1, n do
    if seen[written[i]] then return {'TWICE', written[i]} end
    seen[written[i]] = true
  end
end
local reply = {'OK', fresh, largest}
for i = 1, n do reply[3 + i] = written[i] end
if fresh == 0 then return reply end
if meta[3] == '1' then return {'COMPLETED'} end
if ARGV[3] ~= '' and meta[4] == '1' and redis.call('ZCARD', k) > 0 then
  local limit, retained = tonumber(ARGV[3]), tonumber(meta[5] or '0')
  if retained > limit or bytes > limit - retained then
    local low, low_name, count = lowest(l)
    return {'FULL', meta[5] or '0', redis.call('ZCARD', k), bytes, low_name or '', low or '',
            count}
  end
end
for i = 1, n do
  if not replayed[i] then
    redis.call('ZADD', k, 0, written[i])
    redis.call('HSET', v, written[i], ARGV[4 + 2 * i])
  end
end
redis.call('HSET', m, 'lk', last)
redis.call('HINCRBY', m, 'rb', bytes)
if token ~= '' then
  redis.call('HSET', m, 'wt', token, 'wn', fresh, 'wl', largest, 'wk', table.concat(written))
end
return reply
)lua";

// ARGV: overhead, from key (8 bytes), max items, max bytes. false, or {key, value, ...} as
// StreamsEngine::ReadItems selects them: stops after the item that reaches max bytes.
constexpr std::string_view kReadScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local out = {}
local count, bytes = 0, 0
local max_items, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local lo, chunk = '[' .. ARGV[2], 16
while count < max_items and bytes < max_bytes do
  local want = math.min(max_items - count, chunk)
  local keys = redis.call('ZRANGEBYLEX', KEYS[2], lo, '+', 'LIMIT', 0, want)
  if #keys == 0 then break end
  local values = redis.call('HMGET', KEYS[3], unpack(keys))
  for i = 1, #keys do
    if count >= max_items or bytes >= max_bytes then break end
    local value = values[i] or ''
    out[#out + 1] = keys[i]
    out[#out + 1] = value
    count = count + 1
    bytes = bytes + #value + 8
  end
  if #keys < want then break end
  lo = '(' .. keys[#keys]
  chunk = math.min(chunk * 2, 512)
end
return out
)lua";

// ARGV: overhead, with listeners ('1' or '0'). false, or {meta fields and values, item count,
// first key or '', last key or '', listener fields and values}.
constexpr std::string_view kDescribeScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local first = redis.call('ZRANGE', KEYS[2], 0, 0)
local last = redis.call('ZRANGE', KEYS[2], -1, -1)
local listeners = {}
if ARGV[2] == '1' then listeners = redis.call('HGETALL', KEYS[4]) end
return {redis.call('HGETALL', KEYS[1]), redis.call('ZCARD', KEYS[2]), first[1] or '',
        last[1] or '', listeners}
)lua";

// ARGV: overhead, has error ('1' or '0'), error. 'NOTFOUND', 'DONE' (already completed) or 'OK'.
// RedisExecutions' CompleteWithStreamScript() does the same on a standalone server.
constexpr std::string_view kCompleteScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 'NOTFOUND' end
if redis.call('HGET', KEYS[1], 'c') == '1' then return 'DONE' end
redis.call('HSET', KEYS[1], 'c', '1')
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'err', ARGV[3]) end
return 'OK'
)lua";

// 1 deleted, 0 absent.
constexpr std::string_view kDeleteStreamScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return 1
)lua";

// ARGV: overhead, name, stored value for a new listener. {'NOTFOUND'}, or {created 1/0, stored
// value}.
constexpr std::string_view kRegisterScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOTFOUND'} end
local current = redis.call('HGET', KEYS[4], ARGV[2])
if current then return {0, current} end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
return {1, ARGV[3]}
)lua";

// ARGV: overhead, name, position (8 bytes), forward only ('1' or '0'). Sets the position (a
// transient listener stays transient; an absent one is created durable), unless forward only
// and the listener is at or past it. {'NOTFOUND'} or {moved 1/0, position after, more to
// collect 1/0}.
constexpr std::string_view kMoveScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOTFOUND'} end
local current = redis.call('HGET', KEYS[4], ARGV[2])
local suffix = 'd'
if current then
  local at = string.sub(current, 1, 8)
  if ARGV[4] == '1' and cmp(ARGV[3], at) <= 0 then return {0, at, 0} end
  suffix = string.sub(current, 9)
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3] .. suffix)
return {1, ARGV[3], collect(KEYS[1], KEYS[2], KEYS[3], KEYS[4])}
)lua";

// ARGV: overhead, name, owner ('' any; else only a transient listener of that process).
// {'NOTFOUND'} or {deleted 1/0, stored suffix, more to collect 1/0}.
constexpr std::string_view kDeleteListenerScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOTFOUND'} end
local current = redis.call('HGET', KEYS[4], ARGV[2])
if not current then return {0, '', 0} end
local suffix = string.sub(current, 9)
if ARGV[3] ~= '' and suffix ~= 't' .. ARGV[3] then return {0, suffix, 0} end
redis.call('HDEL', KEYS[4], ARGV[2])
return {1, suffix, collect(KEYS[1], KEYS[2], KEYS[3], KEYS[4])}
)lua";

// 1 when more may remain to collect.
constexpr std::string_view kCollectScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return collect(KEYS[1], KEYS[2], KEYS[3], KEYS[4])
)lua";

// ARGV: overhead, name ('' for every listener). false, or {name, stored value, ...}.
constexpr std::string_view kListenersScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[2] == '' then return redis.call('HGETALL', KEYS[4]) end
local current = redis.call('HGET', KEYS[4], ARGV[2])
if not current then return {} end
return {ARGV[2], current}
)lua";

// One write command on KEYS[1] (ARGV: the command, then its arguments after the key), run as a
// script so that it goes through ClientPool::RunWrite like every other write.
constexpr std::string_view kCommandScript = "return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))";

const std::string& Script(std::string_view body) {
  // One text per script, built once: the helpers followed by the body (ClusterClient caches
  // the SHA1 by text). A deque, so that adding one keeps the texts handed out in place.
  static absl::Mutex mu;
  static auto* texts = new std::deque<std::pair<const char*, std::string>>();
  absl::MutexLock lock(&mu);
  for (const auto& [key, text] : *texts) {
    if (key == body.data()) return text;
  }
  std::string text(kHelpers);
  text.append(body);
  texts->emplace_back(body.data(), std::move(text));
  return texts->back().second;
}

constexpr std::string_view kOverhead = "128";
static_assert(kRetainedItemOverhead == 128, "kOverhead spells kRetainedItemOverhead");
const std::string& StreamsIndex() {
  static const std::string* key = new std::string(Key(kGlobalTag, "streams"));
  return *key;
}
const std::string& TransientProcesses() {
  static const std::string* key = new std::string(Key(kGlobalTag, "tlp"));
  return *key;
}

std::string StreamNotFound(std::string_view stream) {
  return "stream " + ShortId(stream) + " not found";
}

std::string EncodeKey(int64_t key) { return EncodeInt64(key); }

absl::StatusOr<int64_t> DecodeKey(std::string_view bytes) {
  if (bytes.size() != 8) return absl::DataLossError("a stream key in Redis is not 8 bytes long");
  return DecodeInt64(bytes);
}

// A stored listener: 8-byte position, then "d" or "t<owner process>".
absl::StatusOr<ListenerRecord> DecodeListener(std::string name, std::string_view stored) {
  if (stored.size() < 9) return absl::DataLossError("a listener record in Redis is malformed");
  PERPER_ASSIGN_OR_RETURN(int64_t position, DecodeKey(stored.substr(0, 8)));
  return ListenerRecord{std::move(name), position, stored[8] == 't'};
}

absl::Status Unexpected(std::string_view what) {
  return absl::InternalError("unexpected reply from Redis to " + std::string(what));
}

bool IsStatus(const RedisReply& reply, std::string_view status) {
  return reply.type == RedisReply::Type::kArray && !reply.elements.empty() &&
         reply.elements[0].str == status;
}

// "<decimal length>:<stream><name>": names are any bytes, so no separator would do.
std::string TransientEntry(std::string_view stream, std::string_view name) {
  std::string entry = std::to_string(stream.size()) + ":";
  entry.append(stream);
  entry.append(name);
  return entry;
}

bool SplitTransientEntry(std::string_view entry, std::string_view* stream, std::string_view* name) {
  size_t colon = entry.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  size_t length = 0;
  for (char c : entry.substr(0, colon)) {
    if (c < '0' || c > '9') return false;
    length = length * 10 + static_cast<size_t>(c - '0');
    if (length > entry.size()) return false;
  }
  if (colon + 1 + length > entry.size()) return false;
  *stream = entry.substr(colon + 1, length);
  *name = entry.substr(colon + 1 + length);
  return true;
}

std::string TransientSet(std::string_view pid) { return Key(ProcessTag(pid), "tl"); }

// The first string after every string that starts with `prefix`, as a ZRANGEBYLEX bound.
std::string PrefixEndBound(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (prefix.empty()) return "+";
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return "(" + prefix;
}

}  // namespace

struct RedisStreams::Keys {
  explicit Keys(std::string_view stream) {
    std::string tag = StreamTag(stream);
    m = Key(tag, "m");
    k = Key(tag, "k");
    v = Key(tag, "v");
    l = Key(tag, "l");
  }
  std::vector<std::string_view> all() const { return {m, k, v, l}; }
  std::string m, k, v, l;
};

std::string RedisStreams::MetaKey(std::string_view stream) { return Keys(stream).m; }

RedisStreams::RedisStreams(ClientPool& pool, RedisNotifier& notifier)
    : pool_(&pool), notifier_(&notifier) {}

absl::Status RedisStreams::Start() {
  // A few sweeps per lease: a dead process's transient listeners go soon after its lease.
  const std::chrono::milliseconds every =
      std::max(pool_->options().lease / 3, std::chrono::milliseconds(50));
  sweeper_ = std::thread([this, every] { SweepLoop(every); });
  return absl::OkStatus();
}

RedisStreams::~RedisStreams() {
  {
    absl::MutexLock lock(&sweeper_mu_);
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
  // Our calls end with us: their transient listeners must not hold items until the lease runs
  // out. Best effort; the other processes' sweepers remove whatever is left. Silently: the
  // observer may be going away too.
  closing_.store(true, std::memory_order_relaxed);
  (void)DropTransientListenersOf(pool_->process_id());
}

absl::Status RedisStreams::WriteCommand(std::string_view key,
                                        std::vector<std::string_view> command) {
  return pool_->RunWrite(kCommandScript, {key}, command).status();
}

void RedisStreams::Notify(Change::Kind kind, std::string_view stream, int64_t key) const {
  if (closing_.load(std::memory_order_relaxed)) return;
  Change change;
  change.kind = kind;
  change.id = std::string(stream);
  change.key = key;
  notifier_->Notify(change);
}

absl::StatusOr<bool> RedisStreams::CreateStream(StreamRecord record) {
  if (record.stream.empty()) return absl::InvalidArgumentError("stream ID must not be empty");
  Keys keys(record.stream);
  std::string stride = std::to_string(record.stride);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunWrite(Script(kCreateScript), {keys.m},
                                          {kOverhead, record.ephemeral ? "1" : "0", stride}));
  if (reply.type != RedisReply::Type::kArray || reply.elements.empty())
    return Unexpected("a stream create");
  const bool created = reply.elements[0].integer == 1;
  if (!created) {
    if (reply.elements.size() != 4) return Unexpected("a stream create");
    const bool ephemeral = reply.elements[1].str == "1";
    const bool completed = reply.elements[3].str == "1";
    if (completed || ephemeral != record.ephemeral || reply.elements[2].str != stride) {
      std::string why = completed ? "is completed"
                                  : "has different options (ephemeral " +
                                        std::string(ephemeral ? "true" : "false") + ", stride " +
                                        reply.elements[2].str + ")";
      return absl::AlreadyExistsError("stream " + record.stream + " already exists and " + why);
    }
  }
  PERPER_RETURN_IF_ERROR(WriteCommand(StreamsIndex(), {"ZADD", "0", record.stream}));
  if (created) Notify(Change::Kind::kStreamCreated, record.stream);
  return created;
}

namespace {

// The fields of a stream's metadata hash (HGETALL) into `summary` and `collected`.
void ParseMeta(std::string_view stream, const std::vector<RedisReply>& meta, StreamSummary& summary,
               uint64_t& collected) {
  summary.record.stream = std::string(stream);
  for (size_t i = 0; i + 1 < meta.size(); i += 2) {
    const std::string& field = meta[i].str;
    const std::string& value = meta[i + 1].str;
    if (field == "e") {
      summary.record.ephemeral = value == "1";
    } else if (field == "st") {
      summary.record.stride = std::strtoll(value.c_str(), nullptr, 10);
    } else if (field == "c") {
      summary.record.completed = value == "1";
    } else if (field == "err") {
      summary.record.error = value;
    } else if (field == "cc") {
      collected = std::strtoull(value.c_str(), nullptr, 10);
    } else if (field == "rb") {
      summary.retained_bytes = std::strtoull(value.c_str(), nullptr, 10);
    }
  }
}

}  // namespace

absl::StatusOr<StreamSummary> RedisStreams::Summary(std::string_view stream, bool with_listeners,
                                                    bool* found) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunScript(Script(kDescribeScript), keys.all(),
                                           {kOverhead, with_listeners ? "1" : "0"}));
  StreamSummary summary;
  *found = reply.type != RedisReply::Type::kNil;
  if (!*found) return summary;
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 5)
    return Unexpected("a stream read");
  uint64_t collected = 0;
  ParseMeta(stream, reply.elements[0].elements, summary, collected);
  summary.item_count = static_cast<uint64_t>(reply.elements[1].integer);
  summary.written_count = collected + summary.item_count;
  if (!reply.elements[2].str.empty()) {
    PERPER_ASSIGN_OR_RETURN(int64_t first, DecodeKey(reply.elements[2].str));
    PERPER_ASSIGN_OR_RETURN(int64_t last, DecodeKey(reply.elements[3].str));
    summary.first_key = first;
    summary.last_key = last;
  }
  const std::vector<RedisReply>& listeners = reply.elements[4].elements;
  for (size_t i = 0; i + 1 < listeners.size(); i += 2) {
    PERPER_ASSIGN_OR_RETURN(ListenerRecord listener,
                            DecodeListener(listeners[i].str, listeners[i + 1].str));
    summary.listeners.push_back(std::move(listener));
  }
  std::sort(summary.listeners.begin(), summary.listeners.end(),
            [](const ListenerRecord& a, const ListenerRecord& b) { return a.name < b.name; });
  return summary;
}

absl::StatusOr<StreamRecord> RedisStreams::GetStream(std::string_view stream) {
  // A plain command, not a script: every listen call reads the record before its items.
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(RedisReply meta, pool_->Run(keys.m, {"HGETALL", keys.m}));
  if (meta.elements.empty()) return absl::NotFoundError(StreamNotFound(stream));
  StreamSummary summary;
  uint64_t collected = 0;
  ParseMeta(stream, meta.elements, summary, collected);
  return std::move(summary.record);
}

absl::StatusOr<std::vector<int64_t>> RedisStreams::WriteItems(std::string_view stream,
                                                              std::vector<ItemToWrite> items) {
  return WriteItemsBounded(stream, items, std::numeric_limits<size_t>::max());
}

absl::StatusOr<std::vector<int64_t>> RedisStreams::WriteItemsBounded(
    std::string_view stream, std::vector<ItemToWrite>& items, size_t max_retained_bytes) {
  Keys keys(stream);
  std::string now = EncodeKey(NowTicks());
  std::string limit = max_retained_bytes == std::numeric_limits<size_t>::max()
                          ? std::string()
                          : std::to_string(max_retained_bytes);
  // Only auto keys make a resent write unsafe (explicit keys are replays the second time).
  std::string token;
  if (std::any_of(items.begin(), items.end(),
                  [](const ItemToWrite& item) { return !item.key.has_value(); })) {
    token = pool_->process_id() + ":" +
            std::to_string(write_tokens_.fetch_add(1, std::memory_order_relaxed));
  }
  std::vector<std::string> encoded;
  encoded.reserve(items.size());  // `args` points into it: no reallocation.
  std::vector<std::string_view> args = {kOverhead, now, limit, token};
  args.reserve(4 + 2 * items.size());
  for (const ItemToWrite& item : items) {
    encoded.push_back(item.key.has_value() ? EncodeKey(*item.key) : std::string());
    args.push_back(encoded.back());
    args.push_back(item.value);
  }
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunWrite(Script(kWriteScript), keys.all(), args));
  if (reply.type != RedisReply::Type::kArray || reply.elements.empty())
    return Unexpected("a stream write");
  const std::vector<RedisReply>& e = reply.elements;
  const std::string& status = e[0].str;
  if (status == "NOTFOUND") return absl::NotFoundError(StreamNotFound(stream));
  if (status == "CONFLICT" || status == "TWICE") {
    PERPER_ASSIGN_OR_RETURN(int64_t key, DecodeKey(e.size() > 1 ? e[1].str : ""));
    if (status == "CONFLICT") {
      return absl::AlreadyExistsError("key " + std::to_string(key) + " of stream " +
                                      ShortId(stream) + " already holds a different value");
    }
    return absl::AlreadyExistsError("key " + std::to_string(key) + " of stream " +
                                    std::string(stream) + " is used twice in the batch");
  }
  if (status == "RANGE") {
    return absl::OutOfRangeError("stream " + std::string(stream) +
                                 " has used the largest key; no auto key is left");
  }
  if (status == "COMPLETED") {
    return absl::FailedPreconditionError("stream " + std::string(stream) +
                                         " is completed; no more items can be written");
  }
  if (status == "FULL") {
    if (e.size() != 7) return Unexpected("a stream write");
    std::string message = "stream " + std::string(stream) + " retains " + e[1].str + " bytes in " +
                          std::to_string(e[2].integer) +
                          " items that not every listener has passed; writing " +
                          std::to_string(e[3].integer) + " more would pass its limit of " + limit +
                          " bytes (--max-stream-retained-bytes): ";
    if (!e[5].str.empty()) {
      PERPER_ASSIGN_OR_RETURN(int64_t lowest, DecodeKey(e[5].str));
      message +=
          "listener " + e[4].str + " at position " +
          (lowest == kPositionNotStarted ? std::string("not started") : std::to_string(lowest)) +
          " holds them back";
    } else if (e[6].integer == 0) {
      message += "the stream has no listener, so nothing is collected";
    } else {
      message += "its only listeners are triggers; items go at the next listener change";
    }
    return RetentionBoundReached(std::move(message));
  }
  if (status != "OK" || e.size() != 3 + items.size()) return Unexpected("a stream write");
  std::vector<int64_t> written;
  written.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    PERPER_ASSIGN_OR_RETURN(int64_t key, DecodeKey(e[3 + i].str));
    written.push_back(key);
  }
  if (e[1].integer > 0) {
    PERPER_ASSIGN_OR_RETURN(int64_t largest, DecodeKey(e[2].str));
    // The values are in Redis now; free them as the engine does by moving them into its map.
    for (ItemToWrite& item : items) std::string().swap(item.value);
    Notify(Change::Kind::kStreamItemsWritten, stream, largest);
  }
  return written;
}

absl::StatusOr<size_t> RedisStreams::VisitItems(
    std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
    absl::FunctionRef<void(int64_t key, std::string_view value)> visit) {
  Keys keys(stream);
  std::string from = EncodeKey(from_key);
  std::string items = std::to_string(max_items);
  std::string bytes = std::to_string(max_bytes);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunScript(Script(kReadScript), {keys.m, keys.k, keys.v},
                                           {kOverhead, from, items, bytes}));
  if (reply.type == RedisReply::Type::kNil) return absl::NotFoundError(StreamNotFound(stream));
  if (reply.type != RedisReply::Type::kArray) return Unexpected("a stream read");
  size_t count = 0;
  for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
    PERPER_ASSIGN_OR_RETURN(int64_t key, DecodeKey(reply.elements[i].str));
    visit(key, reply.elements[i + 1].str);
    ++count;
  }
  return count;
}

absl::StatusOr<std::vector<StreamItem>> RedisStreams::ReadItems(std::string_view stream,
                                                                int64_t from_key, size_t max_items,
                                                                size_t max_bytes) {
  std::vector<StreamItem> result;
  PERPER_RETURN_IF_ERROR(
      VisitItems(stream, from_key, max_items, max_bytes, [&](int64_t key, std::string_view value) {
        result.push_back(StreamItem{key, std::string(value)});
      }).status());
  return result;
}

absl::StatusOr<std::optional<int64_t>> RedisStreams::LastKey(std::string_view stream) {
  bool found = false;
  PERPER_ASSIGN_OR_RETURN(StreamSummary summary, Summary(stream, false, &found));
  if (!found) return absl::NotFoundError(StreamNotFound(stream));
  return summary.last_key;
}

absl::StatusOr<StreamProgress> RedisStreams::GetProgress(std::string_view stream) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(
      RedisReply reply,
      pool_->RunScript("if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
                       "return {redis.call('HMGET', KEYS[1], 'lk', 'cc', 'c', 'err'),\n"
                       "        redis.call('ZCARD', KEYS[2])}",
                       {keys.m, keys.k}, {}));
  if (reply.type == RedisReply::Type::kNil) return absl::NotFoundError(StreamNotFound(stream));
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2 ||
      reply.elements[0].elements.size() != 4) {
    return Unexpected("a stream progress read");
  }
  const std::vector<RedisReply>& meta = reply.elements[0].elements;
  StreamProgress progress;
  if (meta[0].type == RedisReply::Type::kString) {
    PERPER_ASSIGN_OR_RETURN(int64_t last, DecodeKey(meta[0].str));
    progress.last_key = last;
  }
  progress.written_count = std::strtoull(meta[1].str.c_str(), nullptr, 10) +
                           static_cast<uint64_t>(reply.elements[1].integer);
  progress.completed = meta[2].str == "1";
  if (meta[3].type == RedisReply::Type::kString) progress.error = meta[3].str;
  return progress;
}

absl::Status RedisStreams::CompleteStream(std::string_view stream,
                                          std::optional<std::string> error) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(
      RedisReply reply,
      pool_->RunWrite(Script(kCompleteScript), {keys.m},
                      {kOverhead, error.has_value() ? "1" : "0", error.value_or("")}));
  if (reply.str == "NOTFOUND") return absl::NotFoundError(StreamNotFound(stream));
  if (reply.str == "DONE") {
    return absl::FailedPreconditionError("stream " + std::string(stream) + " is already completed");
  }
  if (reply.str != "OK") return Unexpected("a stream completion");
  Notify(Change::Kind::kStreamCompleted, stream);
  return absl::OkStatus();
}

absl::StatusOr<bool> RedisStreams::DeleteStream(std::string_view stream) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunWrite(Script(kDeleteStreamScript), keys.all(), {kOverhead}));
  // Always, so that a delete interrupted between the two is finished by a retry.
  PERPER_RETURN_IF_ERROR(WriteCommand(StreamsIndex(), {"ZREM", stream}));
  if (reply.integer != 1) return false;
  Notify(Change::Kind::kStreamDeleted, stream);
  return true;
}

absl::StatusOr<ListenerRecord> RedisStreams::RegisterListener(std::string_view stream,
                                                              std::string_view name,
                                                              int64_t position, bool transient) {
  if (name.empty()) return absl::InvalidArgumentError("listener name must not be empty");
  const std::string& pid = pool_->process_id();
  std::string stored = EncodeKey(position);
  if (transient) {
    // Registered with the sweeper before it exists, so a crash right after leaves nothing that
    // cannot be found.
    PERPER_RETURN_IF_ERROR(WriteCommand(TransientProcesses(), {"SADD", pid}));
    PERPER_RETURN_IF_ERROR(WriteCommand(TransientSet(pid), {"SADD", TransientEntry(stream, name)}));
    stored += "t" + pid;
  } else {
    stored += "d";
  }
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool_->RunWrite(Script(kRegisterScript), keys.all(),
                                                            {kOverhead, name, stored}));
  if (IsStatus(reply, "NOTFOUND")) return absl::NotFoundError(StreamNotFound(stream));
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2)
    return Unexpected("a listener registration");
  PERPER_ASSIGN_OR_RETURN(ListenerRecord listener,
                          DecodeListener(std::string(name), reply.elements[1].str));
  // A new listener only lowers the protected range (or adds a trigger): nothing to collect.
  if (reply.elements[0].integer == 1) Notify(Change::Kind::kListenerChanged, stream);
  return listener;
}

absl::Status RedisStreams::FinishCollection(const Keys& keys, int64_t more) {
  while (more == 1) {
    PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                            pool_->RunWrite(Script(kCollectScript), keys.all(), {kOverhead}));
    more = reply.integer;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RedisStreams::SetListener(std::string_view stream, std::string_view name,
                                                  int64_t position, bool forward_only) {
  if (name.empty()) return absl::InvalidArgumentError("listener name must not be empty");
  Keys keys(stream);
  std::string to = EncodeKey(position);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunWrite(Script(kMoveScript), keys.all(),
                                          {kOverhead, name, to, forward_only ? "1" : "0"}));
  if (IsStatus(reply, "NOTFOUND")) return absl::NotFoundError(StreamNotFound(stream));
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 3)
    return Unexpected("a listener move");
  PERPER_ASSIGN_OR_RETURN(int64_t after, DecodeKey(reply.elements[1].str));
  if (reply.elements[0].integer == 1) {
    PERPER_RETURN_IF_ERROR(FinishCollection(keys, reply.elements[2].integer));
    Notify(Change::Kind::kListenerChanged, stream);
  }
  return after;
}

absl::Status RedisStreams::MoveListener(std::string_view stream, std::string_view name,
                                        int64_t position) {
  return SetListener(stream, name, position, /*forward_only=*/false).status();
}

absl::StatusOr<int64_t> RedisStreams::AdvanceListener(std::string_view stream,
                                                      std::string_view name, int64_t reached) {
  return SetListener(stream, name, reached, /*forward_only=*/true);
}

absl::StatusOr<std::pair<bool, std::string>> RedisStreams::RemoveListener(std::string_view stream,
                                                                          std::string_view name,
                                                                          std::string_view owner) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool_->RunWrite(Script(kDeleteListenerScript),
                                                            keys.all(), {kOverhead, name, owner}));
  if (IsStatus(reply, "NOTFOUND")) return absl::NotFoundError(StreamNotFound(stream));
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 3)
    return Unexpected("a listener deletion");
  const bool deleted = reply.elements[0].integer == 1;
  if (deleted) {
    PERPER_RETURN_IF_ERROR(FinishCollection(keys, reply.elements[2].integer));
    Notify(Change::Kind::kListenerChanged, stream);
  }
  return std::make_pair(deleted, std::move(reply.elements[1].str));
}

absl::StatusOr<bool> RedisStreams::DeleteListener(std::string_view stream, std::string_view name) {
  PERPER_ASSIGN_OR_RETURN(auto removed, RemoveListener(stream, name, ""));
  const std::string& pid = pool_->process_id();
  if (removed.first && removed.second == "t" + pid) {
    // Only tidiness: the sweeper skips entries whose listener is gone.
    (void)WriteCommand(TransientSet(pid), {"SREM", TransientEntry(stream, name)});
  }
  return removed.first;
}

absl::StatusOr<std::vector<ListenerRecord>> RedisStreams::ListListeners(std::string_view stream) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                          pool_->RunScript(Script(kListenersScript), keys.all(), {kOverhead, ""}));
  if (reply.type == RedisReply::Type::kNil) return absl::NotFoundError(StreamNotFound(stream));
  std::vector<ListenerRecord> result;
  for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
    PERPER_ASSIGN_OR_RETURN(ListenerRecord listener,
                            DecodeListener(reply.elements[i].str, reply.elements[i + 1].str));
    result.push_back(std::move(listener));
  }
  std::sort(result.begin(), result.end(),
            [](const ListenerRecord& a, const ListenerRecord& b) { return a.name < b.name; });
  return result;
}

absl::StatusOr<int64_t> RedisStreams::ListenerPosition(std::string_view stream,
                                                       std::string_view name) {
  Keys keys(stream);
  PERPER_ASSIGN_OR_RETURN(
      RedisReply reply, pool_->RunScript(Script(kListenersScript), keys.all(), {kOverhead, name}));
  if (reply.type == RedisReply::Type::kNil) return absl::NotFoundError(StreamNotFound(stream));
  if (reply.elements.size() != 2) return kPositionNotStarted;
  PERPER_ASSIGN_OR_RETURN(ListenerRecord listener,
                          DecodeListener(std::string(name), reply.elements[1].str));
  return listener.position;
}

absl::StatusOr<std::vector<StreamSummary>> RedisStreams::ListStreams(std::string_view prefix,
                                                                     size_t limit) {
  std::vector<StreamSummary> result;
  std::string from = "[" + std::string(prefix);
  const std::string to = PrefixEndBound(std::string(prefix));
  // IDs whose stream is gone (a delete interrupted before its ZREM) are skipped, so read on
  // until `limit` streams are found or the index ends.
  while (result.size() < limit) {
    const size_t want = std::min<size_t>(limit - result.size(), 256);
    std::string count = std::to_string(want);
    PERPER_ASSIGN_OR_RETURN(
        RedisReply names,
        pool_->Run(StreamsIndex(), {"ZRANGEBYLEX", StreamsIndex(), from, to, "LIMIT", "0", count}));
    for (const RedisReply& name : names.elements) {
      bool found = false;
      PERPER_ASSIGN_OR_RETURN(StreamSummary summary, Summary(name.str, true, &found));
      if (found && result.size() < limit) result.push_back(std::move(summary));
    }
    if (names.elements.size() < want) break;
    from = "(" + names.elements.back().str;
  }
  return result;
}

absl::StatusOr<size_t> RedisStreams::DropTransientListenersOf(std::string_view pid) {
  const std::string set = TransientSet(pid);
  PERPER_ASSIGN_OR_RETURN(RedisReply entries, pool_->Run(set, {"SMEMBERS", set}));
  size_t removed = 0;
  for (const RedisReply& entry : entries.elements) {
    std::string_view stream, name;
    if (SplitTransientEntry(entry.str, &stream, &name)) {
      absl::StatusOr<std::pair<bool, std::string>> dropped = RemoveListener(stream, name, pid);
      if (dropped.ok()) {
        removed += dropped->first ? 1 : 0;
      } else if (!absl::IsNotFound(dropped.status())) {
        return dropped.status();
      }
    }
    PERPER_RETURN_IF_ERROR(WriteCommand(set, {"SREM", entry.str}));
  }
  // Forget the process once its set is empty (a set emptied by SREM is gone).
  PERPER_ASSIGN_OR_RETURN(RedisReply left, pool_->Run(set, {"EXISTS", set}));
  if (left.integer == 0) {
    PERPER_RETURN_IF_ERROR(WriteCommand(TransientProcesses(), {"SREM", pid}));
  }
  return removed;
}

absl::StatusOr<size_t> RedisStreams::SweepDeadProcesses() {
  // Without a lease of our own (leases not running, or ours lapsed while we were cut off) a
  // missing lease says nothing about its process: judge nobody.
  PERPER_ASSIGN_OR_RETURN(bool leased, LeaseAlive(*pool_, pool_->process_id()));
  if (!leased) return 0;
  PERPER_ASSIGN_OR_RETURN(RedisReply pids,
                          pool_->Run(TransientProcesses(), {"SMEMBERS", TransientProcesses()}));
  size_t removed = 0;
  for (const RedisReply& pid : pids.elements) {
    if (pid.str == pool_->process_id()) continue;
    PERPER_ASSIGN_OR_RETURN(bool alive, LeaseAlive(*pool_, pid.str));
    if (alive) continue;
    PERPER_ASSIGN_OR_RETURN(size_t dropped, DropTransientListenersOf(pid.str));
    removed += dropped;
  }
  return removed;
}

void RedisStreams::SweepLoop(std::chrono::milliseconds every) {
  // A failure (Redis unreachable) is retried at the next period.
  EveryPeriodUntilStopped(sweeper_mu_, &stopping_, absl::FromChrono(every),
                          [this] { (void)SweepDeadProcesses(); });
}

}  // namespace perper::storage::redis
