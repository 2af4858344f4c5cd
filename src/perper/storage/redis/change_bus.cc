// SPDX-License-Identifier: MIT
#include "perper/storage/redis/change_bus.h"

namespace perper::storage::redis {

void RedisNotifier::Notify(const Change& change) const {
  NotifyLocal(change);
  if (ChangeBus* bus = bus_.load(std::memory_order_acquire)) bus->Publish(change);
}

ChangeBus::ChangeBus(ClientPool& pool, RedisNotifier& local) : pool_(pool), local_(local) {}
ChangeBus::~ChangeBus() = default;
absl::Status ChangeBus::Start() { return absl::OkStatus(); }
void ChangeBus::Publish(const Change& change) {}

}  // namespace perper::storage::redis
