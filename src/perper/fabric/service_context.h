// SPDX-License-Identifier: MIT
// What every Fabric service is built with, and the request checks they share.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include <google/protobuf/any.pb.h>

#include "absl/status/status.h"
#include "perper/fabric/change_hub.h"
#include "perper/fabric/write_pool.h"
#include "perper/storage/store.h"

namespace perper::fabric {

struct FabricLimits {
  // The largest value (argument, result, item, state value) accepted, in bytes of its serialized
  // Any. The default leaves room for a 16 MiB payload with its type URL and wrapper.
  size_t max_value_bytes = 17 * 1024 * 1024;
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
  // Where unary handlers run their store writes: null runs them inline on gRPC's thread (the
  // memory backend, whose writes take microseconds); set for a durable backend (write_pool.h).
  WritePool* writes = nullptr;
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
  return absl::ResourceExhaustedError(std::string(what) + " is " + std::to_string(size) +
                                      " bytes, over the limit of " +
                                      std::to_string(limits.max_value_bytes) +
                                      " bytes (--max-value-size)");
}

}  // namespace perper::fabric
