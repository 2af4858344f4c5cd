// SPDX-License-Identifier: MIT
// Round trips per operation (a "locator" is one GET of `{e:<id>}:w`, skipped when cached):
//   CreateExecution      1 on a standalone Redis (one script). In a cluster 3: the sequence
//                        script (INCR `{perper}:seq`, SADD `{perper}:agents`) and the locator
//                        script in one round trip (each node's commands are sent together), the
//                        record script, the index script (the locator joins the record script
//                        when the execution has no instance: they share the slot `e:<id>`).
//   GetExecution         1 + locator. ReadExecution: the same.
//   CompleteExecution    1 + locator: the record script and the close script (the agent's
//                        open set) together. Its change carries the outcome, so a caller
//                        waiting on this process reads nothing back. CompleteWithStream (a
//                        standalone server only): the same round trip completes the stream.
//   DeleteExecution      1 + locator on a standalone Redis (one script). In a cluster
//                        2 + locator: record and index scripts together, locator delete (1
//                        without an instance: the record script deletes the locator in its
//                        slot).
//   TryReserve           1 + locator; a holder on another process adds a PTTL of its lease
//                        (once per third of a lease per process: LiveLeases), and when the
//                        lease is gone one more script takes the reservation over.
//   ReadAndReserve       as TryReserve: the same script answers the record.
//   ReadAndReserveMany   1 per node for the whole batch (cached locators); the others as
//                        ReadAndReserve.
//   ReleaseReservation   1 + locator.
//   ListExecutionIds     1 with an agent or an instance; with any agent and no instance
//                        1 (SMEMBERS `{perper}:agents`) + 1 per agent. Each of those is one
//                        more per 4,096 entries scanned (a script call stops there).
//   ListExecutions       ListExecutionIds + 1 per tag among the listed records (per 1,000 of
//                        them).
//   ListReservations     1 + 1 per agent + 1 per tag holding open executions + 1 EXISTS per
//                        other holding process (introspection only).
// A locator cached by this process (from its own creations and reads, and from the creation
// changes of other processes) is trusted; a script that finds no record under it drops it and
// reads the locator once more.
//
// The ClusterClient resends a command whose connection broke, so any script here may run twice.
// A create recognises its own sequence and a completion its own token (both then answer as the
// first run did); a reservation is keyed by its holder; the locator and index scripts converge.
// A delete or release whose first run removed everything answers as if nothing was there.
#include "perper/storage/redis/redis_executions.h"

#include <algorithm>
#include <limits>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "perper/common/status_macros.h"
#include "perper/common/strings.h"
#include "perper/common/text.h"
#include "perper/storage/redis/key_slot.h"
#include "perper/storage/redis/redis_keys.h"

namespace perper::storage::redis {

namespace {

// Lua counts in doubles: a listing limit beyond 2^53 means "all".
constexpr size_t kUnlimited = size_t{1} << 53;

// Checks a locator and creates a record: KEYS[1] record, KEYS[2] the tag's id set, KEYS[3] and
// KEYS[4] (only when the locator shares the record's slot) the locator and its birth time. ARGV:
// id, agent, instance, delegate, encoded arguments, sequence, locator value.
// Answers {1, seq, 0} created, {0, seq, finished} identical, {-1} different content,
// {-2, locator} the locator names another agent or tag.
constexpr std::string_view kCreateScript = R"lua(
if KEYS[3] then
  local located = redis.call('GET', KEYS[3])
  if not located then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[3], ARGV[7])
    redis.call('SET', KEYS[4], t[1] * 1000 + math.floor(t[2] / 1000))
  elseif located ~= ARGV[7] then
    return {-2, located}
  end
end
local r = redis.call('HMGET', KEYS[1], 'agent', 'instance', 'delegate', 'args', 'seq', 'finished')
if r[1] then
  -- Our own sequence: this very create ran before its answer was lost, and is retried.
  if r[5] == ARGV[6] then return {1, ARGV[6], 0} end
  if r[1] == ARGV[2] and r[2] == ARGV[3] and r[3] == ARGV[4] and r[4] == ARGV[5] then
    return {0, r[5], r[6] and 1 or 0}
  end
  return {-1}
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'agent', ARGV[2], 'instance', ARGV[3], 'delegate', ARGV[4],
           'args', ARGV[5], 'seq', ARGV[6], 'ctime', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
return {1, ARGV[6], 0}
)lua";

// Sets a locator when absent: KEYS[1] locator, KEYS[2] its birth time (ms), ARGV[1] value.
// 1 set, 0 already this value, else the other value.
constexpr std::string_view kLocatorScript = R"lua(
local located = redis.call('GET', KEYS[1])
if not located then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000))
  return 1
end
if located == ARGV[1] then return 0 end
return located
)lua";

// Replaces (ARGV[2] non-empty) or deletes a locator that has value ARGV[1] and is at least
// ARGV[3] ms old: KEYS[1] locator, KEYS[2] its birth time (absent: old). 1 when done.
constexpr std::string_view kReplaceScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if now - tonumber(redis.call('GET', KEYS[2]) or 0) < tonumber(ARGV[3]) then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], now)
end
return 1
)lua";

// The next creation sequence, one counter for the deployment (so sequences order creations
// across agents, as the other backends do), and the agent's name among the agents (any-agent
// listings): KEYS[1] the counter, KEYS[2] the agents set; ARGV[1] the agent. Both in {perper},
// so one round trip does both.
constexpr std::string_view kSequenceScript = R"lua(
local sequence = redis.call('INCR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
return sequence
)lua";

// Lua functions over an agent's index (`all` and `open` sets by sequence, `meta` hash), shared by
// the scripts of one slot below and the standalone scripts that do a whole step at once.
// index(all, open, meta, id, seq, meta value, finished '1'/'0'): indexes an execution;
// idempotent, and an entry left by an earlier incarnation of the ID (another sequence) is
// replaced. unindex(all, open, meta, id, encoded tag): removes the entry when its meta starts
// with the tag (an entry of another incarnation stays). close(open, meta, id, encoded tag):
// drops the entry from the open set under the same condition.
constexpr std::string_view kIndexFunctions = R"lua(
local function index(all, open, meta, id, seq, value, finished)
  if redis.call('HSETNX', meta, id, value) == 0 then
    local score = redis.call('ZSCORE', all, id)
    if score and tonumber(score) == tonumber(seq) then return 0 end
    redis.call('HSET', meta, id, value)
  end
  redis.call('ZADD', all, seq, id)
  if finished == '0' then
    redis.call('ZADD', open, seq, id)
  else
    redis.call('ZREM', open, id)
  end
  return 1
end
local function of_tag(meta, id, tag)
  local value = redis.call('HGET', meta, id)
  return value and string.sub(value, 1, #tag) == tag
end
local function unindex(all, open, meta, id, tag)
  if not of_tag(meta, id, tag) then return 0 end
  redis.call('HDEL', meta, id)
  redis.call('ZREM', all, id)
  redis.call('ZREM', open, id)
  return 1
end
local function close(open, meta, id, tag)
  if of_tag(meta, id, tag) then redis.call('ZREM', open, id) end
  return 0
end
)lua";

// A script of `functions` (Lua definitions) followed by `body`, built once per script: the
// builders below keep it in a static.
std::string* Compose(std::string_view functions, std::string_view body) {
  return new std::string(absl::StrCat(AbslView(functions), AbslView(body)));
}

// The single-slot scripts of the index functions: KEYS the agent's keys their way, ARGV the rest.
const std::string& IndexScript() {
  static const std::string* const script =
      Compose(kIndexFunctions,
              "return index(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], "
              "ARGV[4])\n");
  return *script;
}
const std::string& UnindexScript() {
  static const std::string* const script =
      Compose(kIndexFunctions, "return unindex(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])\n");
  return *script;
}
const std::string& CloseScript() {
  static const std::string* const script =
      Compose(kIndexFunctions, "return close(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n");
  return *script;
}

