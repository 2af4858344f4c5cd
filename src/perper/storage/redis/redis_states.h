// SPDX-License-Identifier: MIT
// The states part of the redis backend: state dictionaries and lists, with the semantics of
// StatesEngine (perper/storage/engine/states_engine.cc), each operation one Lua script on the
// hash tag of its dictionary or list (RedisKeys):
//
//   {TD}:d    hash   entry key (Any bytes) → value (Any bytes)
//   {TD}:dx   string marker: the dictionary exists (created, written, or emptied with keep_cache)
//   {TD}:f    hash   "<stream>\n<listener>" → reached key, the fences of steps (redis_step.h)
//   {TL}:Li   list   the items, front to back
//   {TL}:Lm   string the raw index of the front item (decimal); also the list's marker
//   {perper}:dicts, {perper}:lists   zsets (score 0) of names, for ListStates
//
// A name sits in its global zset while its marker exists. The zset lives in another slot than
// the object, so the two are written one after the other: an object is added after the script
// that created it (a listing may miss a dictionary for that one round trip) and removed after
// the script that deleted it, followed by a check that re-adds it if it was created again in
// between. ListStates reads the markers, so a name left behind by a crash is never listed.
//
// State changes are not reported to the notifier, as in the engines: no call waits for them.
//
// Retries: ClusterClient resends a script whose connection broke before the reply came. A
// dictionary operation leaves the same state when run twice (a resent compare-and-set then
// answers unsuccessful: it had succeeded); creations and deletions converge too. A list
// operation that inserts or removes items is the exception: resent, it applies twice.
//
// Thread safety: every method is safe to call concurrently from any thread; atomicity comes from
// the scripts, the object holds no mutable state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

// The Lua function `decide(cur, flags, new_value, expected)`: one dictionary operation given
// the key's current value (`cur`, false when absent), the truth table of StatesEngine's Decide
// (docs/protocol/states.md). `flags` is DecideFlags(op). Returns successful (boolean), the
// previous value to report (false: none), whether the key's value changes, and whether it is
// removed. Shared by OperateDictionary and the step (redis_step.cc), which prepend it to their
// scripts.
inline constexpr std::string_view kDecideLua = R"lua(
local function decide(cur, flags, new_value, expected)
  local present = cur ~= false
  local get = flags:sub(1, 1) == '1'
  local set = flags:sub(2, 2) == '1'
  local compare = flags:sub(3, 3) == '1'
  local expected_null = flags:sub(4, 4) == '1'
  local new_null = flags:sub(5, 5) == '1'
  local condition = true
  local ok
  if compare then
    if expected_null then condition = not present else condition = present and cur == expected end
    ok = condition
  elseif set then
    -- Set always succeeds; remove when something was removed, or when the value was asked for.
    ok = (not new_null) or get or present
  else
    ok = get or present
  end
  local write, remove = false, false
  if set and condition then
    if new_null then
      write, remove = present, true
    else
      write = (not present) or cur ~= new_value
    end
  end
  local previous = false
  if get and present then previous = cur end
  return ok, previous, write, remove
end
)lua";

// The flags argument of `decide`: five '0'/'1' for get, set, compare, expected value null, new
// value null (IsNullValue is decided here, in C++).
std::string DecideFlags(const DictionaryOperation& op);

// Lists `dictionary` (the global zset of dictionaries), after a script of another part (the
// step's) reported that it created it. REQUIRES: `dictionary` non-empty.
absl::Status NoteDictionaryCreated(ClientPool& pool, std::string_view dictionary);

class RedisStates final : public StateStore {
 public:
  // `pool` must outlive the object. States report no changes, so `notifier` is not used.
  RedisStates(ClientPool& pool, RedisNotifier& notifier) : pool_(pool) {}
  ~RedisStates() override = default;
  RedisStates(const RedisStates&) = delete;
  RedisStates& operator=(const RedisStates&) = delete;

  // Nothing runs in the background; called once by RedisStore::Open.
  absl::Status Start() { return absl::OkStatus(); }

  absl::Status CreateDictionary(std::string_view dictionary) override;
  absl::StatusOr<DictionaryOutcome> OperateDictionary(std::string_view dictionary,
                                                      const DictionaryOperation& op) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListDictionary(
      std::string_view dictionary) override;
  absl::StatusOr<uint64_t> CountDictionary(std::string_view dictionary) override;
  absl::Status DeleteDictionary(std::string_view dictionary, bool keep_cache) override;

  absl::Status CreateList(std::string_view list) override;
  absl::StatusOr<std::vector<std::string>> OperateList(std::string_view list,
                                                       const ListOperation& op) override;
  absl::StatusOr<std::optional<ListEntry>> LocateInList(std::string_view list,
                                                        std::string_view value) override;
  absl::StatusOr<std::vector<ListEntry>> ListList(std::string_view list) override;
  absl::StatusOr<uint64_t> CountList(std::string_view list) override;
  absl::Status DeleteList(std::string_view list, bool keep_cache) override;
  absl::StatusOr<std::vector<StateSummary>> ListStates(std::string_view prefix,
                                                       size_t limit) override;

 private:
  ClientPool& pool_;
};

}  // namespace perper::storage::redis
