// SPDX-License-Identifier: MIT
#include "perper/storage/engine/engine_store.h"

#include "perper/common/status_macros.h"

namespace perper::storage {

EngineStore::EngineStore(std::unique_ptr<Journal> journal)
    : journal_(std::move(journal)),
      executions_(journal_.get(), &notifier_),
      streams_(journal_.get(), &notifier_),
      states_(journal_.get(), &notifier_),
      descriptors_(journal_.get(), &notifier_) {}

absl::StatusOr<std::unique_ptr<EngineStore>> EngineStore::Open(std::unique_ptr<Journal> journal) {
  std::unique_ptr<EngineStore> store(new EngineStore(std::move(journal)));
  if (store->journal_ != nullptr) {
    PERPER_RETURN_IF_ERROR(store->executions_.Load());
    PERPER_RETURN_IF_ERROR(store->streams_.Load());
    PERPER_RETURN_IF_ERROR(store->states_.Load());
    PERPER_RETURN_IF_ERROR(store->descriptors_.Load());
  }
  return store;
}

}  // namespace perper::storage
