// SPDX-License-Identifier: MIT
// State: named dictionaries and lists kept by the Fabric.
//
// Provides:
//   perper::Dictionary   a reference to a dictionary (FabricStatesDictionary): get, set, remove,
//                        compare-and-set, contains, count, items, clear
//   perper::List         a reference to a list, a deque (FabricStatesList): push and pop at both
//                        ends, get/set/insert/remove by index, count, items, locate, clear
//   perper::Changes      a batch of operations on one dictionary, applied atomically together
//                        with a listener's move by perper::Stream::step (perper/agent/stream.h)
//
// Every instance has its own dictionary "<instance>-", returned by Context::state(). Both are
// passed to other agents as their model messages (PerperDictionary, PerperList): model().
//
// Example:
//
//   perper::Dictionary state = ctx.state();
//   absl::StatusOr<std::optional<int64_t>> n = co_await state.get<int64_t>("count");
//   absl::StatusOr<bool> won = co_await state.compare_and_set("count", *n, n->value_or(0) + 1);
//   perper::List queue = ctx.list("jobs");
//   co_await queue.push_back(std::string("a"), std::string("b"));
//   absl::StatusOr<std::optional<std::string>> first = co_await queue.pop_front<std::string>();
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include <google/protobuf/any.pb.h>

#include "perper/agent/task.h"
#include "perper/agent/value.h"
#include "perper/grpc2/model.pb.h"
#include "perper/grpc2/states.pb.h"

