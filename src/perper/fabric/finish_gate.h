// SPDX-License-Identifier: MIT
#pragma once

#include <optional>
#include <utility>

#include <grpcpp/support/status.h>

#include "perper/common/status_macros.h"

namespace perper::fabric {

// FinishGate: when a server reactor that writes may call Finish. Finish must be called exactly
// once, and never between the decision to write and that write's OnWriteDone: the decision is
// taken under the reactor's mutex but StartWrite runs after the mutex is released, and a
// StartWrite after Finish would have gRPC end the call twice. So a finish decided while a write
// is in flight is kept, and handed back when the write is done.
//
// Thread safety: none of its own. The reactor calls it under its mutex and calls StartWrite or
// Finish with the answers after releasing that mutex.
class FinishGate {
 public:
  // The call is finished, or will be once the write in flight is done: start nothing new.
  bool finished() const { return finished_; }
  bool writing() const { return writing_; }

  // The reactor decided to StartWrite. REQUIRES: !finished() && !writing().
  void StartingWrite() {
    PERPER_CHECK(!finished_ && !writing_) << "a write started after the finish or during a write";
    writing_ = true;
  }

  // Returns the status to Finish with now, or nullopt when the call is already finished or its
  // finish waits for the write in flight (WriteDone returns it then).
  std::optional<grpc::Status> Finish(grpc::Status status) {
    if (finished_) return std::nullopt;
    finished_ = true;
    if (writing_) {
      deferred_ = std::move(status);
      return std::nullopt;
    }
    return status;
  }

  // The write in flight is done (OnWriteDone). Returns the finish that waited for it, if any.
  std::optional<grpc::Status> WriteDone() {
    writing_ = false;
    std::optional<grpc::Status> deferred;
    deferred.swap(deferred_);
    return deferred;
  }

 private:
  bool finished_ = false;
  bool writing_ = false;
  std::optional<grpc::Status> deferred_;
};

}  // namespace perper::fabric
