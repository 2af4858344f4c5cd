// SPDX-License-Identifier: MIT
#include "perper/fabric/name_table.h"

namespace perper::fabric {

uint32_t NameTable::Intern(const std::string& name) {
  auto [it, inserted] = index_.try_emplace(name, 0);
  if (inserted) {
    if (free_.empty()) {
      it->second = static_cast<uint32_t>(names_.size());
      names_.emplace_back();
    } else {
      it->second = free_.back();
      free_.pop_back();
    }
    names_[it->second] = {name, 0};
  }
  ++names_[it->second].refs;
  return it->second;
}

void NameTable::Release(uint32_t index) {
  Name& name = names_[index];
  if (--name.refs > 0) return;
  index_.erase(name.value);
  name.value = std::string();
  free_.push_back(index);
}

}  // namespace perper::fabric
