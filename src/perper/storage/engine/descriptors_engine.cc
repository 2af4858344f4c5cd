// SPDX-License-Identifier: MIT
#include "perper/storage/engine/descriptors_engine.h"

#include <utility>

#include "perper/common/strings.h"
#include "perper/storage/engine/keys.h"

namespace perper::storage {

absl::Status DescriptorsEngine::Load() {
  if (journal_ == nullptr) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  // Scan calls the lambda on this thread, under the lock taken here.
  return journal_->Scan(keys::SpacePrefix(keys::kDescriptor),
                        [&](std::string_view key, std::string_view value)
                            ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                              descriptors_[std::string(key.substr(2))] = std::string(value);
                            });
}

absl::Status DescriptorsEngine::RegisterDescriptor(std::string_view type_url, std::string bytes) {
  if (type_url.empty()) return absl::InvalidArgumentError("type_url must not be empty");
  absl::MutexLock lock(&mu_);
  JournalBatch batch;
  batch.Put(keys::Simple(keys::kDescriptor, type_url), bytes);
  if (absl::Status s = CommitIfDurable(journal_, batch); !s.ok()) return s;
  descriptors_[std::string(type_url)] = std::move(bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> DescriptorsEngine::GetDescriptor(
    std::string_view type_url) {
  absl::MutexLock lock(&mu_);
  auto it = descriptors_.find(AbslView(type_url));
  if (it == descriptors_.end()) return std::nullopt;
  return it->second;
}

}  // namespace perper::storage
