// SPDX-License-Identifier: MIT
// Propagation and invariant macros for absl::Status code.
//
//   PERPER_RETURN_IF_ERROR(store->Write(x));
//   PERPER_ASSIGN_OR_RETURN(auto record, store->Get(id));
//   PERPER_CHECK(index < size) << "index " << index;   // broken invariant: crash loudly
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PERPER_STATUS_CONCAT_INNER(a, b) a##b
#define PERPER_STATUS_CONCAT(a, b) PERPER_STATUS_CONCAT_INNER(a, b)

#define PERPER_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status perper_status_ = (expr);          \
    if (!perper_status_.ok()) return perper_status_; \
  } while (false)

#define PERPER_ASSIGN_OR_RETURN(lhs, expr) \
  PERPER_ASSIGN_OR_RETURN_IMPL(PERPER_STATUS_CONCAT(perper_statusor_, __LINE__), lhs, expr)

#define PERPER_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace perper::internal {

// Streams a message, then aborts the process when destroyed.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": check failed: " << condition << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::fprintf(stderr, "%s\n", stream_.str().c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace perper::internal

// Aborts with a message when `condition` is false. For broken invariants only, never for input.
#define PERPER_CHECK(condition) \
  if (condition) {              \
  } else                        \
    ::perper::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()
