// SPDX-License-Identifier: MIT
#include "perper/storage/engine/states_engine.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

#include "perper/common/strings.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/storage/engine/keys.h"
#include "perper/storage/records.pb.h"

namespace perper::storage {
namespace {

absl::Status CheckName(std::string_view name, std::string_view what) {
  if (!name.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(AbslView(what), " must not be empty"));
}

std::string ListDataBytes(int64_t start, int64_t end) {
  ListData data;
  data.set_start_index(start);
  data.set_end_index(end);
  return data.SerializeAsString();
}

// What one dictionary operation decides, given the current value of its key.
struct DictionaryDecision {
  DictionaryOutcome outcome;
  bool write = false;   // Whether the key's value changes.
  bool remove = false;  // With `write`: remove the key rather than put new_value.
};

// The truth table of docs/protocol/states.md. With compare_existing_value, the comparison is
// byte equality of the stored Any and the expected Any, a null expected value meaning "absent"
// (stored values are never null: setting null removes the key). A set happens only when the
// comparison holds, so every compare row is an atomic conditional write, and the T/T/T row with
// a null expected value is getAndPutIfAbsent, successful only when it put.
DictionaryDecision Decide(const std::string* current, const DictionaryOperation& op,
                          bool expected_null, bool new_null) {
  DictionaryDecision d;
  const bool present = current != nullptr;
  bool condition = true;
  if (op.compare_existing_value) {
    condition = expected_null ? !present : (present && *current == op.expected_existing_value);
    d.outcome.operation_successful = condition;
  } else if (op.set_new_value) {
    // Set: always successful; remove: successful when something was removed, unless the caller
    // also asked for the old value (GetAndRemove), which always succeeds.
    d.outcome.operation_successful = !new_null || op.get_existing_value || present;
  } else {
    // Get always succeeds; ContainsKey succeeds when the key is present.
    d.outcome.operation_successful = op.get_existing_value || present;
  }
  if (op.get_existing_value && present) d.outcome.previous_value = *current;
  if (op.set_new_value && condition) {
    if (new_null) {
      d.write = present;
      d.remove = true;
    } else {
      d.write = !present || *current != op.new_value;
    }
  }
  return d;
}

}  // namespace

template <typename T>
StatesEngine::Shard<T>& StatesEngine::ShardFor(std::array<Shard<T>, kShards>& shards,
                                               std::string_view name) {
  return shards[absl::HashOf(AbslView(name)) % kShards];
}

template <typename T>
std::shared_ptr<T> StatesEngine::Find(std::array<Shard<T>, kShards>& shards, std::string_view name,
                                      bool create) {
  Shard<T>& shard = ShardFor(shards, name);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.objects.find(AbslView(name));
  if (it != shard.objects.end()) return it->second;
  if (!create) return nullptr;
  auto object = std::make_shared<T>();
  shard.objects.emplace(std::string(name), object);
  return object;
}

template <typename T>
std::vector<std::pair<std::string, std::shared_ptr<T>>> StatesEngine::WithPrefix(
    std::array<Shard<T>, kShards>& shards, std::string_view prefix) {
  std::vector<std::pair<std::string, std::shared_ptr<T>>> found;
  for (Shard<T>& shard : shards) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [name, object] : shard.objects) {
      if (std::string_view(name).substr(0, prefix.size()) == prefix) {
        found.emplace_back(name, object);
      }
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return found;
}

template <typename T>
void StatesEngine::Drop(std::array<Shard<T>, kShards>& shards, std::string_view name,
                        const T* object) {
  Shard<T>& shard = ShardFor(shards, name);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.objects.find(AbslView(name));
  // Until this erase the entry maps to `object` (a lookup finds it removed and tries again);
  // the comparison only guards against ever dropping a successor.
  if (it != shard.objects.end() && it->second.get() == object) shard.objects.erase(it);
}

absl::Status StatesEngine::Load() {
  if (journal_ == nullptr) return absl::OkStatus();
  absl::Status corrupt;
  // Dictionaries: markers first, then entries (an entry without a marker cannot be written, but
  // is kept rather than lost if it ever is).
  absl::Status status = journal_->Scan(
      keys::SpacePrefix(keys::kDictionary), [&](std::string_view key, std::string_view) {
        auto dictionary = Find(dictionaries_, key.substr(2), /*create=*/true);
        absl::MutexLock lock(&dictionary->mu);
        dictionary->journaled = true;
      });
  if (!status.ok()) return status;
  status = journal_->Scan(keys::SpacePrefix(keys::kDictionaryEntry),
                          [&](std::string_view key, std::string_view value) {
                            std::string_view name, entry_key;
                            if (!keys::SplitComposite(key, &name, &entry_key)) {
                              corrupt = absl::DataLossError("malformed dictionary entry key");
                              return;
                            }
                            auto dictionary = Find(dictionaries_, name, /*create=*/true);
                            absl::MutexLock lock(&dictionary->mu);
                            dictionary->journaled = true;
                            dictionary->entries.emplace(std::string(entry_key), std::string(value));
                          });
  if (!status.ok()) return status;
  if (!corrupt.ok()) return corrupt;

  // Lists: bounds first, then items, which must fill the bounds exactly.
  absl::flat_hash_map<std::string, std::pair<int64_t, int64_t>> bounds;
  status = journal_->Scan(
      keys::SpacePrefix(keys::kList), [&](std::string_view key, std::string_view value) {
        ListData data;
        if (!data.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
            data.end_index() < data.start_index()) {
          corrupt =
              absl::DataLossError(absl::StrCat("malformed bounds of list ", Quoted(key.substr(2))));
          return;
        }
        bounds[std::string(key.substr(2))] = {data.start_index(), data.end_index()};
      });
  if (!status.ok()) return status;
  if (!corrupt.ok()) return corrupt;
  absl::flat_hash_map<std::string, absl::btree_map<int64_t, std::string>> items;
  status = journal_->Scan(
      keys::SpacePrefix(keys::kListEntry), [&](std::string_view key, std::string_view value) {
        std::string_view name, raw;
        if (!keys::SplitComposite(key, &name, &raw) || raw.size() != 8) {
          corrupt = absl::DataLossError("malformed list item key");
          return;
        }
        items[std::string(name)].emplace(keys::DecodeInt64(raw), std::string(value));
      });
  if (!status.ok()) return status;
  if (!corrupt.ok()) return corrupt;
  for (auto& [name, range] : bounds) {
    auto& stored = items[name];
    if (stored.size() != static_cast<uint64_t>(range.second - range.first) ||
        (!stored.empty() &&
         (stored.begin()->first != range.first || stored.rbegin()->first != range.second - 1))) {
      return absl::DataLossError(absl::StrCat("items of list ", Quoted(name),
                                              " do not match its bounds [", range.first, ", ",
                                              range.second, ")"));
    }
    auto list = Find(lists_, name, /*create=*/true);
    absl::MutexLock lock(&list->mu);
    list->journaled = true;
    list->start = range.first;
    for (auto& [raw, value] : stored) list->items.push_back(std::move(value));
    items.erase(name);
  }
  for (const auto& [name, stored] : items) {
    if (!stored.empty()) {
      return absl::DataLossError(absl::StrCat("list ", Quoted(name), " has items but no bounds"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Dictionaries

absl::Status StatesEngine::CreateDictionary(std::string_view name) {
  if (absl::Status s = CheckName(name, "dictionary"); !s.ok()) return s;
  return WithLive(dictionaries_, name, [&](Dictionary& dictionary) -> absl::Status {
    dictionary.mu.AssertHeld();  // Under WithLive's lock.
    if (dictionary.journaled) return absl::OkStatus();
    JournalBatch batch;
    batch.Put(keys::Simple(keys::kDictionary, name), "");
    if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
    dictionary.journaled = true;
    return absl::OkStatus();
  });
}

absl::StatusOr<DictionaryOutcome> StatesEngine::OperateDictionary(std::string_view name,
                                                                  const DictionaryOperation& op) {
  if (absl::Status s = CheckName(name, "dictionary"); !s.ok()) return s;
  if (IsNullValue(op.key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("key must not be null (dictionary ", Quoted(name), ")"));
  }
  const bool expected_null = IsNullValue(op.expected_existing_value);
  const bool new_null = IsNullValue(op.new_value);
  using Result = absl::StatusOr<DictionaryOutcome>;
  // Only a set may create the dictionary; reads of an unknown dictionary see it empty.
  return WithLive(
      dictionaries_, name, /*create=*/op.set_new_value,
      [&]() -> Result { return Decide(nullptr, op, expected_null, new_null).outcome; },
      [&](Dictionary& dictionary) -> Result {
        dictionary.mu.AssertHeld();  // Under WithLive's lock.
        auto it = dictionary.entries.find(op.key);
        const std::string* current = it == dictionary.entries.end() ? nullptr : &it->second;
        DictionaryDecision decision = Decide(current, op, expected_null, new_null);
        if (!decision.write) return std::move(decision.outcome);

        JournalBatch batch;
        if (!dictionary.journaled) batch.Put(keys::Simple(keys::kDictionary, name), "");
        std::string entry_key = keys::Composite(keys::kDictionaryEntry, name, op.key);
        if (decision.remove) {
          batch.Delete(std::move(entry_key));
        } else {
          batch.Put(std::move(entry_key), op.new_value);
        }
        if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
        dictionary.journaled = true;
        if (decision.remove) {
          dictionary.entries.erase(it);
        } else if (current != nullptr) {
          it->second = op.new_value;
        } else {
          dictionary.entries.emplace(op.key, op.new_value);
        }
        return std::move(decision.outcome);
      });
}

namespace {

// Operations evaluated in order against a dictionary without changing it: what each answers and
// the value each changed key ends with (nullopt: removed).
struct Evaluation {
  bool compares_hold = true;
  absl::btree_map<std::string, std::optional<std::string>> changes;
};

Evaluation Evaluate(const absl::btree_map<std::string, std::string>* entries,
                    const std::vector<DictionaryOperation>& operations,
                    std::vector<DictionaryOutcome>& outcomes) {
  Evaluation evaluation;
  outcomes.clear();
  outcomes.reserve(operations.size());
  for (const DictionaryOperation& op : operations) {
    const std::string* current = nullptr;
    if (auto changed = evaluation.changes.find(op.key); changed != evaluation.changes.end()) {
      if (changed->second.has_value()) current = &*changed->second;
    } else if (entries != nullptr) {
      if (auto it = entries->find(op.key); it != entries->end()) current = &it->second;
    }
    DictionaryDecision decision =
        Decide(current, op, IsNullValue(op.expected_existing_value), IsNullValue(op.new_value));
    if (op.compare_existing_value && !decision.outcome.operation_successful) {
      evaluation.compares_hold = false;
    }
    // `current` may point into `changes`: it is not used past here.
    if (decision.write) {
      evaluation.changes[op.key] =
          decision.remove ? std::nullopt : std::optional<std::string>(op.new_value);
    }
    outcomes.push_back(std::move(decision.outcome));
  }
  return evaluation;
}

}  // namespace

absl::StatusOr<bool> StatesEngine::StepDictionary(
    std::string_view name, const std::vector<DictionaryOperation>& operations, bool allowed,
    JournalBatch& batch, std::vector<DictionaryOutcome>& outcomes) {
  outcomes.clear();
  if (operations.empty()) {
    if (!allowed) return false;
    if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
    return true;
  }
  const bool any_set = std::any_of(operations.begin(), operations.end(),
                                   [](const DictionaryOperation& op) { return op.set_new_value; });
  using Result = absl::StatusOr<bool>;
  // As OperateDictionary: only a step that may write creates the dictionary.
  return WithLive(
      dictionaries_, name, /*create=*/allowed && any_set,
      [&]() -> Result {
        // Absent, and nothing here can write: every operation reads an empty dictionary.
        Evaluation evaluation = Evaluate(nullptr, operations, outcomes);
        if (!allowed || !evaluation.compares_hold) return false;
        if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
        return true;
      },
      [&](Dictionary& dictionary) -> Result {
        dictionary.mu.AssertHeld();  // Under WithLive's lock.
        Evaluation evaluation = Evaluate(&dictionary.entries, operations, outcomes);
        if (!allowed || !evaluation.compares_hold) return false;
        // Only the keys whose final value differs from the stored one are written.
        std::vector<std::pair<const std::string*, const std::optional<std::string>*>> writes;
        for (const auto& [key, value] : evaluation.changes) {
          auto it = dictionary.entries.find(key);
          const bool same = value.has_value()
                                ? it != dictionary.entries.end() && it->second == *value
                                : it == dictionary.entries.end();
          if (same) continue;
          std::string entry_key = keys::Composite(keys::kDictionaryEntry, name, key);
          if (value.has_value()) {
            batch.Put(std::move(entry_key), *value);
          } else {
            batch.Delete(std::move(entry_key));
          }
          writes.emplace_back(&key, &value);
        }
        if (!writes.empty() && !dictionary.journaled) {
          batch.Put(keys::Simple(keys::kDictionary, name), "");
        }
        if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
        if (!writes.empty()) dictionary.journaled = true;
        for (const auto& [key, value] : writes) {
          if (value->has_value()) {
            dictionary.entries.insert_or_assign(*key, **value);
          } else {
            dictionary.entries.erase(*key);
          }
        }
        return true;
      });
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> StatesEngine::ListDictionary(
    std::string_view name) {
  using Entries = std::vector<std::pair<std::string, std::string>>;
  using Result = absl::StatusOr<Entries>;
  return WithLive(
      dictionaries_, name, /*create=*/false, []() -> Result { return Entries(); },
      [](Dictionary& dictionary) -> Result {
        dictionary.mu.AssertHeld();  // Under WithLive's lock.
        return Entries(dictionary.entries.begin(), dictionary.entries.end());
      });
}

absl::StatusOr<uint64_t> StatesEngine::CountDictionary(std::string_view name) {
  using Result = absl::StatusOr<uint64_t>;
  return WithLive(
      dictionaries_, name, /*create=*/false, []() -> Result { return 0; },
      [](Dictionary& dictionary) -> Result {
        dictionary.mu.AssertHeld();  // Under WithLive's lock.
        return dictionary.entries.size();
      });
}

absl::Status StatesEngine::DeleteDictionary(std::string_view name, bool keep_cache) {
  if (absl::Status s = CheckName(name, "dictionary"); !s.ok()) return s;
  const std::string entries_begin = keys::CompositePrefix(keys::kDictionaryEntry, name);
  if (keep_cache) {
    return WithLive(dictionaries_, name, [&](Dictionary& dictionary) -> absl::Status {
      dictionary.mu.AssertHeld();  // Under WithLive's lock.
      JournalBatch batch;
      batch.DeleteRange(entries_begin, keys::PrefixEnd(entries_begin));
      batch.Put(keys::Simple(keys::kDictionary, name), "");
      if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
      dictionary.journaled = true;
      dictionary.entries.clear();
      return absl::OkStatus();
    });
  }
  return WithLive(
      dictionaries_, name, /*create=*/false, [] { return absl::OkStatus(); },
      [&](Dictionary& dictionary) -> absl::Status {
        dictionary.mu.AssertHeld();  // Under WithLive's lock.
        JournalBatch batch;
        batch.Delete(keys::Simple(keys::kDictionary, name));
        batch.DeleteRange(entries_begin, keys::PrefixEnd(entries_begin));
        if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
        dictionary.removed = true;
        dictionary.entries.clear();
        Drop(dictionaries_, name, &dictionary);
        return absl::OkStatus();
      });
}

// ---------------------------------------------------------------------------------------------
// Lists

absl::Status StatesEngine::CreateList(std::string_view name) {
  if (absl::Status s = CheckName(name, "list"); !s.ok()) return s;
  return WithLive(lists_, name, [&](List& list) {
    list.mu.AssertHeld();  // Under WithLive's lock.
    if (list.journaled) return absl::OkStatus();
    JournalBatch batch;
    batch.Put(keys::Simple(keys::kList, name),
              ListDataBytes(list.start, list.start + static_cast<int64_t>(list.items.size())));
    if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
    list.journaled = true;
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<std::string>> StatesEngine::OperateList(std::string_view name,
                                                                   const ListOperation& op) {
  if (absl::Status s = CheckName(name, "list"); !s.ok()) return s;
  const bool writes = !op.insert_values.empty() || (op.remove_values && op.values_count > 0);
  // Only a write may create the list; reads of an unknown list see it empty.
  return WithLive(
      lists_, name, /*create=*/writes,
      [&] {
        List empty;
        absl::MutexLock lock(&empty.mu);
        return OperateListLocked(empty, name, op);
      },
      [&](List& list) {
        list.mu.AssertHeld();  // Under WithLive's lock.
        return OperateListLocked(list, name, op);
      });
}

// One list operation is a splice at a boundary between items (0 .. count), found from the
// location, with a direction:
//   at_front              boundary 0, forward;          the front end moves (start_index)
//   at_back               boundary count, backward;     the back end moves (end_index)
//   index i               boundary i, forward;          the back end moves
//   raw_index r           boundary r - start, forward;  the back end moves
//   index_backwards j     boundary count - j, backward; the front end moves
//   raw_index_backwards r boundary r - start + 1, backward (the first item reached is raw r);
//                         the front end moves
// A boundary outside 0 .. count is OUT_OF_RANGE. get/remove reach min(values_count, items on
// that side) items from the boundary in the walking direction; get returns them in walking
// order. remove erases them. insert_values are then inserted, in their order, at the boundary
// (after the removal). "The front end moves" means that items after the affected range keep their
// raw indices and start_index absorbs the length change; "the back end moves" means that items
// before it keep theirs and end_index absorbs it.
absl::StatusOr<std::vector<std::string>> StatesEngine::OperateListLocked(List& list,
                                                                         std::string_view name,
                                                                         const ListOperation& op) {
  using Location = ListOperation::Location;
  const int64_t count = static_cast<int64_t>(list.items.size());
  const int64_t start = list.start;
  int64_t boundary = 0;
  bool forward = true;
  bool front_moves = false;
  auto index_out_of_range = [&](std::string_view field) {
    return absl::OutOfRangeError(absl::StrCat(AbslView(field), " ", op.position,
                                              " is past the end of list ", Quoted(name), " (",
                                              count, " items)"));
  };
  auto raw_out_of_range = [&](std::string_view field, int64_t low, int64_t high) {
    return absl::OutOfRangeError(absl::StrCat(AbslView(field), " ", op.position,
                                              " is outside list ", Quoted(name), " (valid: ", low,
                                              " .. ", high, ")"));
  };
  switch (op.location) {
    case Location::kAtFront:
      boundary = 0;
      forward = true;
      front_moves = true;
      break;
    case Location::kAtBack:
      boundary = count;
      forward = false;
      front_moves = false;
      break;
    case Location::kIndex:
      if (op.position < 0 || op.position > count) return index_out_of_range("index");
      boundary = op.position;
      forward = true;
      front_moves = false;
      break;
    case Location::kIndexBackwards:
      if (op.position < 0 || op.position > count) return index_out_of_range("index_backwards");
      boundary = count - op.position;
      forward = false;
      front_moves = true;
      break;
    case Location::kRawIndex:
      if (op.position < start || op.position > start + count) {
        return raw_out_of_range("raw_index", start, start + count);
      }
      boundary = op.position - start;
      forward = true;
      front_moves = false;
      break;
    case Location::kRawIndexBackwards:
      if (op.position < start - 1 || op.position > start + count - 1) {
        return raw_out_of_range("raw_index_backwards", start - 1, start + count - 1);
      }
      boundary = op.position - start + 1;
      forward = false;
      front_moves = true;
      break;
  }

  const int64_t available = forward ? count - boundary : boundary;
  const int64_t reached = (op.get_values || op.remove_values)
                              ? static_cast<int64_t>(std::min<uint64_t>(
                                    op.values_count, static_cast<uint64_t>(available)))
                              : 0;
  const int64_t lo = forward ? boundary : boundary - reached;
  const int64_t hi = lo + reached;

  std::vector<std::string> collected;
  if (op.get_values) {
    collected.reserve(reached);
    if (forward) {
      for (int64_t i = lo; i < hi; ++i) collected.push_back(list.items[i]);
    } else {
      for (int64_t i = hi - 1; i >= lo; --i) collected.push_back(list.items[i]);
    }
  }

  // The old items [rlo, rhi) are replaced by insert_values.
  const int64_t rlo = op.remove_values ? lo : boundary;
  const int64_t rhi = op.remove_values ? hi : boundary;
  const int64_t inserted = static_cast<int64_t>(op.insert_values.size());
  if (rlo == rhi && inserted == 0) return collected;  // Nothing changes.

  const int64_t delta = inserted - (rhi - rlo);
  const int64_t new_count = count + delta;
  const int64_t new_start = front_moves ? start - delta : start;

  JournalBatch batch;
  if (journal_ != nullptr) {
    auto item_key = [&](int64_t raw) { return keys::CompositeInt(keys::kListEntry, name, raw); };
    if (delta == 0) {
      // Same length: only the replaced slots change, whichever end would have moved.
      for (int64_t i = 0; i < inserted; ++i) {
        batch.Put(item_key(start + rlo + i), op.insert_values[i]);
      }
    } else if (!front_moves) {
      // Items before rlo keep their raw indices; everything from rlo on is rewritten.
      batch.DeleteRange(item_key(start + rlo), item_key(start + count));
      int64_t raw = start + rlo;
      for (const std::string& value : op.insert_values) batch.Put(item_key(raw++), value);
      for (int64_t i = rhi; i < count; ++i) batch.Put(item_key(raw++), list.items[i]);
    } else {
      // Items from rhi on keep their raw indices; everything before rhi is rewritten.
      batch.DeleteRange(item_key(start), item_key(start + rhi));
      int64_t raw = new_start;
      for (int64_t i = 0; i < rlo; ++i) batch.Put(item_key(raw++), list.items[i]);
      for (const std::string& value : op.insert_values) batch.Put(item_key(raw++), value);
    }
    batch.Put(keys::Simple(keys::kList, name), ListDataBytes(new_start, new_start + new_count));
  }
  if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;

  list.journaled = true;
  list.items.erase(list.items.begin() + rlo, list.items.begin() + rhi);
  // Skipped when empty: libstdc++ 12's deque range insert of zero items in the middle
  // corrupts the following elements.
  if (inserted > 0) {
    list.items.insert(list.items.begin() + rlo, op.insert_values.begin(), op.insert_values.end());
  }
  list.start = new_start;
  return collected;
}

absl::StatusOr<std::optional<ListEntry>> StatesEngine::LocateInList(std::string_view name,
                                                                    std::string_view value) {
  using Result = absl::StatusOr<std::optional<ListEntry>>;
  return WithLive(
      lists_, name, /*create=*/false, []() -> Result { return std::nullopt; },
      [&](List& list) -> Result {
        list.mu.AssertHeld();  // Under WithLive's lock.
        for (size_t i = 0; i < list.items.size(); ++i) {
          if (list.items[i] == value) {
            return ListEntry{static_cast<uint32_t>(i), list.start + static_cast<int64_t>(i),
                             list.items[i]};
          }
        }
        return std::nullopt;
      });
}

absl::StatusOr<std::vector<ListEntry>> StatesEngine::ListList(std::string_view name) {
  using Result = absl::StatusOr<std::vector<ListEntry>>;
  return WithLive(
      lists_, name, /*create=*/false, []() -> Result { return std::vector<ListEntry>(); },
      [](List& list) -> Result {
        list.mu.AssertHeld();  // Under WithLive's lock.
        std::vector<ListEntry> entries;
        entries.reserve(list.items.size());
        for (size_t i = 0; i < list.items.size(); ++i) {
          entries.push_back(
              {static_cast<uint32_t>(i), list.start + static_cast<int64_t>(i), list.items[i]});
        }
        return entries;
      });
}

absl::StatusOr<uint64_t> StatesEngine::CountList(std::string_view name) {
  using Result = absl::StatusOr<uint64_t>;
  return WithLive(
      lists_, name, /*create=*/false, []() -> Result { return 0; },
      [](List& list) -> Result {
        list.mu.AssertHeld();  // Under WithLive's lock.
        return list.items.size();
      });
}

absl::Status StatesEngine::DeleteList(std::string_view name, bool keep_cache) {
  if (absl::Status s = CheckName(name, "list"); !s.ok()) return s;
  const std::string items_begin = keys::CompositePrefix(keys::kListEntry, name);
  if (keep_cache) {
    // The list stays, empty, with raw indices starting again at 0.
    return WithLive(lists_, name, [&](List& list) {
      list.mu.AssertHeld();  // Under WithLive's lock.
      JournalBatch batch;
      batch.DeleteRange(items_begin, keys::PrefixEnd(items_begin));
      batch.Put(keys::Simple(keys::kList, name), ListDataBytes(0, 0));
      if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
      list.journaled = true;
      list.items.clear();
      list.start = 0;
      return absl::OkStatus();
    });
  }
  return WithLive(
      lists_, name, /*create=*/false, [] { return absl::OkStatus(); },
      [&](List& list) {
        list.mu.AssertHeld();  // Under WithLive's lock.
        JournalBatch batch;
        batch.Delete(keys::Simple(keys::kList, name));
        batch.DeleteRange(items_begin, keys::PrefixEnd(items_begin));
        if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
        list.removed = true;
        list.items.clear();
        Drop(lists_, name, &list);
        return absl::OkStatus();
      });
}

// ---------------------------------------------------------------------------------------------
// Listing

absl::StatusOr<std::vector<StateSummary>> StatesEngine::ListStates(std::string_view prefix,
                                                                   size_t limit) {
  std::vector<StateSummary> result;
  // An object in the registry that was never journaled only exists in memory, made by a read
  // or a refused write (its backend would not have it after a restart): it is not listed.
  for (auto& [name, dictionary] : WithPrefix(dictionaries_, prefix)) {
    if (result.size() >= limit) return result;
    absl::MutexLock lock(&dictionary->mu);
    if (dictionary->removed || !dictionary->journaled) continue;
    result.push_back({name, StateSummary::Kind::kDictionary, dictionary->entries.size()});
  }
  for (auto& [name, list] : WithPrefix(lists_, prefix)) {
    if (result.size() >= limit) return result;
    absl::MutexLock lock(&list->mu);
    if (list->removed || !list->journaled) continue;
    result.push_back({name, StateSummary::Kind::kList, list->items.size()});
  }
  return result;
}

}  // namespace perper::storage
