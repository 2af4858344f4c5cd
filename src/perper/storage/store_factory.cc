// SPDX-License-Identifier: MIT
#include "perper/storage/store_factory.h"

#include "perper/common/status_macros.h"
#include "perper/storage/engine/engine_store.h"
#include "perper/storage/rocksdb/rocksdb_journal.h"

namespace perper::storage {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreOptions& options) {
  if (options.kind == "memory") {
    PERPER_ASSIGN_OR_RETURN(auto store, EngineStore::Open(nullptr));
    return std::unique_ptr<Store>(std::move(store));
  }
  if (options.kind == "rocksdb") {
    PERPER_ASSIGN_OR_RETURN(auto journal, RocksDbJournal::Open(options.data_dir, options.sync_writes));
    PERPER_ASSIGN_OR_RETURN(auto store, EngineStore::Open(std::move(journal)));
    return std::unique_ptr<Store>(std::move(store));
  }
  return absl::InvalidArgumentError("unknown storage kind '" + options.kind +
                                    "'; expected memory or rocksdb");
}

}  // namespace perper::storage
