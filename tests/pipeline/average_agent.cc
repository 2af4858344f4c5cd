// SPDX-License-Identifier: MIT
// Average: consumes a stream of integer readings exactly once, across restarts (agent
// "Average").
//
// Average(stream) reads the stream with the named listener "average" and keeps {count, total}
// in its instance's dictionary. Each item is accounted for by one Stream::step: the new count
// and total and the listener's move past the item are one atomic Fabric operation. So whenever
// the process dies, the state and the listener agree: the next process (the Fabric hands it the
// same execution) resumes at the listener's position, and the item there, delivered again, is
// refused by its step (already_taken). Returns {count, average} once the stream completes.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./average_agent
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>

#include "perper/agent/agent.h"

namespace {

constexpr char kListener[] = "average";

perper::Task<absl::StatusOr<std::tuple<int64_t, double>>> Average(
    perper::Context& ctx, perper::grpc2::model::PerperStream model) {
  perper::Stream stream = ctx.stream(model);
  perper::Dictionary state = ctx.state();
  perper::StreamReader<int64_t> reader = stream.listen<int64_t>(kListener);
  while (true) {
    absl::StatusOr<std::optional<perper::StreamItem<int64_t>>> item = co_await reader.next_item();
    if (!item.ok()) {
      co_return item.status();
    }
    if (!item->has_value()) {
      break;  // the stream completed
    }
    absl::StatusOr<std::optional<int64_t>> total = co_await state.get<int64_t>("total");
    if (!total.ok()) {
      co_return total.status();
    }
    absl::StatusOr<std::optional<int64_t>> count = co_await state.get<int64_t>("count");
    if (!count.ok()) {
      co_return count.status();
    }
    perper::Changes changes = state.changes();
    changes.set("total", total->value_or(0) + (*item)->value).set("count", count->value_or(0) + 1);
    // Not applied (already_taken) when an earlier process took this step before it died.
    absl::StatusOr<perper::StepResult> step =
        co_await stream.step(kListener, (*item)->key, changes);
    if (!step.ok()) {
      co_return step.status();
    }
  }
  absl::StatusOr<std::optional<int64_t>> total = co_await state.get<int64_t>("total");
  absl::StatusOr<std::optional<int64_t>> count = co_await state.get<int64_t>("count");
  if (!total.ok()) {
    co_return total.status();
  }
  if (!count.ok()) {
    co_return count.status();
  }
  if (count->value_or(0) == 0) {
    co_return std::tuple<int64_t, double>(0, 0.0);
  }
  co_return std::tuple<int64_t, double>(
      **count, static_cast<double>(**total) / static_cast<double>(**count));
}

}  // namespace

int main() {
  perper::Agent app("Average");
  app.on("Average", Average);
  return perper::Run(app);
}