namespace perper {

namespace internal {

class Core;

// FabricStatesDictionary.Operate with the get/set flags; the previous value when `get`.
Task<absl::StatusOr<google::protobuf::Any>> DictionaryGet(Core* core, std::string dictionary,
                                                          google::protobuf::Any key);
Task<absl::Status> DictionarySet(Core* core, std::string dictionary, google::protobuf::Any key,
                                 google::protobuf::Any value);
// Whether a value was removed.
Task<absl::StatusOr<bool>> DictionaryRemove(Core* core, std::string dictionary,
                                            google::protobuf::Any key);
// Sets `value` (null: removes) when the current value equals `expected` byte for byte (null:
// absent); whether it did.
Task<absl::StatusOr<bool>> DictionaryCompareAndSet(Core* core, std::string dictionary,
                                                   google::protobuf::Any key,
                                                   google::protobuf::Any expected,
                                                   google::protobuf::Any value);
Task<absl::StatusOr<bool>> DictionaryContains(Core* core, std::string dictionary,
                                              google::protobuf::Any key);
Task<absl::StatusOr<int64_t>> DictionaryCount(Core* core, std::string dictionary);
// Every (key, value), in key byte order.
Task<absl::StatusOr<std::vector<std::pair<google::protobuf::Any, google::protobuf::Any>>>>
DictionaryItems(Core* core, std::string dictionary);
Task<absl::Status> DictionaryClear(Core* core, std::string dictionary);

// FabricStatesList.Operate: the values it returns.
Task<absl::StatusOr<std::vector<google::protobuf::Any>>> ListOperate(
    Core* core, grpc2::StatesListOperateRequest request);
Task<absl::StatusOr<int64_t>> ListCount(Core* core, std::string list);
Task<absl::StatusOr<std::vector<google::protobuf::Any>>> ListItems(Core* core, std::string list);
// The index of the first item equal to `value`, or nullopt.
Task<absl::StatusOr<std::optional<int64_t>>> ListLocate(Core* core, std::string list,
                                                        google::protobuf::Any value);
Task<absl::Status> ListClear(Core* core, std::string list);
// Replaces item `index` (OUT_OF_RANGE when there is none).
Task<absl::Status> ListSet(Core* core, std::string list, int64_t index,
                           google::protobuf::Any value);

template <typename T>
absl::StatusOr<std::optional<T>> OptionalOf(const google::protobuf::Any& value) {
  if (IsNull(value)) {
    return std::optional<T>();
  }
  auto typed = FromAny<T>(value);
  if (!typed.ok()) {
    return typed.status();
  }
  return std::optional<T>(*std::move(typed));
}

template <typename T>
Task<absl::StatusOr<std::optional<T>>> TypedGet(Core* core, std::string dictionary,
                                                google::protobuf::Any key) {
  auto value = co_await DictionaryGet(core, std::move(dictionary), std::move(key));
  if (!value.ok()) {
    co_return value.status();
  }
  co_return OptionalOf<T>(*value);
}

template <typename K, typename V>
Task<absl::StatusOr<std::vector<std::pair<K, V>>>> TypedDictionaryItems(Core* core,
                                                                        std::string dictionary) {
  auto items = co_await DictionaryItems(core, std::move(dictionary));
  if (!items.ok()) {
    co_return items.status();
  }
  std::vector<std::pair<K, V>> out;
  out.reserve(items->size());
  for (auto& [key, value] : *items) {
    auto k = FromAny<K>(key);
    if (!k.ok()) {
      co_return k.status();
    }
    auto v = FromAny<V>(value);
    if (!v.ok()) {
      co_return v.status();
    }
    out.emplace_back(*std::move(k), *std::move(v));
  }
  co_return out;
}

// Reads the first returned value as T: nullopt when none was returned.
template <typename T>
Task<absl::StatusOr<std::optional<T>>> FirstValue(
    Task<absl::StatusOr<std::vector<google::protobuf::Any>>> operation) {
  auto values = co_await std::move(operation);
  if (!values.ok()) {
    co_return values.status();
  }
  if (values->empty()) {
    co_return std::optional<T>();
  }
  auto typed = FromAny<T>((*values)[0]);
  if (!typed.ok()) {
    co_return typed.status();
  }
  co_return std::optional<T>(*std::move(typed));
}

// As FirstValue, but a missing value is OUT_OF_RANGE naming `what`.
template <typename T>
Task<absl::StatusOr<T>> RequiredValue(
    Task<absl::StatusOr<std::vector<google::protobuf::Any>>> operation, std::string what) {
  auto value = co_await FirstValue<T>(std::move(operation));
  if (!value.ok()) {
    co_return value.status();
  }
  if (!value->has_value()) {
    co_return absl::OutOfRangeError(what);
  }
  co_return **std::move(value);
}

template <typename T>
Task<absl::StatusOr<std::vector<T>>> TypedListItems(Core* core, std::string list) {
  auto items = co_await ListItems(core, std::move(list));
  if (!items.ok()) {
    co_return items.status();
  }
  std::vector<T> out;
  out.reserve(items->size());
  for (const auto& item : *items) {
    auto typed = FromAny<T>(item);
    if (!typed.ok()) {
      co_return typed.status();
    }
    out.push_back(*std::move(typed));
  }
  co_return out;
}

inline Task<absl::Status> StatusOf(
    Task<absl::StatusOr<std::vector<google::protobuf::Any>>> operation) {
  auto values = co_await std::move(operation);
  co_return values.status();
}

}  // namespace internal

// A batch of operations on one dictionary, applied in order and atomically with the move of a
// stream listener by Stream::step (FabricStreams.Step): all of them and the move, or nothing.
// Each operation means what the Dictionary method of the same name means. The methods chain:
//
//   perper::Changes changes = state.changes();
//   changes.set("total", total + reading).set("count", count + 1);
//   co_await stream.step("average", key, std::move(changes));
//
// A value that cannot be packed (a structured value with an integer beyond 2^53) is kept as
// the batch's error, which step() returns without applying anything. Thread-compatible.
class Changes {
 public:
  // No dictionary: a step with no operations only moves its listener.
  Changes() = default;
  explicit Changes(std::string dictionary) : dictionary_(std::move(dictionary)) {}

  // Puts `value` under `key` (a null value, e.g. std::nullopt, removes the key).
  template <typename K, typename V>
  Changes& set(K key, V value) {
    Add(internal::PackAll(key, value), /*compare=*/false);
    return *this;
  }
  // Removes `key`.
  template <typename K>
  Changes& remove(K key) {
    Add(internal::PackAll(key, std::nullopt), /*compare=*/false);
    return *this;
  }
  // Puts `value` under `key` only if its current value equals `expected` (std::nullopt: the
  // key is absent); when this compare fails, the whole step applies nothing.
  template <typename K, typename E, typename V>
  Changes& compare_and_set(K key, E expected, V value) {
    Add(internal::PackAll(key, value, expected), /*compare=*/true);
    return *this;
  }

  const std::string& dictionary() const { return dictionary_; }
  // The operations, in order (their dictionary field is not set).
  const std::vector<grpc2::StatesDictionaryOperateRequest>& operations() const {
    return operations_;
  }
  // OK, or the first value that could not be packed.
  const absl::Status& status() const { return status_; }
  bool empty() const { return operations_.empty(); }

