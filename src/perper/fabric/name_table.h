// SPDX-License-Identifier: MIT
// NameTable: strings stored once each, counted, and named by a small index. A listen call keeps
// one for the instances and delegates of the executions it delivered: they share a few names,
// so a delivered execution costs its record two indexes instead of two strings.
//
//   NameTable names;
//   uint32_t a = names.Intern("instance-1");   // refs 1
//   uint32_t b = names.Intern("instance-1");   // the same index, refs 2
//   names.Get(a);                              // "instance-1"
//   names.Release(a);
//   names.Release(b);                          // refs 0: the index may be handed out again
//
// Thread safety: not thread-safe; the owner guards it (FeedReactor, under its mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace perper::fabric {

class NameTable {
 public:
  // The index of `name`, with one more reference to it.
  uint32_t Intern(const std::string& name);
  // Drops a reference Intern gave; the last one frees the index for reuse.
  // REQUIRES: `index` holds a reference.
  void Release(uint32_t index);
  // The name at `index`. REQUIRES: `index` holds a reference.
  const std::string& Get(uint32_t index) const { return names_[index].value; }
  // How many distinct names are held.
  size_t size() const { return index_.size(); }

 private:
  struct Name {
    std::string value;
    uint32_t refs = 0;
  };
  std::vector<Name> names_;
  std::vector<uint32_t> free_;  // Indexes of released names, reused first.
  absl::flat_hash_map<std::string, uint32_t> index_;
};

}  // namespace perper::fabric