// Lua: finish(record key, encoded results, has error ('1'/'0'), error, token) finishes a record
// and drops its reservations; the token, unique to the call, is kept, so that the call retried
// after a lost answer succeeds. {0} absent, {-1} finished, {1, agent, instance, delegate, now}
// with now 1 when this run finished it (0: a retry of the call that did).
constexpr std::string_view kFinishFunction = R"lua(
local function finish(key, results, has_error, err, token)
  local r = redis.call('HMGET', key, 'agent', 'finished', 'instance', 'delegate', 'done')
  if not r[1] then return {0} end
  if r[2] then
    if r[5] == token then return {1, r[1], r[3], r[4], 0} end
    return {-1}
  end
  local now = redis.call('TIME')
  redis.call('HSET', key, 'finished', '1', 'results', results, 'done', token,
             'ftime', now[1] * 1000 + math.floor(now[2] / 1000))
  if has_error == '1' then redis.call('HSET', key, 'error', err) end
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 2) == 'r:' then redis.call('HDEL', key, field) end
  end
  return {1, r[1], r[3], r[4], 1}
end
)lua";

// Finishes a record: KEYS[1] record; ARGV encoded results, has error, error, token. Answers as
// finish does.
const std::string& CompleteScript() {
  static const std::string* const script =
      Compose(kFinishFunction, "return finish(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n");
  return *script;
}

// Deletes a record: KEYS[1] record, KEYS[2] the tag's id set, KEYS[3] and KEYS[4] (when in this
// slot) the locator and its birth time; ARGV id, locator value. {0} absent,
// {1, agent, instance, delegate}.
constexpr std::string_view kDeleteScript = R"lua(
local r = redis.call('HMGET', KEYS[1], 'agent', 'instance', 'delegate')
if not r[1] then return {0} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[3] and redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3], KEYS[4]) end
return {1, r[1], r[2], r[3]}
)lua";

// Takes a reservation: KEYS[1] record; ARGV field `r:<workgroup>`, our holder, a dead holder
// that may be replaced (or ''); with ARGV[4] '1', only when the record matches the agent,
// instance and delegate in ARGV[5..7] ('' matches any), answering the record too.
// {0} absent, {-1} finished, {-3} not matching, {1} ours now ({1, HGETALL} with ARGV[4] '1'),
// {2, holder, agent, instance, delegate} held by another.
constexpr std::string_view kReserveScript = R"lua(
local r = redis.call('HMGET', KEYS[1], 'agent', 'finished', ARGV[1], 'instance', 'delegate')
if not r[1] then return {0} end
if r[2] then return {-1} end
local read = ARGV[4] == '1'
if read and ((ARGV[5] ~= '' and r[1] ~= ARGV[5]) or (ARGV[6] ~= '' and r[4] ~= ARGV[6]) or
             (ARGV[7] ~= '' and r[5] ~= ARGV[7])) then
  return {-3}
end
if r[3] ~= ARGV[2] then
  if r[3] and not (ARGV[3] ~= '' and r[3] == ARGV[3]) then return {2, r[3], r[1], r[4], r[5]} end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
if read then return {1, redis.call('HGETALL', KEYS[1])} end
return {1}
)lua";

// Releases a reservation held by ARGV[2]: KEYS[1] record, ARGV[1] field.
// {0} not held by it, {1, agent, instance, delegate} released.
constexpr std::string_view kReleaseScript = R"lua(
local r = redis.call('HMGET', KEYS[1], ARGV[1], 'agent', 'instance', 'delegate')
if r[1] ~= ARGV[2] then return {0} end
redis.call('HDEL', KEYS[1], ARGV[1])
return {1, r[2], r[3], r[4]}
)lua";