 private:
  // `packed` is key, new value[, expected value].
  void Add(absl::StatusOr<std::vector<google::protobuf::Any>> packed, bool compare) {
    if (!packed.ok()) {
      if (status_.ok()) {
        status_ = packed.status();
      }
      return;
    }
    grpc2::StatesDictionaryOperateRequest& operation = operations_.emplace_back();
    *operation.mutable_key() = std::move((*packed)[0]);
    operation.set_set_new_value(true);
    *operation.mutable_new_value() = std::move((*packed)[1]);
    if (compare) {
      operation.set_compare_existing_value(true);
      *operation.mutable_expected_existing_value() = std::move((*packed)[2]);
    }
  }

  std::string dictionary_;
  std::vector<grpc2::StatesDictionaryOperateRequest> operations_;
  absl::Status status_;
};

// A reference to one dictionary. Cheap to copy; valid while the runtime runs. Each operation is
// one atomic Fabric call and suspends. Keys and values follow perper/agent/value.h; comparisons
// are of the packed bytes (an int64_t is an Int64Value: it does not equal an int32_t 1).
class Dictionary {
 public:
  Dictionary(internal::Core* core, std::string name) : core_(core), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  grpc2::model::PerperDictionary model() const {
    grpc2::model::PerperDictionary model;
    model.set_dictionary(name_);
    return model;
  }

  // The value of `key` read as T, or nullopt when absent.
  template <typename T, typename K>
  Task<absl::StatusOr<std::optional<T>>> get(K key) const {
    return internal::TypedGet<T>(core_, name_, ToAny(key));
  }

  // Puts `value` under `key` (a null value, e.g. std::nullopt, removes the key).
  template <typename K, typename V>
  Task<absl::Status> set(K key, V value) const {
    auto values = internal::PackAll(key, value);
    if (!values.ok()) {
      return internal::Ready<absl::Status>(values.status());
    }
    return internal::DictionarySet(core_, name_, std::move((*values)[0]), std::move((*values)[1]));
  }

  // Removes `key`; true when a value was removed.
  template <typename K>
  Task<absl::StatusOr<bool>> remove(K key) const {
    return internal::DictionaryRemove(core_, name_, ToAny(key));
  }

  // Atomically puts `value` under `key` (null: removes it) if the current value equals
  // `expected` (std::nullopt: the key is absent); true when it did.
  //
  //   co_await dict.compare_and_set("n", int64_t{41}, int64_t{42});
  //   co_await dict.compare_and_set("owner", std::nullopt, std::string("me"));  // if absent
  template <typename K, typename E, typename V>
  Task<absl::StatusOr<bool>> compare_and_set(K key, E expected, V value) const {
    auto values = internal::PackAll(key, expected, value);
    if (!values.ok()) {
      return internal::Ready<absl::StatusOr<bool>>(values.status());
    }
    return internal::DictionaryCompareAndSet(core_, name_, std::move((*values)[0]),
                                             std::move((*values)[1]), std::move((*values)[2]));
  }

  // Whether `key` is present.
  template <typename K>
  Task<absl::StatusOr<bool>> contains(K key) const {
    return internal::DictionaryContains(core_, name_, ToAny(key));
  }

  // The number of keys.
  Task<absl::StatusOr<int64_t>> count() const { return internal::DictionaryCount(core_, name_); }

  // Every (key, value), in the byte order of the packed keys (a snapshot).
  template <typename K, typename V>
  Task<absl::StatusOr<std::vector<std::pair<K, V>>>> items() const {
    return internal::TypedDictionaryItems<K, V>(core_, name_);
  }

  // Removes every key.
  Task<absl::Status> clear() const { return internal::DictionaryClear(core_, name_); }

  // An empty batch of operations on this dictionary, for Stream::step.
  Changes changes() const { return Changes(name_); }

 private:
  internal::Core* core_;
  std::string name_;
};

// A reference to one list: a deque whose items are addressed by index (0 is the front).
// Cheap to copy; valid while the runtime runs. Each operation is one atomic Fabric call and
// suspends (set() is two). An index past the end is OUT_OF_RANGE.
//
//   perper::List list = ctx.list("names");
//   co_await list.push_back(std::string("a"), std::string("b"));   // [a, b]
//   co_await list.insert(1, std::string("x"));                      // [a, x, b]
//   absl::StatusOr<std::string> second = co_await list.get<std::string>(1);   // x
class List {
 public:
  List(internal::Core* core, std::string name) : core_(core), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  grpc2::model::PerperList model() const {
    grpc2::model::PerperList model;
    model.set_list(name_);
    return model;
  }

