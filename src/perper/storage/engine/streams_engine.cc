// SPDX-License-Identifier: MIT
#include "perper/storage/engine/streams_engine.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <utility>

#include "perper/common/memory.h"
#include "perper/common/status_macros.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/storage/engine/keys.h"
#include "perper/storage/records.pb.h"

namespace perper::storage {
namespace {

std::string StreamNotFound(std::string_view stream) {
  return "stream " + ShortId(stream) + " not found";
}

std::string EncodeRecord(const StreamRecord& record, const std::optional<int64_t>& last_key,
                         const std::optional<int64_t>& gc_floor, uint64_t collected_count) {
  StreamData data;
  data.set_ephemeral(record.ephemeral);
  data.set_stride(record.stride);
  data.set_completed(record.completed);
  if (record.error.has_value()) {
    data.set_has_error(true);
    data.set_error(*record.error);
  }
  if (last_key.has_value()) {
    data.set_has_last_key(true);
    data.set_last_key(*last_key);
  }
  if (gc_floor.has_value()) {
    data.set_has_gc_floor(true);
    data.set_gc_floor(*gc_floor);
  }
  data.set_collected_count(collected_count);
  return data.SerializeAsString();
}

std::string ListenerKey(std::string_view stream, std::string_view name) {
  return keys::Composite(keys::kListener, stream, name);
}

std::string EncodeListener(int64_t position) {
  ListenerData data;
  data.set_position(position);
  return data.SerializeAsString();
}

}  // namespace

StreamsEngine::StreamsEngine(Journal* journal, Notifier* notifier)
    : journal_(journal), notifier_(notifier) {}

void StreamsEngine::NotifyChange(Change::Kind kind, std::string_view stream, int64_t key) const {
  Change change;
  change.kind = kind;
  change.id = std::string(stream);
  change.key = key;
  notifier_->Notify(change);
}

std::shared_ptr<StreamsEngine::StreamState> StreamsEngine::Find(std::string_view stream) {
  absl::ReaderMutexLock lock(&registry_mu_);
  auto it = streams_.find(std::string(stream));
  if (it == streams_.end()) return nullptr;
  return it->second;
}

absl::Status StreamsEngine::Load() {
  absl::MutexLock registry_lock(&registry_mu_);
  absl::Status parse_error;
  // Scan calls each lambda on this thread, under the registry lock taken here.
  absl::Status status = journal_->Scan(
      keys::SpacePrefix(keys::kStream),
      [&](std::string_view key, std::string_view value)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_) {
            StreamData data;
            if (!data.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
              parse_error = absl::DataLossError("corrupt stream record " + std::string(key));
              return;
            }
            auto state = std::make_shared<StreamState>();
            absl::MutexLock lock(&state->mu);
            state->record.stream = std::string(key.substr(2));
            state->record.ephemeral = data.ephemeral();
            state->record.stride = data.stride();
            state->record.completed = data.completed();
            if (data.has_error()) state->record.error = data.error();
            if (data.has_last_key()) state->last_key = data.last_key();
            if (data.has_gc_floor()) state->gc_floor = data.gc_floor();
            state->collected_count = data.collected_count();
            streams_[state->record.stream] = std::move(state);
          });
  if (!status.ok()) return status;
  if (!parse_error.ok()) return parse_error;

  status = journal_->Scan(keys::SpacePrefix(keys::kItem),
                          [&](std::string_view key,
                              std::string_view value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_) {
                            std::string_view id, suffix;
                            if (!keys::SplitComposite(key, &id, &suffix) || suffix.size() != 8) {
                              parse_error = absl::DataLossError("corrupt item key in the journal");
                              return;
                            }
                            auto it = streams_.find(std::string(id));
                            if (it == streams_.end())
                              return;  // An orphan of an interrupted delete: skip it.
                            StreamState& state = *it->second;
                            absl::MutexLock lock(&state.mu);
                            int64_t item_key = keys::DecodeInt64(suffix);
                            state.items.emplace(item_key, std::string(value));
                            state.retained_bytes += RetainedBytes(value);
                            if (!state.last_key.has_value() || *state.last_key < item_key)
                              state.last_key = item_key;
                          });
  if (!status.ok()) return status;
  if (!parse_error.ok()) return parse_error;