// Executions in sequence order, filtered: at most ARGV[2] matches, scanning at most 4096 entries
// per call so that no call holds Redis for long. Two ways:
// ARGV[1] 'a': an agent's index, KEYS[1] its all or open set, KEYS[2] its meta hash;
// ARGV[1] 'i': an instance's tag, KEYS[1] its id set (the records share its slot).
// ARGV[3] instance filter ('a'), ARGV[4] delegate filter, ARGV[5] agent ('i'), ARGV[6] any
// agent ('1'/'0'), ARGV[7] include finished ('1'/'0'), ARGV[8] record key prefix ('i'),
// ARGV[9] the tag ('i'); ARGV[10], ARGV[11] the cursor: the score and member scanned last ('' to
// start). Answers flat {id, seq, tag, ...} then the cursor to go on from ('', '' at the end).
// Scores tie only across agents (sequences are per agent), so a cursor by (score, member) is
// exact while the set changes between calls.
constexpr std::string_view kListScript = R"lua(
local function decode(s)
  local t, p = {}, 1
  while p <= #s do
    local c = string.find(s, ':', p, true)
    local n = tonumber(string.sub(s, p, c - 1))
    t[#t + 1] = string.sub(s, c + 1, c + n)
    p = c + 1 + n
  end
  return t
end
-- The tag of `id` when it matches, else nil.
local function match(id)
  if ARGV[1] == 'a' then
    local meta = redis.call('HGET', KEYS[2], id)
    if not meta then return nil end
    local m = decode(meta)
    if (ARGV[3] == '' or m[2] == ARGV[3]) and (ARGV[4] == '' or m[3] == ARGV[4]) then
      return m[1]
    end
    return nil
  end
  local r = redis.call('HMGET', ARGV[8] .. id, 'agent', 'delegate', 'finished')
  if r[1] and (ARGV[6] == '1' or r[1] == ARGV[5]) and (ARGV[4] == '' or r[2] == ARGV[4])
      and (ARGV[7] == '1' or not r[3]) then
    return ARGV[9]
  end
  return nil
end
local wanted = tonumber(ARGV[2])
local from = ARGV[10] == '' and '-inf' or ARGV[10]
local after = ARGV[10] ~= '' and tonumber(ARGV[10])
local out, found, scanned, offset = {}, 0, 0, 0
local score, member = '', ''
while found < wanted and scanned < 4096 do
  local page = redis.call('ZRANGE', KEYS[1], from, '+inf', 'BYSCORE', 'LIMIT', offset, 256,
                          'WITHSCORES')
  if #page == 0 then
    score, member = '', ''
    break
  end
  offset = offset + #page / 2
  for i = 1, #page, 2 do
    local id = page[i]
    if not after or tonumber(page[i + 1]) > after or id > ARGV[11] then
      scanned = scanned + 1
      score, member = page[i + 1], id
      local tag = match(id)
      if tag then
        out[#out + 1] = id
        out[#out + 1] = page[i + 1]
        out[#out + 1] = tag
        found = found + 1
        if found >= wanted then break end
      end
    end
  end
end
out[#out + 1] = score
out[#out + 1] = member
return out
)lua";

// Records of one tag: KEYS the record keys; one HGETALL each (empty when absent).
constexpr std::string_view kReadRecordsScript = R"lua(
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
)lua";

// Holders of one workgroup in records of one tag: KEYS the record keys, ARGV[1] the field.
constexpr std::string_view kHoldersScript = R"lua(
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[1]) or '' end
return out
)lua";

// On a standalone Redis every key is on one server, so a creation is one script: the locator,
// the sequence, the record and the agent's index. KEYS: 1 record, 2 the tag's id set, 3 locator,
// 4 its birth time, 5 the sequence counter, 6 the agents set, 7-9 the agent's all, open and
// meta. ARGV: id, agent, instance, delegate, encoded arguments, a token unique to this call
// (kept, so that the call retried after a lost answer succeeds), locator value, index meta
// value. Answers as kCreateScript: {1, seq, 0} created, {0, seq, finished} identical, {-1}
// different content, {-2, locator} the locator names another agent or tag.
const std::string& CreateStandaloneScript() {
  static const std::string* const script = Compose(kIndexFunctions, R"lua(
local located = redis.call('GET', KEYS[3])
if located and located ~= ARGV[7] then return {-2, located} end
local r = redis.call('HMGET', KEYS[1], 'agent', 'instance', 'delegate', 'args', 'seq', 'finished',
                     'ctok')
local code, seq, finished = 1, nil, false
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if r[1] then
  seq, finished = r[5], r[6] and true or false
  if r[7] ~= ARGV[6] then
    if r[1] ~= ARGV[2] or r[2] ~= ARGV[3] or r[3] ~= ARGV[4] or r[4] ~= ARGV[5] then
      return {-1}
    end
    code = 0
  end
else
  seq = tostring(redis.call('INCR', KEYS[5]))
  redis.call('SADD', KEYS[6], ARGV[2])
  redis.call('HSET', KEYS[1], 'agent', ARGV[2], 'instance', ARGV[3], 'delegate', ARGV[4],
             'args', ARGV[5], 'seq', seq, 'ctime', now, 'ctok', ARGV[6])
  redis.call('ZADD', KEYS[2], seq, ARGV[1])
end
if not located then
  redis.call('SET', KEYS[3], ARGV[7])
  redis.call('SET', KEYS[4], now)
end
index(KEYS[7], KEYS[8], KEYS[9], ARGV[1], seq, ARGV[8], finished and '1' or '0')
return {code, seq, finished and 1 or 0}
)lua");
  return *script;
}

// On a standalone Redis, a deletion in one script: the record, its id set entry, the agent's
// index entry of this tag, and the locator when it has the value given (when there was no
// record, only once it is ARGV[3] ms old: it may be a create's in progress). KEYS: 1 record,
// 2 the tag's id set, 3 locator, 4 its birth time, 5-7 the agent's all, open and meta. ARGV:
// id, locator value, debris age, the encoded tag. Answers as kDeleteScript.
const std::string& DeleteStandaloneScript() {
  static const std::string* const script = Compose(kIndexFunctions, R"lua(
unindex(KEYS[5], KEYS[6], KEYS[7], ARGV[1], ARGV[4])
local r = redis.call('HMGET', KEYS[1], 'agent', 'instance', 'delegate')
if redis.call('GET', KEYS[3]) == ARGV[2] then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  if r[1] or now - tonumber(redis.call('GET', KEYS[4]) or 0) >= tonumber(ARGV[3]) then
    redis.call('DEL', KEYS[3], KEYS[4])
  end
end
if not r[1] then return {0} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {1, r[1], r[2], r[3]}
)lua");
  return *script;
}

// On a standalone server, an execution's completion with the stream it produces: finish,
// close, then RedisStreams' completion script on the stream of the same ID. KEYS: 1
// record, 2 the agent's open set, 3 its meta, 4 the stream's metadata hash. ARGV: as
// CompleteScript, then 5 the id, 6 the encoded tag. Answers as finish, with the stream's answer
// last ('NOTFOUND', 'DONE' or 'OK'; a retried call whose first run completed the stream answers
// 'OK' again, so the change is reported).
const std::string& CompleteWithStreamScript() {
  static const std::string* const script =
      Compose(absl::StrCat(AbslView(kFinishFunction), AbslView(kIndexFunctions)), R"lua(
local r = finish(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if r[1] ~= 1 then return r end
close(KEYS[2], KEYS[3], ARGV[5], ARGV[6])
local stream = 'NOTFOUND'
if redis.call('EXISTS', KEYS[4]) == 1 then
  if redis.call('HGET', KEYS[4], 'c') == '1' then
    stream = r[5] == 0 and 'OK' or 'DONE'
  else
    redis.call('HSET', KEYS[4], 'c', '1')
    if ARGV[2] == '1' then redis.call('HSET', KEYS[4], 'err', ARGV[3]) end
    stream = 'OK'
  end
end
return {1, r[2], r[3], r[4], stream}
)lua");
  return *script;
}

// Values are length-prefixed ("<decimal length>:<bytes>" each), so any bytes survive and equal
// lists encode to equal strings (the create script compares arguments as strings).
std::string EncodeList(const std::vector<std::string>& values) {
  std::string out;
  for (const std::string& value : values) absl::StrAppend(&out, value.size(), ":", value);
  return out;
}

bool DecodeList(std::string_view encoded, std::vector<std::string>* values) {
  values->clear();
  while (!encoded.empty()) {
    size_t colon = encoded.find(':');
    uint64_t size = 0;
    if (colon == std::string_view::npos ||
        !absl::SimpleAtoi(absl::string_view(encoded.data(), colon), &size) ||
        size > encoded.size() - colon - 1) {
      return false;
    }
    values->emplace_back(encoded.substr(colon + 1, size));
    encoded.remove_prefix(colon + 1 + size);
  }
  return true;
}

// Keys under an execution tag (`{i:<instance>}` or `{e:<id>}`).
std::string RecordPrefix(std::string_view tag) { return Key(tag, "x:"); }
std::string RecordKey(std::string_view tag, std::string_view execution) {
  return RecordPrefix(tag).append(execution);
}
std::string IdSetKey(std::string_view tag) { return Key(tag, "xs"); }

std::string LocatorKey(std::string_view execution) { return Key(LocatorTag(execution), "w"); }
std::string LocatorBirthKey(std::string_view execution) { return Key(LocatorTag(execution), "wt"); }

// A locator without its record is taken for debris (of a create or delete interrupted by a
// crash) only once it is this old: a create in progress sets its record right after its
// locator, each command retrying for at most ClusterOptions::retry_deadline (10 s).
constexpr std::string_view kDebrisAgeMs = "60000";
std::string AgentsKey() { return Key(kGlobalTag, "agents"); }
std::string SequenceKey() { return Key(kGlobalTag, "seq"); }
// An agent's index: "all" and "open" sets by sequence, "meta" hash.
std::string AgentKey(std::string_view agent, std::string_view suffix) {
  return Key(AgentTag(agent), suffix);
}

// Reply helpers: scripts answer arrays whose first element is an integer code.
long long Code(const RedisReply& reply) {
  if (reply.type == RedisReply::Type::kArray && !reply.elements.empty()) {
    return reply.elements[0].integer;
  }
  return reply.integer;
}
const std::string& Element(const RedisReply& reply, size_t i) {
  static const std::string* const kEmpty = new std::string();
  return i < reply.elements.size() ? reply.elements[i].str : *kEmpty;
}

uint64_t ParseSequence(std::string_view text) {
  uint64_t value = 0;
  if (absl::SimpleAtoi(AbslView(text), &value)) return value;
  double d = 0;  // A zset score printed as a double.
  if (absl::SimpleAtod(AbslView(text), &d) && d >= 0) {
    return static_cast<uint64_t>(d);
  }
  return 0;
}

absl::Status Unexpected(std::string_view what, const RedisReply& reply) {
  return absl::InternalError("unexpected reply to " + std::string(what) + " (type " +
                             std::to_string(static_cast<int>(reply.type)) + ")");
}

absl::Status NotFound(std::string_view execution) {
  return absl::NotFoundError("execution " + ShortId(execution) + " not found");
}
absl::Status Finished(std::string_view execution) {
  return absl::FailedPreconditionError("execution " + ShortId(execution) + " is already finished");
}

absl::Status DifferentContent(std::string_view execution) {
  return absl::AlreadyExistsError("execution " + std::string(execution) +
                                  " already exists with different content");
}

// What a create script's answer (kCreateScript's codes) means: OK for created (1) or identical
// (0).
absl::Status CheckCreated(std::string_view execution, const RedisReply& created) {
  const long long code = Code(created);
  if (code == -1) return DifferentContent(execution);
  if (code != 0 && code != 1) return Unexpected("create", created);
  return absl::OkStatus();
}

absl::Status Undecodable(std::string_view execution) {
  return absl::DataLossError("execution " + ShortId(execution) + " cannot be decoded");
}

// Fills `record` from an HGETALL reply; false when it is not a complete record.
bool ParseRecord(std::string_view execution, const RedisReply& reply, ExecutionRecord* record) {
  if (reply.type != RedisReply::Type::kArray || reply.elements.empty()) return false;
  record->execution = std::string(execution);
  bool has_agent = false;
  for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
    const std::string& field = reply.elements[i].str;
    const std::string& value = reply.elements[i + 1].str;
    if (field == "agent") {
      record->agent = value;
      has_agent = true;
    } else if (field == "instance") {
      record->instance = value;
    } else if (field == "delegate") {
      record->delegate = value;
    } else if (field == "args") {
      if (!DecodeList(value, &record->arguments)) return false;
    } else if (field == "results") {
      if (!DecodeList(value, &record->results)) return false;
    } else if (field == "finished") {
      record->finished = true;
    } else if (field == "error") {
      record->error = value;
    } else if (field == "seq") {
      record->sequence = ParseSequence(value);
    } else if (field == "ctime" || field == "ftime") {
      int64_t ms = 0;
      if (absl::SimpleAtoi(value, &ms)) {
        (field == "ctime" ? record->created_ms : record->finished_ms) = ms;
      }
    }
  }
  return has_agent;
}

Change MakeChange(Change::Kind kind, std::string_view execution, const RedisReply& reply,
                  size_t first) {
  Change change;
  change.kind = kind;
  change.id = std::string(execution);
  change.agent = Element(reply, first);
  change.instance = Element(reply, first + 1);
  change.delegate = Element(reply, first + 2);
  return change;
}

std::pair<std::string_view, std::string_view> SplitHolder(std::string_view stored) {
  size_t slash = stored.find('/');
  if (slash == std::string_view::npos) return {std::string_view(), stored};
  return {stored.substr(0, slash), stored.substr(slash + 1)};
}

}  // namespace

RedisExecutions::RedisExecutions(ClientPool& pool, RedisNotifier& notifier)
    : pool_(&pool),
      notifier_(&notifier),
      lease_(&pool, pool.options().lease),
      // As often as a lease is renewed: a clean close is believed within a third of a lease.
      live_leases_(&pool, pool.options().lease / 3),
      // The release of a dead holder concerns this process's waiting calls only: every process
      // that waits for one watches it too.
      watcher_(
          &pool, [this](const Change& change) { notifier_->NotifyLocal(change); },
          std::chrono::milliseconds(250), 100000, &live_leases_),
      // A dead process's unpublished changes concern every waiting call of this process. Its
      // entry is dropped long after every live process has looked (they look every 250 ms).
      deaths_(
          &pool, [this](const Change& change) { notifier_->NotifyLocal(change); },
          std::chrono::milliseconds(250),
          std::max<std::chrono::milliseconds>(std::chrono::minutes(1), 10 * pool.options().lease),
          &live_leases_) {}

std::optional<std::string> LocalHolds::Holder(std::string_view execution,
                                              std::string_view workgroup) {
  absl::MutexLock lock(&mu_);
  auto it = holders_.find(AbslView(execution));
  if (it == holders_.end()) return std::nullopt;
  auto held = it->second.find(AbslView(workgroup));
  if (held == it->second.end()) return std::nullopt;
  return held->second;
}

void LocalHolds::Held(std::string_view execution, std::string_view workgroup,
                      std::string_view holder) {
  absl::MutexLock lock(&mu_);
  if (holders_.size() >= kMaxExecutions) holders_.clear();
  holders_[std::string(execution)][std::string(workgroup)] = std::string(holder);
}

void LocalHolds::Released(std::string_view execution, std::string_view workgroup,
                          std::string_view holder) {
  absl::MutexLock lock(&mu_);
  auto it = holders_.find(AbslView(execution));
  if (it == holders_.end()) return;
  auto held = it->second.find(AbslView(workgroup));
  if (held == it->second.end() || held->second != holder) return;
  it->second.erase(held);
  if (it->second.empty()) holders_.erase(it);
}

void LocalHolds::Ended(std::string_view execution) {
  absl::MutexLock lock(&mu_);
  holders_.erase(AbslView(execution));
}

void LocalHolds::OnChange(const Change& change) {
  switch (change.kind) {
    case Change::Kind::kExecutionCreated:  // A new incarnation: nobody holds it yet.
    case Change::Kind::kExecutionCompleted:
    case Change::Kind::kExecutionDeleted:
      Ended(change.id);
      break;
    case Change::Kind::kResync: {
      absl::MutexLock lock(&mu_);
      holders_.clear();
      break;
    }
    default:
      break;
  }
}

void RedisExecutions::CacheKeeper::OnChange(const Change& change) {
  executions_->local_holds_.OnChange(change);
  if (change.kind == Change::Kind::kExecutionCreated && !change.agent.empty()) {
    // Trusted as any cached locator is: a script that finds no record under it reads it again.
    executions_->CacheLocator(change.id,
                              Locator{change.agent, ExecutionTag(change.instance, change.id)});
  } else if (change.kind == Change::Kind::kExecutionDeleted) {
    executions_->ForgetLocator(change.id);
  }
}

RedisExecutions::~RedisExecutions() {
  notifier_->SetCacheKeeper(nullptr);
  deaths_.Stop();
  watcher_.Stop();
  lease_.Stop(/*release=*/true);
}

absl::Status RedisExecutions::Start() {
  notifier_->SetCacheKeeper(&cache_keeper_);
  PERPER_RETURN_IF_ERROR(lease_.Start());
  watcher_.Start();
  deaths_.Start();
  return absl::OkStatus();
}

void RedisExecutions::AbandonLeaseForTesting() { lease_.Stop(/*release=*/false); }

// ---------------------------------------------------------------------------------------------
// Locators

absl::StatusOr<std::optional<RedisExecutions::Locator>> RedisExecutions::Locate(
    std::string_view execution, bool use_cache) {
  if (use_cache) {
    absl::MutexLock lock(&cache_mu_);
    auto it = locators_.find(AbslView(execution));
    if (it != locators_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  std::string key = LocatorKey(execution);
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool_->Run(key, {"GET", key}));
  if (reply.type == RedisReply::Type::kNil) return std::optional<Locator>();
  std::vector<std::string> parts;
  if (!DecodeList(reply.str, &parts) || parts.size() != 2) {
    return absl::DataLossError("the locator of execution " + ShortId(execution) +
                               " cannot be decoded");
  }
  Locator locator{std::move(parts[0]), std::move(parts[1])};
  CacheLocator(execution, locator);
  return std::optional<Locator>(std::move(locator));
}

std::optional<RedisExecutions::Locator> RedisExecutions::CachedLocator(std::string_view execution) {
  absl::MutexLock lock(&cache_mu_);
  auto it = locators_.find(AbslView(execution));
  if (it == locators_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void RedisExecutions::CacheLocator(std::string_view execution, const Locator& locator) {
  absl::MutexLock lock(&cache_mu_);
  auto it = locators_.find(AbslView(execution));
  if (it != locators_.end()) {
    it->second->second = locator;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(std::string(execution), locator);
  locators_.emplace(lru_.front().first, lru_.begin());
  if (lru_.size() > kLocatorCacheSize) {
    locators_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

void RedisExecutions::ForgetLocator(std::string_view execution) {
  absl::MutexLock lock(&cache_mu_);
  auto it = locators_.find(AbslView(execution));
  if (it == locators_.end()) return;
  lru_.erase(it->second);
  locators_.erase(it);
}

template <typename T>
absl::StatusOr<std::optional<T>> RedisExecutions::WithRecord(
    std::string_view execution,
    const std::function<absl::StatusOr<std::optional<T>>(const Locator&)>& attempt) {
  PERPER_ASSIGN_OR_RETURN(std::optional<Locator> cached, Locate(execution, /*use_cache=*/true));
  if (!cached.has_value()) return std::optional<T>();
  PERPER_ASSIGN_OR_RETURN(std::optional<T> result, attempt(*cached));
  if (result.has_value()) return result;
  // Absent under this locator: it may be stale (the ID was deleted and created again under
  // another tag by another process). Ask Redis once.
  ForgetLocator(execution);
  PERPER_ASSIGN_OR_RETURN(std::optional<Locator> fresh, Locate(execution, /*use_cache=*/false));
  if (!fresh.has_value() || *fresh == *cached) return std::optional<T>();
  return attempt(*fresh);
}

// ---------------------------------------------------------------------------------------------
// Executions

absl::StatusOr<uint64_t> RedisExecutions::ParseNextSequence(const RedisReply& reply) {
  if (reply.type != RedisReply::Type::kInteger || reply.integer <= 0) {
    return Unexpected("INCR", reply);
  }
  return static_cast<uint64_t>(reply.integer);
}

absl::StatusOr<bool> RedisExecutions::CreateExecution(ExecutionRecord record) {
  if (record.execution.empty()) return absl::InvalidArgumentError("execution must not be empty");
  const std::string& id = record.execution;
  const std::string tag = ExecutionTag(record.instance, id);
  const bool own_slot = record.instance.empty();
  const std::string locator_key = LocatorKey(id);
  const std::string birth_key = LocatorBirthKey(id);
  const std::string locator_value = EncodeList({record.agent, tag});
  const std::string record_key = RecordKey(tag, id);
  const std::string id_set = IdSetKey(tag);
  const std::string arguments = EncodeList(record.arguments);

  const std::string sequence_key = SequenceKey();
  const std::string agents_key = AgentsKey();
  const std::string meta_value = EncodeList({tag, record.instance, record.delegate});
  if (!pool_->cluster_mode()) {
    const std::string token =
        pool_->process_id() + "/" + std::to_string(creations_.fetch_add(1) + 1);
    const std::string all = AgentKey(record.agent, "all");
    const std::string open = AgentKey(record.agent, "open");
    const std::string meta = AgentKey(record.agent, "meta");
    PERPER_ASSIGN_OR_RETURN(
        RedisReply created,
        pool_->RunStandaloneWrite(
            CreateStandaloneScript(),
            {record_key, id_set, locator_key, birth_key, sequence_key, agents_key, all, open, meta},
            {id, record.agent, record.instance, record.delegate, arguments, token, locator_value,
             meta_value}));
    // A locator naming another agent or tag takes the general way below, which knows debris.
    if (Code(created) != -2) {
      PERPER_RETURN_IF_ERROR(CheckCreated(id, created));
      return Created(std::move(record), tag, created);
    }
  }

  // The sequence and the locator do not depend on each other: one round trip for both.
  std::optional<RedisReply> first_locator;
  std::vector<ClusterClient::Script> first = {
      {kSequenceScript, {sequence_key, agents_key}, {record.agent}}};
  if (!own_slot) first.push_back({kLocatorScript, {locator_key, birth_key}, {locator_value}});
  std::vector<absl::StatusOr<RedisReply>> first_replies = pool_->RunWrites(first);
  for (const auto& reply : first_replies) PERPER_RETURN_IF_ERROR(reply.status());
  PERPER_ASSIGN_OR_RETURN(uint64_t sequence, ParseNextSequence(*first_replies[0]));
  if (!own_slot) first_locator = *std::move(first_replies[1]);
  const std::string sequence_text = std::to_string(sequence);

  RedisReply created;
  for (int attempt = 0;; ++attempt) {
    std::string located;  // Set when the locator names another agent or tag.
    if (!own_slot) {
      RedisReply reply;
      if (attempt == 0) {
        reply = *std::move(first_locator);
      } else {
        PERPER_ASSIGN_OR_RETURN(
            reply, pool_->RunWrite(kLocatorScript, {locator_key, birth_key}, {locator_value}));
      }
      if (reply.type != RedisReply::Type::kInteger) located = reply.str;
    }
    if (located.empty()) {
      std::vector<std::string_view> keys = {record_key, id_set};
      if (own_slot) keys.insert(keys.end(), {locator_key, birth_key});
      PERPER_ASSIGN_OR_RETURN(
          created, pool_->RunWrite(kCreateScript, keys,
                                   {id, record.agent, record.instance, record.delegate, arguments,
                                    sequence_text, locator_value}));
      if (Code(created) == -2) located = Element(created, 1);
    }
    if (located.empty()) break;
    // The ID is located elsewhere. When no record is there and the locator is old, it outlived
    // an interrupted create or delete: replace it once and try again.
    std::vector<std::string> parts;
    if (attempt == 0 && DecodeList(located, &parts) && parts.size() == 2) {
      std::string other = RecordKey(parts[1], id);
      PERPER_ASSIGN_OR_RETURN(RedisReply exists, pool_->Run(other, {"EXISTS", other}));
      if (exists.integer == 0) {
        PERPER_ASSIGN_OR_RETURN(RedisReply replaced,
                                pool_->RunWrite(kReplaceScript, {locator_key, birth_key},
                                                {located, locator_value, kDebrisAgeMs}));
        if (replaced.integer == 1) continue;
      }
    }
    return DifferentContent(id);
  }
  PERPER_RETURN_IF_ERROR(CheckCreated(id, created));
  // The record's own sequence (an identical create keeps the first one) and state go into the
  // index, so a create retried after an interruption repairs it.
  const std::string& stored_sequence = Element(created, 1);
  const bool finished = created.elements.size() > 2 && created.elements[2].integer != 0;
  PERPER_RETURN_IF_ERROR(
      pool_
          ->RunWrite(IndexScript(),
                     {AgentKey(record.agent, "all"), AgentKey(record.agent, "open"),
                      AgentKey(record.agent, "meta")},
                     {id, stored_sequence, meta_value, finished ? "1" : "0"})
          .status());
  return Created(std::move(record), tag, created);
}

absl::StatusOr<bool> RedisExecutions::Created(ExecutionRecord record, const std::string& tag,
                                              const RedisReply& created) {
  const std::string& id = record.execution;
  CacheLocator(id, Locator{record.agent, tag});
  if (Code(created) == 0) return false;
  local_holds_.Ended(id);
  Change change;
  change.kind = Change::Kind::kExecutionCreated;
  change.id = id;
  change.agent = std::move(record.agent);
  change.instance = std::move(record.instance);
  change.delegate = std::move(record.delegate);
  Report(change);
  return true;
}

absl::StatusOr<ExecutionRecord> RedisExecutions::GetExecution(std::string_view execution) {
  PERPER_ASSIGN_OR_RETURN(
      std::optional<ExecutionRecord> record,
      WithRecord<ExecutionRecord>(
          execution, [&](const Locator& locator) -> absl::StatusOr<std::optional<ExecutionRecord>> {
            std::string key = RecordKey(locator.tag, execution);
            PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool_->Run(key, {"HGETALL", key}));
            if (reply.elements.empty()) return std::optional<ExecutionRecord>();
            ExecutionRecord parsed;
            if (!ParseRecord(execution, reply, &parsed)) return Undecodable(execution);
            return std::optional<ExecutionRecord>(std::move(parsed));
          }));
  if (!record.has_value()) return NotFound(execution);
  return *std::move(record);
}

absl::Status RedisExecutions::CompleteExecution(std::string_view execution,
                                                std::vector<std::string> results,
                                                std::optional<std::string> error) {
  return Complete(execution, std::move(results), std::move(error), nullptr, nullptr);
}

absl::Status RedisExecutions::CompleteWithStream(std::string_view execution,
                                                 std::vector<std::string> results,
                                                 std::optional<std::string> error,
                                                 const std::string& stream_meta,
                                                 absl::Status& stream) {
  PERPER_CHECK(!pool_->cluster_mode()) << "one script over an execution and a stream needs "
                                          "a standalone server";
  std::string answer;
  absl::Status status =
      Complete(execution, std::move(results), std::move(error), &stream_meta, &answer);
  if (!status.ok()) {
    stream = status;
  } else if (answer == "OK") {
    stream = absl::OkStatus();
    Change change;
    change.kind = Change::Kind::kStreamCompleted;
    change.id = std::string(execution);
    Report(change);
  } else if (answer == "DONE") {
    stream =
        absl::FailedPreconditionError("stream " + std::string(execution) + " is already completed");
  } else {
    stream = absl::NotFoundError("stream " + std::string(execution) + " not found");
  }
  return status;
}

absl::Status RedisExecutions::Complete(std::string_view execution, std::vector<std::string> results,
                                       std::optional<std::string> error,
                                       const std::string* stream_meta, std::string* stream_answer) {
  const std::string encoded = EncodeList(results);
  const std::string token =
      pool_->process_id() + "/" + std::to_string(completions_.fetch_add(1) + 1);
  PERPER_ASSIGN_OR_RETURN(
      std::optional<Change> change,
      WithRecord<Change>(
          execution, [&](const Locator& locator) -> absl::StatusOr<std::optional<Change>> {
            // The record and the agent's open set in one round trip: the close script checks the
            // tag, so under a stale locator it does nothing.
            const std::string record_key = RecordKey(locator.tag, execution);
            const std::string open = AgentKey(locator.agent, "open");
            const std::string meta = AgentKey(locator.agent, "meta");
            const std::string tag = EncodeList({locator.tag});
            if (stream_meta != nullptr) {
              PERPER_ASSIGN_OR_RETURN(
                  RedisReply reply,
                  pool_->RunStandaloneWrite(CompleteWithStreamScript(),
                                            {record_key, open, meta, *stream_meta},
                                            {encoded, error.has_value() ? "1" : "0",
                                             error.value_or(""), token, execution, tag}));
              long long code = Code(reply);
              if (code == 0) return std::optional<Change>();
              if (code == -1) return Finished(execution);
              *stream_answer = Element(reply, 4);
              return MakeChange(Change::Kind::kExecutionCompleted, execution, reply, 1);
            }
            std::vector<absl::StatusOr<RedisReply>> replies = pool_->RunWrites(
                {{CompleteScript(),
                  {record_key},
                  {encoded, error.has_value() ? "1" : "0", error.value_or(""), token}},
                 {CloseScript(), {open, meta}, {execution, tag}}});
            PERPER_RETURN_IF_ERROR(replies[0].status());
            PERPER_RETURN_IF_ERROR(replies[1].status());
            long long code = Code(*replies[0]);
            if (code == 0) return std::optional<Change>();
            if (code == -1) return Finished(execution);
            return MakeChange(Change::Kind::kExecutionCompleted, execution, *replies[0], 1);
          }));
  if (!change.has_value()) return NotFound(execution);
  // Waiters on this process answer from the change instead of reading the record back.
  change->outcome = std::make_shared<const ExecutionOutcome>(
      ExecutionOutcome{std::move(results), std::move(error)});
  // A finished execution is never dispatched again, so no release is reported.
  watcher_.Forget(execution);
  local_holds_.Ended(execution);
  Report(*change);
  return absl::OkStatus();
}

absl::StatusOr<bool> RedisExecutions::DeleteExecution(std::string_view execution) {
  std::optional<Locator> last;  // The locator the record was looked for under.
  bool locator_done = false;    // The standalone script dealt with the locator already.
  PERPER_ASSIGN_OR_RETURN(
      std::optional<Change> change,
      WithRecord<
          Change>(execution, [&](const Locator& locator) -> absl::StatusOr<std::optional<Change>> {
        last = locator;
        std::vector<std::string> keys = {RecordKey(locator.tag, execution), IdSetKey(locator.tag)};
        if (locator.tag == LocatorTag(execution)) {
          keys.push_back(LocatorKey(execution));
          keys.push_back(LocatorBirthKey(execution));
        }
        // The index entry goes too, also when the record is not there: what an interrupted
        // create or delete left behind (a retried delete whose first run removed the record
        // answers false). The unindex script checks the tag, so a stale locator's does
        // nothing; both go in one round trip.
        const std::string located = EncodeList({locator.agent, locator.tag});
        const std::string tag = EncodeList({locator.tag});
        const std::string all = AgentKey(locator.agent, "all");
        const std::string open = AgentKey(locator.agent, "open");
        const std::string meta = AgentKey(locator.agent, "meta");
        if (!pool_->cluster_mode()) {
          const std::string locator_key = LocatorKey(execution);
          const std::string birth_key = LocatorBirthKey(execution);
          PERPER_ASSIGN_OR_RETURN(
              RedisReply deleted,
              pool_->RunStandaloneWrite(DeleteStandaloneScript(),
                                        {keys[0], keys[1], locator_key, birth_key, all, open, meta},
                                        {execution, located, kDebrisAgeMs, tag}));
          locator_done = true;
          if (Code(deleted) == 0) return std::optional<Change>();
          return MakeChange(Change::Kind::kExecutionDeleted, execution, deleted, 1);
        }
        std::vector<absl::StatusOr<RedisReply>> replies =
            pool_->RunWrites({{kDeleteScript, {keys.begin(), keys.end()}, {execution, located}},
                              {UnindexScript(), {all, open, meta}, {execution, tag}}});
        PERPER_RETURN_IF_ERROR(replies[0].status());
        PERPER_RETURN_IF_ERROR(replies[1].status());
        if (Code(*replies[0]) == 0) return std::optional<Change>();
        return MakeChange(Change::Kind::kExecutionDeleted, execution, *replies[0], 1);
      }));
  if (!last.has_value()) return false;  // No locator: never created.
  // The record script deleted a locator in its own slot already. Without a record, the
  // locator goes only when it is old: it may be a create's in progress.
  if (!locator_done && (!change.has_value() || last->tag != LocatorTag(execution))) {
    PERPER_RETURN_IF_ERROR(
        pool_
            ->RunWrite(
                kReplaceScript, {LocatorKey(execution), LocatorBirthKey(execution)},
                {EncodeList({last->agent, last->tag}), "", change.has_value() ? "0" : kDebrisAgeMs})
            .status());
  }
  ForgetLocator(execution);
  if (!change.has_value()) return false;
  // Holders learn of the deletion itself; no separate release is reported.
  watcher_.Forget(execution);
  local_holds_.Ended(execution);
  Report(*change);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Listings

absl::StatusOr<std::vector<std::string>> RedisExecutions::Agents() {
  std::string key = AgentsKey();
  PERPER_ASSIGN_OR_RETURN(RedisReply reply, pool_->Run(key, {"SMEMBERS", key}));
  std::vector<std::string> agents;
  for (RedisReply& element : reply.elements) agents.push_back(std::move(element.str));
  return agents;
}

absl::StatusOr<std::vector<RedisExecutions::Listed>> RedisExecutions::Scan(
    const std::vector<std::string>& keys, std::vector<std::string> args, size_t limit) {
  // args: ARGV[1] and ARGV[3..9] of kListScript; the wanted count and cursor go in between.
  args.insert(args.begin() + 1, "");
  args.push_back("");
  args.push_back("");
  std::vector<Listed> listed;
  while (listed.size() < limit) {
    args[1] = std::to_string(limit - listed.size());
    PERPER_ASSIGN_OR_RETURN(
        RedisReply reply,
        pool_->RunScript(kListScript, {keys.begin(), keys.end()}, {args.begin(), args.end()}));
    const size_t n = reply.elements.size();
    if (n < 2 || (n - 2) % 3 != 0) return Unexpected("listing", reply);
    for (size_t i = 0; i + 2 < n - 2; i += 3) {
      listed.push_back(Listed{ParseSequence(reply.elements[i + 1].str),
                              std::move(reply.elements[i].str),
                              std::move(reply.elements[i + 2].str)});
    }
    if (reply.elements[n - 2].str.empty()) break;  // Scanned to the end.
    args[args.size() - 2] = std::move(reply.elements[n - 2].str);
    args[args.size() - 1] = std::move(reply.elements[n - 1].str);
  }
  return listed;
}

absl::StatusOr<std::vector<RedisExecutions::Listed>> RedisExecutions::ListAgent(
    std::string_view agent, const ExecutionFilter& filter, size_t limit) {
  return Scan({AgentKey(agent, filter.include_finished ? "all" : "open"), AgentKey(agent, "meta")},
              {"a", filter.instance, filter.delegate, "", "", "", "", ""}, limit);
}

absl::StatusOr<std::vector<RedisExecutions::Listed>> RedisExecutions::ListMatching(
    const ExecutionFilter& filter, size_t limit) {
  limit = std::min(limit, kUnlimited);
  std::vector<Listed> listed;
  if (limit == 0) return listed;
  if (!filter.instance.empty()) {
    // The instance's own set is the smaller one to scan, and one slot even for any agent.
    std::string tag = InstanceTag(filter.instance);
    return Scan({IdSetKey(tag)},
                {"i", "", filter.delegate, filter.agent, filter.any_agent ? "1" : "0",
                 filter.include_finished ? "1" : "0", RecordPrefix(tag), tag},
                limit);
  }
  if (!filter.any_agent) return ListAgent(filter.agent, filter, limit);
  PERPER_ASSIGN_OR_RETURN(std::vector<std::string> agents, Agents());
  for (const std::string& agent : agents) {
    PERPER_ASSIGN_OR_RETURN(std::vector<Listed> some, ListAgent(agent, filter, limit));
    for (Listed& one : some) listed.push_back(std::move(one));
  }
  // Sequences are per agent; across agents the order is (sequence, ID), as in one zset.
  auto before = [](const Listed& a, const Listed& b) {
    return a.sequence != b.sequence ? a.sequence < b.sequence : a.execution < b.execution;
  };
  if (listed.size() > limit) {
    std::nth_element(listed.begin(), listed.begin() + limit, listed.end(), before);
    listed.resize(limit);
  }
  std::sort(listed.begin(), listed.end(), before);
  return listed;
}

absl::StatusOr<std::vector<std::string>> RedisExecutions::ListExecutionIds(
    const ExecutionFilter& filter, size_t limit) {
  PERPER_ASSIGN_OR_RETURN(std::vector<Listed> listed, ListMatching(filter, limit));
  std::vector<std::string> ids;
  ids.reserve(listed.size());
  for (Listed& one : listed) ids.push_back(std::move(one.execution));
  return ids;
}

absl::Status RedisExecutions::ForEachRecord(
    const std::vector<Listed>& listed, std::string_view script,
    const std::vector<std::string_view>& args,
    absl::FunctionRef<absl::Status(size_t index, const RedisReply& answer)> visit) {
  // At most this many records per call, so that no call holds Redis for long.
  constexpr size_t kBatch = 1000;
  std::map<std::string_view, std::vector<size_t>> by_tag;
  for (size_t i = 0; i < listed.size(); ++i) by_tag[listed[i].tag].push_back(i);
  for (const auto& [tag, indexes] : by_tag) {
    for (size_t start = 0; start < indexes.size(); start += kBatch) {
      const size_t end = std::min(indexes.size(), start + kBatch);
      std::vector<std::string> keys;
      for (size_t k = start; k < end; ++k) {
        keys.push_back(RecordKey(tag, listed[indexes[k]].execution));
      }
      PERPER_ASSIGN_OR_RETURN(RedisReply reply,
                              pool_->RunScript(script, {keys.begin(), keys.end()}, args));
      for (size_t k = start; k < end && k - start < reply.elements.size(); ++k) {
        PERPER_RETURN_IF_ERROR(visit(indexes[k], reply.elements[k - start]));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::optional<ExecutionRecord>>> RedisExecutions::ReadRecords(
    const std::vector<Listed>& listed) {
  std::vector<std::optional<ExecutionRecord>> records(listed.size());
  PERPER_RETURN_IF_ERROR(
      ForEachRecord(listed, kReadRecordsScript, {}, [&](size_t index, const RedisReply& answer) {
        ExecutionRecord record;
        if (ParseRecord(listed[index].execution, answer, &record)) {
          records[index] = std::move(record);
        }
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<ExecutionRecord>> RedisExecutions::ListExecutions(
    const ExecutionFilter& filter, size_t limit) {
  // The matching IDs, then their records. An execution that finished or went away between the
  // two is passed over; when that leaves fewer than `limit`, ask for more IDs.
  std::vector<ExecutionRecord> out;
  size_t request = limit;
  for (int round = 0; limit > 0; ++round) {
    PERPER_ASSIGN_OR_RETURN(std::vector<Listed> listed, ListMatching(filter, request));
    PERPER_ASSIGN_OR_RETURN(std::vector<std::optional<ExecutionRecord>> records,
                            ReadRecords(listed));
    out.clear();
    for (std::optional<ExecutionRecord>& record : records) {
      if (out.size() >= limit) break;
      if (record.has_value() && Matches(filter, *record)) out.push_back(*std::move(record));
    }
    if (out.size() >= limit || listed.size() < request || round == 4) break;
    request = request > std::numeric_limits<size_t>::max() / 2 ? request : request * 2;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reservations

absl::StatusOr<bool> RedisExecutions::TryReserve(std::string_view execution,
                                                 std::string_view workgroup,
                                                 std::string_view holder) {
  PERPER_ASSIGN_OR_RETURN(ReserveOutcome outcome,
                          Reserve(execution, workgroup, holder, nullptr, nullptr));
  return outcome == ReserveOutcome::kReserved;
}

absl::StatusOr<ExecutionStore::ReserveOutcome> RedisExecutions::ReadAndReserve(
    std::string_view execution, const ExecutionFilter& filter, std::string_view workgroup,
    std::string_view holder, absl::FunctionRef<void(const ExecutionRecord&)> visit) {
  RedisReply record;
  absl::StatusOr<ReserveOutcome> outcome = Reserve(execution, workgroup, holder, &filter, &record);
  if (IsGoneOrFinished(outcome.status())) return ReserveOutcome::kSkipped;
  if (!outcome.ok() || *outcome != ReserveOutcome::kReserved) return outcome;
  ExecutionRecord parsed;
  if (!ParseRecord(execution, record, &parsed)) return Undecodable(execution);
  visit(parsed);
  return outcome;
}

absl::StatusOr<std::vector<ExecutionStore::ReserveOutcome>> RedisExecutions::ReadAndReserveMany(
    const std::vector<std::string>& executions, const ExecutionFilter& filter,
    std::string_view workgroup, std::string_view holder,
    absl::FunctionRef<void(size_t index, const ExecutionRecord&)> visit) {
  std::vector<ReserveOutcome> outcomes(executions.size(), ReserveOutcome::kSkipped);
  const std::string field = "r:" + std::string(workgroup);
  const std::string mine = pool_->process_id() + "/" + std::string(holder);
  const std::vector<std::string_view> args = {field,
                                              mine,
                                              "",
                                              "1",
                                              filter.any_agent ? std::string_view() : filter.agent,
                                              filter.instance,
                                              filter.delegate};
  std::vector<size_t> batched;  // Indexes sent together, with their record keys.
  std::vector<std::string> keys;
  std::vector<size_t> alone;  // Indexes that need ReadAndReserve's further steps.
  for (size_t i = 0; i < executions.size(); ++i) {
    const std::string& id = executions[i];
    if (std::optional<std::string> sibling = local_holds_.Holder(id, workgroup);
        sibling.has_value() && *sibling != holder) {
      sibling_answers_.fetch_add(1, std::memory_order_relaxed);
      outcomes[i] = ReserveOutcome::kHeldByOther;
      continue;
    }
    std::optional<Locator> locator = CachedLocator(id);
    if (!locator.has_value()) {
      alone.push_back(i);
      continue;
    }
    batched.push_back(i);
    keys.push_back(RecordKey(locator->tag, id));
  }
  std::vector<ClusterClient::Script> scripts;
  scripts.reserve(batched.size());
  for (const std::string& key : keys) scripts.push_back({kReserveScript, {key}, args});
  std::vector<absl::StatusOr<RedisReply>> replies = pool_->RunWrites(scripts);
  for (size_t j = 0; j < batched.size(); ++j) {
    const size_t i = batched[j];
    const std::string& id = executions[i];
    if (!replies[j].ok()) return replies[j].status();
    const RedisReply& reply = *replies[j];
    const long long code = Code(reply);
    if (code == 0) {
      alone.push_back(i);  // No record under the cached locator: it may be stale.
    } else if (code == -1 || code == -3) {
      outcomes[i] = ReserveOutcome::kSkipped;  // Finished, or not the filter's.
    } else if (code == 1) {
      watcher_.Forget(id, workgroup);
      local_holds_.Held(id, workgroup, holder);
      if (reply.elements.size() < 2) return Unexpected("reserve", reply);
      ExecutionRecord parsed;
      if (!ParseRecord(id, reply.elements[1], &parsed)) return Undecodable(id);
      visit(i, parsed);
      outcomes[i] = ReserveOutcome::kReserved;
    } else if (code == 2) {
      std::string_view process = SplitHolder(Element(reply, 1)).first;
      outcomes[i] = ReserveOutcome::kHeldByOther;
      if (process == pool_->process_id()) continue;
      PERPER_ASSIGN_OR_RETURN(bool alive, live_leases_.Alive(process));
      if (!alive) {
        alone.push_back(i);  // Its holder is gone: taken over alone.
        continue;
      }
      watcher_.Watch(process, ForeignHold{id, std::string(workgroup), Element(reply, 2),
                                          Element(reply, 3), Element(reply, 4)});
    } else {
      return Unexpected("reserve", reply);
    }
  }
  for (size_t i : alone) {
    PERPER_ASSIGN_OR_RETURN(
        outcomes[i], ReadAndReserve(executions[i], filter, workgroup, holder,
                                    [&](const ExecutionRecord& record) { visit(i, record); }));
  }
  return outcomes;
}

absl::StatusOr<ExecutionStore::ReserveOutcome> RedisExecutions::Reserve(
    std::string_view execution, std::string_view workgroup, std::string_view holder,
    const ExecutionFilter* filter, RedisReply* record) {
  // A sibling on this process holds it: no need to ask.
  if (std::optional<std::string> sibling = local_holds_.Holder(execution, workgroup);
      sibling.has_value() && *sibling != holder) {
    sibling_answers_.fetch_add(1, std::memory_order_relaxed);
    return ReserveOutcome::kHeldByOther;
  }
  const std::string field = "r:" + std::string(workgroup);
  const std::string mine = pool_->process_id() + "/" + std::string(holder);
  std::vector<std::string_view> args = {field, mine, ""};
  if (filter != nullptr) {
    args.insert(args.end(), {"1", filter->any_agent ? std::string_view() : filter->agent,
                             filter->instance, filter->delegate});
  }
  std::string replaceable;  // A holder whose process is gone.
  // Each round either answers or found the holder's process dead; three is plenty even when
  // several processes race for the same dead holder's reservation.
  for (int round = 0; round < 3; ++round) {
    args[2] = replaceable;
    PERPER_ASSIGN_OR_RETURN(
        std::optional<RedisReply> reply,
        WithRecord<RedisReply>(
            execution, [&](const Locator& locator) -> absl::StatusOr<std::optional<RedisReply>> {
              PERPER_ASSIGN_OR_RETURN(
                  RedisReply r,
                  pool_->RunWrite(kReserveScript, {RecordKey(locator.tag, execution)}, args));
              if (Code(r) == 0) return std::optional<RedisReply>();
              return std::optional<RedisReply>(std::move(r));
            }));
    if (!reply.has_value()) return NotFound(execution);
    long long code = Code(*reply);
    if (code == -1) return Finished(execution);
    if (code == -3) return ReserveOutcome::kSkipped;
    if (code == 1) {
      watcher_.Forget(execution, workgroup);
      local_holds_.Held(execution, workgroup, holder);
      if (record != nullptr) {
        if (reply->elements.size() < 2) return Unexpected("reserve", *reply);
        *record = std::move(reply->elements[1]);
      }
      return ReserveOutcome::kReserved;
    }
    if (code != 2) return Unexpected("reserve", *reply);
    const std::string& other = Element(*reply, 1);
    std::string_view process = SplitHolder(other).first;
    if (process == pool_->process_id()) return ReserveOutcome::kHeldByOther;
    PERPER_ASSIGN_OR_RETURN(bool alive, live_leases_.Alive(process));
    if (alive) {
      watcher_.Watch(process,
                     ForeignHold{std::string(execution), std::string(workgroup), Element(*reply, 2),
                                 Element(*reply, 3), Element(*reply, 4)});
      return ReserveOutcome::kHeldByOther;
    }
    replaceable = other;
  }
  return ReserveOutcome::kHeldByOther;
}

absl::Status RedisExecutions::ReleaseReservation(std::string_view execution,
                                                 std::string_view workgroup,
                                                 std::string_view holder) {
  const std::string field = "r:" + std::string(workgroup);
  const std::string mine = pool_->process_id() + "/" + std::string(holder);
  PERPER_ASSIGN_OR_RETURN(
      std::optional<Change> change,
      WithRecord<Change>(
          execution, [&](const Locator& locator) -> absl::StatusOr<std::optional<Change>> {
            PERPER_ASSIGN_OR_RETURN(
                RedisReply reply,
                pool_->RunWrite(kReleaseScript, {RecordKey(locator.tag, execution)},
                                {field, mine}));
            local_holds_.Released(execution, workgroup, holder);
            if (Code(reply) != 1) return std::optional<Change>();
            Change released = MakeChange(Change::Kind::kReservationReleased, execution, reply, 1);
            released.workgroup = std::string(workgroup);
            return std::optional<Change>(std::move(released));
          }));
  if (change.has_value()) Report(*change);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ReservationRecord>> RedisExecutions::ListReservations(
    std::string_view workgroup, size_t limit) {
  std::vector<ReservationRecord> out;
  if (limit == 0) return out;
  const std::string field = "r:" + std::string(workgroup);
  PERPER_ASSIGN_OR_RETURN(std::vector<std::string> agents, Agents());
  ExecutionFilter open;  // Unfinished executions of one agent: only they can be held.
  std::vector<Listed> listed;
  for (const std::string& agent : agents) {
    PERPER_ASSIGN_OR_RETURN(std::vector<Listed> some, ListAgent(agent, open, kUnlimited));
    for (Listed& one : some) listed.push_back(std::move(one));
  }
  // Holders whose process is gone hold nothing any more: anyone may take over.
  absl::flat_hash_map<std::string, bool> alive;
  alive[pool_->process_id()] = true;
  PERPER_RETURN_IF_ERROR(ForEachRecord(
      listed, kHoldersScript, {field}, [&](size_t index, const RedisReply& answer) -> absl::Status {
        if (answer.str.empty()) return absl::OkStatus();
        auto [process, holder] = SplitHolder(answer.str);
        std::string process_id(process);
        auto it = alive.find(process_id);
        if (it == alive.end()) {
          PERPER_ASSIGN_OR_RETURN(bool live, LeaseAlive(*pool_, process));
          it = alive.emplace(process_id, live).first;
        }
        if (it->second) {
          out.push_back(ReservationRecord{listed[index].execution, std::string(workgroup),
                                          std::string(holder)});
        }
        return absl::OkStatus();
      }));
  std::sort(out.begin(), out.end(), [](const ReservationRecord& a, const ReservationRecord& b) {
    return a.execution < b.execution;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::pair<int, std::string>> RedisExecutions::SlotOfInstance(
    std::string_view instance) {
  std::string key = IdSetKey(InstanceTag(instance));
  return std::make_pair(KeySlot(key), pool_->NodeForKey(key));
}

void RedisExecutions::Report(const Change& change) { notifier_->Notify(change); }

}  // namespace perper::storage::redis
