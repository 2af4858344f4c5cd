// SPDX-License-Identifier: MIT
// Multi-agent running sums: three agents in one process.
//
// - GeneratorAgent: its Start starts the persistent stream Generate, which writes 0 .. n-1
//   (key i, value i), keeping the next i in the instance's state.
// - ProcessorAgent: its Start starts the persistent stream Process, which reads the generator's
//   stream with the named listener "input" and writes running sums (key i, value 0+1+..+i),
//   keeping its progress in state.
// - MultiAgentSample: Deploy starts both (once: the processor's stream is kept in Deploy's
//   state) and prints the sums, read with the named listener "processor".
//
// Everything that must survive is in the Fabric, so with a durable Fabric the program can be
// killed (with its Fabric) and started again: the output continues where it stopped, an item
// at the boundary possibly printed twice, none skipped.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./multi_agent
//   0
//   1
//   3
//   ...
//   4950
//
// MULTI_AGENT_DELAY_MS sets the pause between generated numbers (default 50).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "perper/agent/agent.h"

namespace {

using perper::Task;
using perper::grpc2::model::PerperStream;

constexpr int64_t kCount = 100;

Task<void> Pause() {
  const char* value = std::getenv("MULTI_AGENT_DELAY_MS");
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           std::chrono::milliseconds(value != nullptr ? std::atoi(value) : 50));
  co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
}

// Writes `value` under `key`; a key already written (before a restart) counts as written.
Task<absl::Status> WriteOnce(const perper::Stream& stream, int64_t key, int64_t value) {
  absl::Status written = co_await stream.write(key, value);
  co_return absl::IsAlreadyExists(written) ? absl::OkStatus() : written;
}

// Starts the stream delegate `delegate` of the current instance and returns its reference.
template <typename... Args>
Task<absl::StatusOr<PerperStream>> StartOwnStream(std::string delegate, Args... args) {
  absl::StatusOr<perper::Stream> stream =
      co_await perper::context().stream(std::move(delegate), std::move(args)...);
  if (!stream.ok()) {
    co_return stream.status();
  }
  co_return stream->model();
}

perper::Agent Generator() {
  perper::Agent app("GeneratorAgent");
  app.on("Start", [](int64_t count) -> Task<absl::StatusOr<PerperStream>> {
    co_return co_await StartOwnStream("Generate", count);
  });
  app.stream(
      "Generate",
      [](perper::StreamWriter<int64_t>& out, int64_t count) -> Task<absl::Status> {
        absl::StatusOr<std::optional<int64_t>> saved = co_await perper::state().get<int64_t>("i");
        if (!saved.ok()) {
          co_return saved.status();
        }
        for (int64_t i = saved->value_or(0); i < count; ++i) {
          co_await Pause();
          if (absl::Status status = co_await WriteOnce(out.stream(), i, i); !status.ok()) {
            co_return status;
          }
          if (absl::Status status = co_await perper::state().set("i", i + 1); !status.ok()) {
            co_return status;
          }
        }
        co_return absl::OkStatus();
      },
      perper::StreamOptions{.ephemeral = false});
  return app;
}