  // Appends the values at the back, in order.
  template <typename... V>
  Task<absl::Status> push_back(V... values) const {
    auto request = Request();
    request.set_at_back(true);
    return Insert(std::move(request), values...);
  }

  // Inserts the values at the front, as a block in their order.
  template <typename... V>
  Task<absl::Status> push_front(V... values) const {
    auto request = Request();
    request.set_at_front(true);
    return Insert(std::move(request), values...);
  }

  // Removes and returns the first (last) item; nullopt when the list is empty.
  template <typename T>
  Task<absl::StatusOr<std::optional<T>>> pop_front() const {
    auto request = Request();
    request.set_at_front(true);
    return Take<T>(std::move(request));
  }
  template <typename T>
  Task<absl::StatusOr<std::optional<T>>> pop_back() const {
    auto request = Request();
    request.set_at_back(true);
    return Take<T>(std::move(request));
  }

  // Item `index`; a negative index counts from the back (-1 is the last item).
  template <typename T>
  Task<absl::StatusOr<T>> get(int64_t index) const {
    auto request = Request();
    if (index < 0) {
      request.set_index_backwards(-index - 1);
    } else {
      request.set_index(index);
    }
    request.set_values_count(1);
    request.set_get_values(true);
    return internal::RequiredValue<T>(internal::ListOperate(core_, std::move(request)),
                                      Outside(index));
  }

  // Replaces item `index` (0 <= index < count).
  template <typename V>
  Task<absl::Status> set(int64_t index, V value) const {
    absl::StatusOr<google::protobuf::Any> packed = TryToAny(value);
    if (!packed.ok()) {
      return internal::Ready<absl::Status>(packed.status());
    }
    return internal::ListSet(core_, name_, index, *std::move(packed));
  }

  // Inserts `value` before item `index` (index == count appends).
  template <typename V>
  Task<absl::Status> insert(int64_t index, V value) const {
    auto request = Request();
    request.set_index(index);
    return Insert(std::move(request), value);
  }

  // Removes item `index` and returns it.
  template <typename T>
  Task<absl::StatusOr<T>> remove_at(int64_t index) const {
    auto request = Request();
    request.set_index(index);
    request.set_values_count(1);
    request.set_get_values(true);
    request.set_remove_values(true);
    return internal::RequiredValue<T>(internal::ListOperate(core_, std::move(request)),
                                      Outside(index));
  }

  // The number of items.
  Task<absl::StatusOr<int64_t>> count() const { return internal::ListCount(core_, name_); }

  // Every item, front to back (a snapshot).
  template <typename T>
  Task<absl::StatusOr<std::vector<T>>> items() const {
    return internal::TypedListItems<T>(core_, name_);
  }

  // The index of the first item equal to `value` (packed bytes), or nullopt.
  template <typename V>
  Task<absl::StatusOr<std::optional<int64_t>>> locate(V value) const {
    return internal::ListLocate(core_, name_, ToAny(value));
  }

  // Removes every item.
  Task<absl::Status> clear() const { return internal::ListClear(core_, name_); }

 private:
  grpc2::StatesListOperateRequest Request() const {
    grpc2::StatesListOperateRequest request;
    request.mutable_list()->set_list(name_);
    return request;
  }
  template <typename... V>
  Task<absl::Status> Insert(grpc2::StatesListOperateRequest request, const V&... values) const {
    auto packed = internal::PackAll(values...);
    if (!packed.ok()) {
      return internal::Ready<absl::Status>(packed.status());
    }
    for (auto& value : *packed) {
      *request.add_insert_values() = std::move(value);
    }
    return internal::StatusOf(internal::ListOperate(core_, std::move(request)));
  }
  template <typename T>
  Task<absl::StatusOr<std::optional<T>>> Take(grpc2::StatesListOperateRequest request) const {
    request.set_values_count(1);
    request.set_get_values(true);
    request.set_remove_values(true);
    return internal::FirstValue<T>(internal::ListOperate(core_, std::move(request)));
  }
  std::string Outside(int64_t index) const {
    return absl::StrCat("index ", index, " is outside list \"", name_, "\"");
  }

  internal::Core* core_;
  std::string name_;
};

}  // namespace perper