  status = journal_->Scan(
      keys::SpacePrefix(keys::kListener),
      [&](std::string_view key, std::string_view value)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_) {
            std::string_view id, name;
            ListenerData data;
            if (!keys::SplitComposite(key, &id, &name) ||
                !data.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
              parse_error = absl::DataLossError("corrupt listener record in the journal");
              return;
            }
            auto it = streams_.find(std::string(id));
            if (it == streams_.end()) return;
            StreamState& state = *it->second;
            absl::MutexLock lock(&state.mu);
            state.listeners[std::string(name)] = Listener{data.position(), false};
          });
  if (!status.ok()) return status;
  return parse_error;
}

absl::StatusOr<bool> StreamsEngine::CreateStream(StreamRecord record) {
  if (record.stream.empty()) return absl::InvalidArgumentError("stream ID must not be empty");
  record.completed = false;
  record.error.reset();
  for (;;) {
    absl::ReleasableMutexLock registry_lock(&registry_mu_);
    auto it = streams_.find(record.stream);
    if (it == streams_.end()) {
      // The new entry is published locked, so that concurrent users of this ID wait for the
      // journal commit below (done outside the registry lock) and see its outcome.
      auto state = std::make_shared<StreamState>();
      state->mu.Lock();
      state->record = record;
      streams_.emplace(record.stream, state);
      registry_lock.Release();
      JournalBatch batch;
      batch.Put(keys::Simple(keys::kStream, record.stream),
                EncodeRecord(record, std::nullopt, std::nullopt, 0));
      absl::Status status = CommitIfDurable(journal_, batch);
      if (!status.ok()) state->deleted = true;
      state->mu.Unlock();
      if (!status.ok()) {
        absl::MutexLock lock(&registry_mu_);
        it = streams_.find(record.stream);
        if (it != streams_.end() && it->second == state) streams_.erase(it);
        return status;
      }
      NotifyChange(Change::Kind::kStreamCreated, record.stream);
      return true;
    }
    std::shared_ptr<StreamState> state = it->second;
    registry_lock.Release();
    {
      absl::MutexLock lock(&state->mu);
      if (!state->deleted) {
        // Read through state->, not a reference: the thread-safety analysis cannot tell that a
        // reference's fields are guarded by state->mu.
        const bool ephemeral = state->record.ephemeral;
        const int64_t stride = state->record.stride;
        const bool completed = state->record.completed;
        if (ephemeral == record.ephemeral && stride == record.stride && !completed) return false;
        std::string why = completed ? "is completed"
                                    : "has different options (ephemeral " +
                                          std::string(ephemeral ? "true" : "false") + ", stride " +
                                          std::to_string(stride) + ")";
        return absl::AlreadyExistsError("stream " + record.stream + " already exists and " + why);
      }
    }
    // A deleted entry not yet dropped from the registry: drop it and try again.
    absl::MutexLock lock(&registry_mu_);
    it = streams_.find(record.stream);
    if (it != streams_.end() && it->second == state) streams_.erase(it);
  }
}

absl::StatusOr<StreamRecord> StreamsEngine::GetStream(std::string_view stream) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  absl::ReaderMutexLock lock(&state->mu);
  if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
  return state->record;
}

absl::StatusOr<std::vector<int64_t>> StreamsEngine::WriteItems(std::string_view stream,
                                                               std::vector<ItemToWrite> items) {
  return WriteItemsBounded(stream, items, std::numeric_limits<size_t>::max());
}

absl::Status StreamsEngine::RetentionFull(std::string_view stream, const StreamState& data,
                                          size_t bytes, size_t limit) {
  std::string message = "stream " + std::string(stream) + " retains " +
                        std::to_string(data.retained_bytes) + " bytes in " +
                        std::to_string(data.items.size()) +
                        " items that not every listener has passed; writing " +
                        std::to_string(bytes) + " more would pass its limit of " +
                        std::to_string(limit) + " bytes (--max-stream-retained-bytes): ";
  const std::string* lowest_name = nullptr;
  int64_t lowest = 0;
  for (const auto& [name, listener] : data.listeners) {
    if (listener.position == kPositionTrigger) continue;
    if (lowest_name == nullptr || listener.position < lowest) {
      lowest_name = &name;
      lowest = listener.position;
    }
  }
  if (lowest_name != nullptr) {
    message +=
        "listener " + *lowest_name + " at position " +
        (lowest == kPositionNotStarted ? std::string("not started") : std::to_string(lowest)) +
        " holds them back";
  } else if (data.listeners.empty()) {
    message += "the stream has no listener, so nothing is collected";
  } else {
    message += "its only listeners are triggers; items go at the next listener change";
  }
  return RetentionBoundReached(std::move(message));
}

