// SPDX-License-Identifier: MIT
// What every Fabric service is built with, and the request checks they share.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include <google/protobuf/any.pb.h>
#include <google/protobuf/message.h>

#include "perper/fabric/agent_listeners.h"
#include "perper/fabric/change_hub.h"
#include "perper/fabric/open_calls.h"
#include "perper/fabric/write_pool.h"
#include "perper/storage/store.h"

namespace perper::fabric {

// The bounds every request is checked against (docs/limits.md lists them with what a client
// gets past each).
struct FabricLimits {
  // The largest value (argument, result, item, state value) accepted, in bytes of its serialized
  // Any. The default leaves room for a 16 MiB payload with its type URL and wrapper.
  size_t max_value_bytes = 17 * 1024 * 1024;
  // The longest ID or name (execution, instance, agent, delegate, stream, listener, workgroup,
  // dictionary, list, type URL, filter) accepted, in bytes. Past it: INVALID_ARGUMENT.
  size_t max_id_bytes = 1024;
  // The longest free text (an execution's or a stream's error message) accepted, in bytes.
  // Past it: RESOURCE_EXHAUSTED.
  size_t max_error_bytes = 64 * 1024;
  // How long a bidirectional call (ListenAndReserve, ListenItemsAndMove) may go without its
  // first message before it ends with DEADLINE_EXCEEDED.
  absl::Duration first_message_timeout = absl::Seconds(10);
  // How many long-lived calls (listen, reservation, and waiting calls) one Fabric process holds
  // at once. Past it a new one gets RESOURCE_EXHAUSTED (open_calls.h).
  size_t max_open_calls = 50000;
  // How often the Fabric pings a connection, and how long it waits for the answer before it
  // drops the connection: a client whose host died or whose network broke is noticed within
  // their sum, and its calls end (releasing reservations and transient listeners).
  absl::Duration keepalive_time = absl::Seconds(20);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // What an ephemeral stream may retain (items that not every listener has passed), in bytes
  // as storage::RetainedBytes counts them. A write past it is held until a listener moves.
  size_t max_stream_retained_bytes = 64 * 1024 * 1024;
  // How long such a write is held before it is answered RESOURCE_EXHAUSTED (less when the
  // client's deadline comes first).
  std::chrono::milliseconds stream_write_wait{30'000};
};

// Borrowed pointers; the FabricServer owns what they point to and outlives its services.
struct ServiceContext {
  storage::Store* store = nullptr;
  ChangeHub* hub = nullptr;
  FabricLimits limits;
  // Where store writes run (RunWrite in unary.h): set by FabricServer exactly when the store
  // declares that its writes wait (Store::WritesWait); null runs them inline on gRPC's thread
  // (the memory backend, whose writes take microseconds).
  WritePool* writes = nullptr;
  // The long-lived calls held now; every such call takes a slot for its life.
  OpenCalls* open_calls = nullptr;
  // The open Listen and ListenAndReserve calls by agent: which agents some process serves.
  AgentListeners* listeners = nullptr;
};

// INVALID_ARGUMENT "<what> must not be empty" when `value` is empty.
inline absl::Status RequireNonEmpty(std::string_view value, std::string_view what) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(what) + " must not be empty");
}

// RESOURCE_EXHAUSTED naming the limit when `value` is larger than the limit.
inline absl::Status CheckValueSize(const google::protobuf::Any& value, const FabricLimits& limits,
                                   std::string_view what) {
  size_t size = value.ByteSizeLong();
  if (size <= limits.max_value_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      std::string(what) + " is " + std::to_string(size) + " bytes, over the limit of " +
      std::to_string(limits.max_value_bytes) + " bytes (--max-value-size)");
}

// Checks every string field of `request` (and of the messages in it, recursively; values in an
// Any are CheckValueSize's) against `limits`: free texts (PerperError.message, sql) against
// max_error_bytes, RESOURCE_EXHAUSTED; every other string, an ID or name, against max_id_bytes,
// INVALID_ARGUMENT. The message names the field's path, e.g. "completions[2].execution.execution".
absl::Status CheckRequestStrings(const google::protobuf::Message& request,
                                 const FabricLimits& limits);

}  // namespace perper::fabric