perper::Agent Processor() {
  perper::Agent app("ProcessorAgent");
  app.on("Start", [](PerperStream input) -> Task<absl::StatusOr<PerperStream>> {
    co_return co_await StartOwnStream("Process", input);
  });
  app.stream(
      "Process",
      [](perper::StreamWriter<int64_t>& out, PerperStream input) -> Task<absl::Status> {
        // The progress is one value, "<last key> <accumulator>", so it is saved atomically.
        absl::StatusOr<std::optional<std::string>> saved =
            co_await perper::state().get<std::string>("progress");
        if (!saved.ok()) {
          co_return saved.status();
        }
        int64_t last_key = -1;
        int64_t accumulator = 0;
        if (saved->has_value()) {
          std::pair<std::string, std::string> parts = absl::StrSplit(**saved, ' ');
          if (!absl::SimpleAtoi(parts.first, &last_key) ||
              !absl::SimpleAtoi(parts.second, &accumulator)) {
            co_return absl::DataLossError("unreadable progress: " + **saved);
          }
        }
        perper::StreamReader<int64_t> reader =
            perper::context().stream(input).listen<int64_t>("input");
        while (true) {
          absl::StatusOr<std::optional<perper::StreamItem<int64_t>>> item =
              co_await reader.next_item();
          if (!item.ok()) {
            co_return item.status();
          }
          if (!item->has_value()) {
            co_return absl::OkStatus();  // the generator completed its stream
          }
          if ((*item)->key <= last_key) {
            continue;  // processed before a restart
          }
          accumulator += (*item)->value;
          last_key = (*item)->key;
          if (absl::Status status = co_await WriteOnce(out.stream(), last_key, accumulator);
              !status.ok()) {
            co_return status;
          }
          if (absl::Status status = co_await perper::state().set(
                  "progress", absl::StrCat(last_key, " ", accumulator));
              !status.ok()) {
            co_return status;
          }
        }
      },
      perper::StreamOptions{.ephemeral = false});
  return app;
}

Task<int> PrintSums() {
  perper::Dictionary state = perper::state();
  absl::StatusOr<std::optional<PerperStream>> saved = co_await state.get<PerperStream>("processor");
  if (!saved.ok()) {
    std::fprintf(stderr, "reading state failed: %s\n", saved.status().ToString().c_str());
    co_return 1;
  }
  PerperStream processor;
  if (saved->has_value()) {
    processor = **saved;
  } else {
    auto generator = co_await perper::start_agent<PerperStream>("GeneratorAgent", kCount);
    if (!generator.ok()) {
      std::fprintf(stderr, "%s\n", generator.status().ToString().c_str());
      co_return 1;
    }
    auto started = co_await perper::start_agent<PerperStream>("ProcessorAgent", generator->second);
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      co_return 1;
    }
    processor = started->second;
    if (absl::Status kept = co_await state.set("processor", processor); !kept.ok()) {
      std::fprintf(stderr, "%s\n", kept.ToString().c_str());
      co_return 1;
    }
  }
  perper::StreamReader<int64_t> sums =
      perper::context().stream(processor).listen<int64_t>("processor");
  while (true) {
    absl::StatusOr<std::optional<int64_t>> sum = co_await sums.next();
    if (!sum.ok()) {
      std::fprintf(stderr, "reading sums failed: %s\n", sum.status().ToString().c_str());
      co_return 1;
    }
    if (!sum->has_value()) {
      co_return 0;
    }
    std::printf("%lld\n", static_cast<long long>(**sum));
    std::fflush(stdout);
  }
}

}  // namespace

int main() {
  perper::Agent generator = Generator();
  perper::Agent processor = Processor();
  perper::Agent sample("MultiAgentSample");
  sample.on_deploy([]() -> Task<void> { perper::stop_process(co_await PrintSums()); });

  absl::StatusOr<perper::RunOptions> options = perper::RunOptions::FromEnvironment(sample.name());
  if (!options.ok()) {
    std::fprintf(stderr, "%s\n", options.status().ToString().c_str());
    return 2;
  }
  // Three agents, one runtime each; the sample's handles SIGINT/SIGTERM and decides the exit.
  perper::Runtime generator_runtime(generator, *options);
  perper::Runtime processor_runtime(processor, *options);
  perper::RunOptions sample_options = *options;
  sample_options.handle_signals = true;
  perper::Runtime sample_runtime(sample, sample_options);
  for (perper::Runtime* runtime : {&generator_runtime, &processor_runtime, &sample_runtime}) {
    if (absl::Status started = runtime->Start(); !started.ok()) {
      std::fprintf(stderr, "%s\n", started.ToString().c_str());
      return 2;
    }
  }
  int code = sample_runtime.Wait();
  generator_runtime.RequestStop();
  processor_runtime.RequestStop();
  generator_runtime.Wait();
  processor_runtime.Wait();
  return code;
}