absl::StatusOr<std::vector<int64_t>> StreamsEngine::WriteItemsBounded(
    std::string_view stream, std::vector<ItemToWrite>& items, size_t max_retained_bytes) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  std::vector<int64_t> written;
  int64_t largest = 0;
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
    if (items.empty()) return written;

    // Pass 1: choose and check every key, so that the batch is all or nothing. An explicit key
    // that already holds the same bytes, or that garbage collection has passed, is a replay of
    // a write that happened: it is answered with its key and changes nothing.
    written.reserve(items.size());
    std::vector<bool> replayed(items.size(), false);
    size_t fresh = 0;
    size_t bytes = 0;
    std::optional<int64_t> last = state->last_key;
    bool any_explicit = false;
    for (size_t i = 0; i < items.size(); ++i) {
      const ItemToWrite& item = items[i];
      int64_t key;
      if (item.key.has_value()) {
        any_explicit = true;
        key = *item.key;
        if (auto stored = state->items.find(key); stored != state->items.end()) {
          if (stored->second != item.value) {
            return absl::AlreadyExistsError("key " + std::to_string(key) + " of stream " +
                                            ShortId(stream) + " already holds a different value");
          }
          replayed[i] = true;
        } else if (state->gc_floor.has_value() && key <= *state->gc_floor) {
          // Every listener has passed it and it was collected: nothing can receive it again,
          // and what it held is gone, so a replay cannot be told from a conflict here.
          replayed[i] = true;
        }
      } else {
        if (last.has_value() && *last == std::numeric_limits<int64_t>::max()) {
          return absl::OutOfRangeError("stream " + std::string(stream) +
                                       " has used the largest key; no auto key is left");
        }
        key = last.has_value() ? std::max(NowTicks(), *last + 1) : NowTicks();
      }
      if (!replayed[i]) {
        if (!last.has_value() || *last < key) last = key;
        bytes += RetainedBytes(item.value);
        ++fresh;
      }
      written.push_back(key);
    }
    // Auto keys strictly increase, so only an explicit key can be used twice in a batch.
    if (any_explicit && written.size() > 1) {
      std::vector<int64_t> sorted = written;
      std::sort(sorted.begin(), sorted.end());
      auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) {
        return absl::AlreadyExistsError("key " + std::to_string(*dup) + " of stream " +
                                        std::string(stream) + " is used twice in the batch");
      }
    }
    if (fresh == 0) return written;  // Only replays: nothing to store, nobody to wake.
    // A completed stream still answers replays, so a producer re-run after it completed the
    // stream can run through again.
    if (state->record.completed) {
      return absl::FailedPreconditionError("stream " + std::string(stream) +
                                           " is completed; no more items can be written");
    }
    // An empty stream takes any write, so an item larger than the bound still goes through.
    if (state->record.ephemeral && !state->items.empty() &&
        (state->retained_bytes > max_retained_bytes ||
         bytes > max_retained_bytes - state->retained_bytes)) {
      return RetentionFull(stream, *state, bytes, max_retained_bytes);
    }

    // Pass 2: journal, then apply.
    if (journal_ != nullptr) {
      JournalBatch batch;
      for (size_t i = 0; i < items.size(); ++i) {
        if (replayed[i]) continue;
        batch.Put(keys::CompositeInt(keys::kItem, stream, written[i]), items[i].value);
      }
      if (last != state->last_key) {
        batch.Put(keys::Simple(keys::kStream, stream),
                  EncodeRecord(state->record, last, state->gc_floor, state->collected_count));
      }
      PERPER_RETURN_IF_ERROR(journal_->Commit(batch));
    }
    largest = std::numeric_limits<int64_t>::min();
    for (size_t i = 0; i < items.size(); ++i) {
      if (replayed[i]) continue;
      state->items.emplace(written[i], std::move(items[i].value));
      largest = std::max(largest, written[i]);
    }
    state->retained_bytes += bytes;
    state->last_key = last;
  }
  NotifyChange(Change::Kind::kStreamItemsWritten, stream, largest);
  return written;
}

