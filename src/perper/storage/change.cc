// SPDX-License-Identifier: MIT
#include "perper/storage/change.h"

namespace perper::storage {

const char* ChangeKindName(Change::Kind kind) {
  switch (kind) {
    case Change::Kind::kExecutionCreated:
      return "execution-created";
    case Change::Kind::kExecutionCompleted:
      return "execution-completed";
    case Change::Kind::kExecutionDeleted:
      return "execution-deleted";
    case Change::Kind::kReservationReleased:
      return "reservation-released";
    case Change::Kind::kStreamCreated:
      return "stream-created";
    case Change::Kind::kStreamItemsWritten:
      return "stream-items-written";
    case Change::Kind::kStreamCompleted:
      return "stream-completed";
    case Change::Kind::kStreamDeleted:
      return "stream-deleted";
    case Change::Kind::kListenerChanged:
      return "listener-changed";
    case Change::Kind::kResync:
      return "resync";
  }
  return "unknown";
}

}  // namespace perper::storage
