// SPDX-License-Identifier: MIT
// PLACEHOLDER: to be replaced by the real engine.
#pragma once

#include "perper/storage/engine/notifier.h"
#include "perper/storage/journal.h"
#include "perper/storage/store.h"

namespace perper::storage {

class StreamsEngine final : public StreamStore {
 public:
  StreamsEngine(Journal* journal, Notifier* notifier) : journal_(journal), notifier_(notifier) {}
  absl::Status Load() { return absl::OkStatus(); }
  absl::StatusOr<bool> CreateStream(StreamRecord record) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<StreamRecord> GetStream(std::string_view stream) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<std::vector<int64_t>> WriteItems(std::string_view stream, std::vector<ItemToWrite> items) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<std::vector<StreamItem>> ReadItems(std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<std::optional<int64_t>> LastKey(std::string_view stream) override { return absl::UnimplementedError("not implemented"); }
  absl::Status CompleteStream(std::string_view stream, std::optional<std::string> error) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<bool> DeleteStream(std::string_view stream) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<ListenerRecord> RegisterListener(std::string_view stream, std::string_view name, int64_t position, bool transient) override { return absl::UnimplementedError("not implemented"); }
  absl::Status MoveListener(std::string_view stream, std::string_view name, int64_t position) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<bool> DeleteListener(std::string_view stream, std::string_view name) override { return absl::UnimplementedError("not implemented"); }
  absl::StatusOr<std::vector<ListenerRecord>> ListListeners(std::string_view stream) override { return absl::UnimplementedError("not implemented"); }
  std::vector<StreamSummary> ListStreams(std::string_view prefix, size_t limit) override { return {}; }
 private:
  Journal* journal_;
  Notifier* notifier_;
};

}  // namespace perper::storage