absl::StatusOr<std::vector<StreamItem>> StreamsEngine::ReadItems(std::string_view stream,
                                                                 int64_t from_key, size_t max_items,
                                                                 size_t max_bytes) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  absl::ReaderMutexLock lock(&state->mu);
  if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
  std::vector<StreamItem> result;
  size_t bytes = 0;
  for (auto it = state->items.lower_bound(from_key);
       it != state->items.end() && result.size() < max_items && bytes < max_bytes; ++it) {
    result.push_back(StreamItem{it->first, it->second});
    bytes += it->second.size() + sizeof(int64_t);
  }
  return result;
}

absl::StatusOr<size_t> StreamsEngine::VisitItems(
    std::string_view stream, int64_t from_key, size_t max_items, size_t max_bytes,
    absl::FunctionRef<void(int64_t key, std::string_view value)> visit) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  absl::ReaderMutexLock lock(&state->mu);
  if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
  size_t count = 0;
  size_t bytes = 0;
  for (auto it = state->items.lower_bound(from_key);
       it != state->items.end() && count < max_items && bytes < max_bytes; ++it) {
    visit(it->first, it->second);
    ++count;
    bytes += it->second.size() + sizeof(int64_t);
  }
  return count;
}

absl::StatusOr<std::optional<int64_t>> StreamsEngine::LastKey(std::string_view stream) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  absl::ReaderMutexLock lock(&state->mu);
  if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
  if (state->items.empty()) return std::optional<int64_t>();
  return std::optional<int64_t>(state->items.rbegin()->first);
}

absl::StatusOr<StreamProgress> StreamsEngine::GetProgress(std::string_view stream) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  absl::ReaderMutexLock lock(&state->mu);
  if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
  StreamProgress progress;
  progress.last_key = state->last_key;
  progress.written_count = state->collected_count + state->items.size();
  progress.completed = state->record.completed;
  progress.error = state->record.error;
  return progress;
}

absl::Status StreamsEngine::CompleteStream(std::string_view stream,
                                           std::optional<std::string> error) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
    if (state->record.completed) {
      return absl::FailedPreconditionError("stream " + std::string(stream) +
                                           " is already completed");
    }
    StreamRecord record = state->record;
    record.completed = true;
    record.error = std::move(error);
    JournalBatch batch;
    batch.Put(keys::Simple(keys::kStream, stream),
              EncodeRecord(record, state->last_key, state->gc_floor, state->collected_count));
    PERPER_RETURN_IF_ERROR(CommitIfDurable(journal_, batch));
    state->record = std::move(record);
  }
  NotifyChange(Change::Kind::kStreamCompleted, stream);
  return absl::OkStatus();
}

absl::StatusOr<bool> StreamsEngine::DeleteStream(std::string_view stream) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return false;
  size_t freed = 0;
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return false;
    JournalBatch batch;
    batch.Delete(keys::Simple(keys::kStream, stream));
    std::string items = keys::CompositePrefix(keys::kItem, stream);
    batch.DeleteRange(items, keys::PrefixEnd(items));
    std::string listeners = keys::CompositePrefix(keys::kListener, stream);
    batch.DeleteRange(listeners, keys::PrefixEnd(listeners));
    PERPER_RETURN_IF_ERROR(CommitIfDurable(journal_, batch));
    state->deleted = true;
    freed = state->retained_bytes;
    state->items.clear();
    state->retained_bytes = 0;
    state->listeners.clear();
  }
  NoteBulkFree(freed);
  {
    absl::MutexLock lock(&registry_mu_);
    auto it = streams_.find(std::string(stream));
    if (it != streams_.end() && it->second == state) streams_.erase(it);
  }
  NotifyChange(Change::Kind::kStreamDeleted, stream);
  return true;
}

