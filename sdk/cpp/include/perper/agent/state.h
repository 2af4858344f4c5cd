// SPDX-License-Identifier: MIT
// State: named dictionaries kept by the Fabric.
//
// Provides:
//   perper::Dictionary   a reference to a dictionary (FabricStatesDictionary): get, set, remove
//
// Every instance has its own dictionary "<instance>-", returned by Context::state().
//
// Example:
//
//   perper::Dictionary state = ctx.state();
//   absl::StatusOr<std::optional<int64_t>> n = co_await state.get<int64_t>("count");
//   absl::Status written = co_await state.set("count", n.value().value_or(0) + 1);
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <google/protobuf/any.pb.h>

#include "perper/agent/task.h"
#include "perper/agent/value.h"

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

template <typename T>
Task<absl::StatusOr<std::optional<T>>> TypedGet(Core* core, std::string dictionary,
                                                google::protobuf::Any key) {
  auto value = co_await DictionaryGet(core, std::move(dictionary), std::move(key));
  if (!value.ok()) {
    co_return value.status();
  }
  if (IsNull(*value)) {
    co_return std::optional<T>();
  }
  auto typed = FromAny<T>(*value);
  if (!typed.ok()) {
    co_return typed.status();
  }
  co_return std::optional<T>(*std::move(typed));
}

}  // namespace internal

// A reference to one dictionary. Cheap to copy; valid while the runtime runs. Each operation is
// one atomic Fabric call and suspends. Keys and values follow perper/agent/value.h.
class Dictionary {
 public:
  Dictionary(internal::Core* core, std::string name) : core_(core), name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  // The value of `key` read as T, or nullopt when absent.
  template <typename T, typename K>
  Task<absl::StatusOr<std::optional<T>>> get(K key) const {
    return internal::TypedGet<T>(core_, name_, ToAny(key));
  }

  // Puts `value` under `key` (a null value, e.g. std::nullopt, removes the key).
  template <typename K, typename V>
  Task<absl::Status> set(K key, V value) const {
    return internal::DictionarySet(core_, name_, ToAny(key), ToAny(value));
  }

  // Removes `key`; true when a value was removed.
  template <typename K>
  Task<absl::StatusOr<bool>> remove(K key) const {
    return internal::DictionaryRemove(core_, name_, ToAny(key));
  }

 private:
  internal::Core* core_;
  std::string name_;
};

}  // namespace perper
