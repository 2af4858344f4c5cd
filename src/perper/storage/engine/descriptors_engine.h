// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real engine.
#pragma once

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class DescriptorsEngine final : public DescriptorStore {
 public:
  DescriptorsEngine(Journal* journal, Notifier* notifier) : journal_(journal), notifier_(notifier) {}
  absl::Status Load() { return absl::OkStatus(); }
  absl::Status RegisterDescriptor(std::string_view type_url, std::string bytes) override { return absl::UnimplementedError("not implemented"); }
  std::optional<std::string> GetDescriptor(std::string_view type_url) override { return {}; }
 private:
  Journal* journal_;
  Notifier* notifier_;
};

}  // namespace perper::storage