StreamsEngine::Collection StreamsEngine::PlanCollection(std::string_view stream, StreamState& data,
                                                        std::string_view name,
                                                        std::optional<int64_t> position,
                                                        JournalBatch& batch) {
  Collection collection;
  if (!data.record.ephemeral || data.items.empty()) return collection;
  // The lowest position that protects anything, with the change applied.
  std::optional<int64_t> lowest;
  auto consider = [&](int64_t p) {
    if (p == kPositionTrigger) return;  // A trigger protects nothing.
    if (!lowest.has_value() || p < *lowest) lowest = p;
  };
  for (const auto& [listener_name, listener] : data.listeners) {
    if (listener_name != name) consider(listener.position);
  }
  if (position.has_value()) consider(*position);
  if (lowest.has_value() && *lowest == kPositionNotStarted) return collection;

  std::string begin = keys::CompositePrefix(keys::kItem, stream);
  std::string end;
  if (!lowest.has_value()) {
    // No listener left, or only triggers: every item goes.
    collection.all = true;
    collection.new_floor = data.items.rbegin()->first;
    collection.count = data.items.size();
    end = keys::PrefixEnd(begin);
  } else {
    auto first_kept = data.items.lower_bound(*lowest);
    if (first_kept == data.items.begin()) return collection;
    collection.keep_from = *lowest;
    collection.new_floor = std::prev(first_kept)->first;
    // Linear in the items collected, as their deletion from the map is.
    collection.count = static_cast<uint64_t>(std::distance(data.items.begin(), first_kept));
    end = keys::CompositeInt(keys::kItem, stream, *lowest);
  }
  if (data.gc_floor.has_value())
    collection.new_floor = std::max(collection.new_floor, *data.gc_floor);
  collection.any = true;
  batch.DeleteRange(std::move(begin), std::move(end));
  batch.Put(keys::Simple(keys::kStream, stream),
            EncodeRecord(data.record, data.last_key, collection.new_floor,
                         data.collected_count + collection.count));
  return collection;
}

size_t StreamsEngine::ApplyCollection(StreamState& data, const Collection& collection) {
  if (!collection.any) return 0;
  size_t freed = 0;
  if (collection.all) {
    freed = data.retained_bytes;
    data.items.clear();
  } else {
    auto end = data.items.lower_bound(collection.keep_from);
    for (auto it = data.items.begin(); it != end; ++it) freed += RetainedBytes(it->second);
    data.items.erase(data.items.begin(), end);
  }
  data.retained_bytes -= freed;
  data.gc_floor = collection.new_floor;
  data.collected_count += collection.count;
  return freed;
}

absl::StatusOr<ListenerRecord> StreamsEngine::RegisterListener(std::string_view stream,
                                                               std::string_view name,
                                                               int64_t position, bool transient) {
  if (name.empty()) return absl::InvalidArgumentError("listener name must not be empty");
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  ListenerRecord result;
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
    auto it = state->listeners.find(std::string(name));
    if (it != state->listeners.end()) {
      return ListenerRecord{std::string(name), it->second.position, it->second.transient};
    }
    if (!transient) {
      JournalBatch batch;
      batch.Put(ListenerKey(stream, name), EncodeListener(position));
      PERPER_RETURN_IF_ERROR(CommitIfDurable(journal_, batch));
    }
    // A new listener only lowers the protected range (or adds a trigger), so nothing is
    // collected here.
    state->listeners.emplace(std::string(name), Listener{position, transient});
    result = ListenerRecord{std::string(name), position, transient};
  }
  NotifyChange(Change::Kind::kListenerChanged, stream);
  return result;
}

absl::Status StreamsEngine::MoveListener(std::string_view stream, std::string_view name,
                                         int64_t position) {
  if (name.empty()) return absl::InvalidArgumentError("listener name must not be empty");
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  size_t freed = 0;
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
    auto it = state->listeners.find(std::string(name));
    bool transient = it != state->listeners.end() && it->second.transient;
    JournalBatch batch;
    if (!transient) batch.Put(ListenerKey(stream, name), EncodeListener(position));
    Collection collection = PlanCollection(stream, *state, name, position, batch);
    PERPER_RETURN_IF_ERROR(CommitIfDurable(journal_, batch));
    if (it != state->listeners.end()) {
      it->second.position = position;
    } else {
      state->listeners.emplace(std::string(name), Listener{position, false});
    }
    freed = ApplyCollection(*state, collection);
  }
  NoteBulkFree(freed);
  NotifyChange(Change::Kind::kListenerChanged, stream);
  return absl::OkStatus();
}

