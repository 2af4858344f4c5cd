// SPDX-License-Identifier: MIT
// The agent `container-sample`: each instance picks a random ID in its Start and answers Test
// with it, so a caller can tell which instance served a call. Run one process per instance (the
// scaler's per-instance mode sets X_PERPER_INSTANCE) or one process for all of them.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./container_sample
#include <cstdio>
#include <random>
#include <string>

#include "absl/strings/str_format.h"

#include "perper/agent/agent.h"

namespace {

std::string RandomId() {
  std::random_device random;
  return absl::StrFormat("%08x%08x", random(), random());
}

}  // namespace

int main() {
  perper::Agent app("container-sample");

  // The constructor of an instance: its ID lives in the instance's state.
  app.on("Start", []() -> perper::Task<absl::Status> {
    co_return co_await perper::state().set("id", RandomId());
  });

  app.on("Test", []() -> perper::Task<absl::StatusOr<std::string>> {
    absl::StatusOr<std::optional<std::string>> id = co_await perper::state().get<std::string>("id");
    if (!id.ok()) {
      co_return id.status();
    }
    if (!id->has_value()) {
      co_return absl::FailedPreconditionError("Test called before Start");
    }
    co_return **id;
  });

  // The destructor: forget the ID.
  app.on("Stop", []() -> perper::Task<absl::Status> {
    absl::StatusOr<bool> removed = co_await perper::state().remove("id");
    co_return removed.status();
  });

  return perper::Run(app);
}
