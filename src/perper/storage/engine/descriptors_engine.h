// SPDX-License-Identifier: MIT
// The descriptors part of the engine backends: serialized FabricProtobufDescriptorsRegisterRequest
// messages by type URL, kept in memory and, when a Journal is set, journaled under
// `p/<type url>`. Registering again replaces the stored bytes.
//
// Descriptors are registered rarely (once per type per process start) and read rarely, so one
// mutex guards the whole map. Registrations are not reported to the Notifier: no protocol call
// waits for them.
//
// Thread safety: every method is safe to call concurrently from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class DescriptorsEngine final : public DescriptorStore {
 public:
  // `journal` may be null (memory backend); both pointers must outlive the engine.
  DescriptorsEngine(Journal* journal, Notifier* notifier)
      : journal_(journal), notifier_(notifier) {}
  DescriptorsEngine(const DescriptorsEngine&) = delete;
  DescriptorsEngine& operator=(const DescriptorsEngine&) = delete;

  // Reads every descriptor back from the journal. Call once, before any other method.
  absl::Status Load();

  // INVALID_ARGUMENT when type_url is empty.
  absl::Status RegisterDescriptor(std::string_view type_url, std::string bytes) override;
  absl::StatusOr<std::optional<std::string>> GetDescriptor(std::string_view type_url) override;

 private:
  Journal* const journal_;
  [[maybe_unused]] Notifier* const notifier_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> descriptors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace perper::storage
