// SPDX-License-Identifier: MIT
// The IDs the SDK makes (calls, instances, streams): derived inside an execution, so that a
// re-run of the execution makes the same ones; random elsewhere. Not part of the public API.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace perper::internal {

// The UUID text (8-4-4-4-12 lowercase hex) of the first 16 bytes of
// SHA-256("{execution}\n{n}"): the n-th ID (from 1) made by a run of `execution`. Every Perper
// SDK derives IDs this way.
std::string DerivedUuid(std::string_view execution, uint64_t n);

// A random UUID in its text form.
std::string NewUuid();

// "{prefix}-{uuid}" for something the running handler makes: the next derived UUID of its
// execution when it runs inside one whose IDs are derived (see ExecutionState::derive_ids),
// else random. Uses the ambient context (the handler's executor), so it must be called from the
// handler's coroutine, or any thread for a random ID.
// `derived`, when given, is told which.
std::string NewId(std::string_view prefix, bool* derived = nullptr);

}  // namespace perper::internal