absl::StatusOr<StreamsEngine::ListenerStep> StreamsEngine::StepListener(
    std::string_view stream, std::string_view name, int64_t reached_key,
    std::optional<int64_t> expected_position,
    absl::FunctionRef<absl::StatusOr<bool>(bool allowed, JournalBatch& batch)> body) {
  if (name.empty()) return absl::InvalidArgumentError("listener name must not be empty");
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  ListenerStep step;
  size_t freed = 0;
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
    auto it = state->listeners.find(std::string(name));
    const bool exists = it != state->listeners.end();
    const int64_t current = exists ? it->second.position : kPositionNotStarted;
    step.position = current;
    step.already_taken = exists && reached_key <= current;
    step.position_mismatch =
        !step.already_taken && expected_position.has_value() && *expected_position != current;
    const bool allowed = !step.already_taken && !step.position_mismatch;
    JournalBatch batch;
    Collection collection;
    if (allowed) {
      // As MoveListener: a transient listener of an open call stays transient.
      if (!exists || !it->second.transient) {
        batch.Put(ListenerKey(stream, name), EncodeListener(reached_key));
      }
      collection = PlanCollection(stream, *state, name, reached_key, batch);
    }
    PERPER_ASSIGN_OR_RETURN(bool applied, body(allowed, batch));
    if (applied) {
      PERPER_CHECK(allowed) << "a step applied that its listener did not allow";
      if (exists) {
        it->second.position = reached_key;
      } else {
        state->listeners.emplace(std::string(name), Listener{reached_key, false});
      }
      freed = ApplyCollection(*state, collection);
      step.applied = true;
      step.position = reached_key;
    }
  }
  if (step.applied) {
    NoteBulkFree(freed);
    NotifyChange(Change::Kind::kListenerChanged, stream);
  }
  return step;
}

absl::StatusOr<bool> StreamsEngine::DeleteListener(std::string_view stream, std::string_view name) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  size_t freed = 0;
  {
    absl::MutexLock lock(&state->mu);
    if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
    auto it = state->listeners.find(std::string(name));
    if (it == state->listeners.end()) return false;
    JournalBatch batch;
    if (!it->second.transient) batch.Delete(ListenerKey(stream, name));
    Collection collection = PlanCollection(stream, *state, name, std::nullopt, batch);
    PERPER_RETURN_IF_ERROR(CommitIfDurable(journal_, batch));
    state->listeners.erase(it);
    freed = ApplyCollection(*state, collection);
  }
  NoteBulkFree(freed);
  NotifyChange(Change::Kind::kListenerChanged, stream);
  return true;
}

absl::StatusOr<std::vector<ListenerRecord>> StreamsEngine::ListListeners(std::string_view stream) {
  std::shared_ptr<StreamState> state = Find(stream);
  if (state == nullptr) return absl::NotFoundError(StreamNotFound(stream));
  absl::ReaderMutexLock lock(&state->mu);
  if (state->deleted) return absl::NotFoundError(StreamNotFound(stream));
  std::vector<ListenerRecord> result;
  result.reserve(state->listeners.size());
  for (const auto& [name, listener] : state->listeners) {
    result.push_back(ListenerRecord{name, listener.position, listener.transient});
  }
  return result;
}

absl::StatusOr<std::vector<StreamSummary>> StreamsEngine::ListStreams(std::string_view prefix,
                                                                      size_t limit) {
  std::vector<std::shared_ptr<StreamState>> found;
  {
    absl::ReaderMutexLock lock(&registry_mu_);
    for (auto it = streams_.lower_bound(std::string(prefix));
         it != streams_.end() && found.size() < limit &&
         std::string_view(it->first).substr(0, prefix.size()) == prefix;
         ++it) {
      found.push_back(it->second);
    }
  }
  std::vector<StreamSummary> result;
  result.reserve(found.size());
  for (const auto& state : found) {
    absl::ReaderMutexLock lock(&state->mu);
    if (state->deleted) continue;
    StreamSummary summary;
    summary.record = state->record;
    summary.item_count = state->items.size();
    summary.written_count = state->collected_count + state->items.size();
    summary.retained_bytes = state->retained_bytes;
    if (!state->items.empty()) {
      summary.first_key = state->items.begin()->first;
      summary.last_key = state->items.rbegin()->first;
    }
    for (const auto& [name, listener] : state->listeners) {
      summary.listeners.push_back(ListenerRecord{name, listener.position, listener.transient});
    }
    result.push_back(std::move(summary));
  }
  return result;
}

}  // namespace perper::storage
