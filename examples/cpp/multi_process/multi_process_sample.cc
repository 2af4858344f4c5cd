// SPDX-License-Identifier: MIT
// Multi-process: run several copies of this program. Each serves `GetProcessName` (at most 5 at
// once, each taking 10-100 ms) and its Deploy makes calls from 6 parallel loops; the Fabric's
// reservations spread the calls over every process. A process that receives 15 replies in a
// row without serving a call itself prints "Stuck?".
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./multi_process_sample &   # two or more times
//   4b1f... Got response from Name: 9c0e...
//   ...
//   4b1f... Done: 120 responses from 2 processes
//
// PERPER_SAMPLE_CALLS sets the calls per loop (default 20). After its calls, a process keeps
// serving the others until it is stopped (SIGINT/SIGTERM).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "perper/agent/agent.h"

namespace {

const std::string& ProcessName() {
  static const std::string name = [] {
    std::random_device random;
    return absl::StrFormat("%08x", random());
  }();
  return name;
}

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// Replies received since this process last served a call.
std::atomic<int> replies_since_served{0};

struct Seen {
  std::mutex mu;
  std::set<std::string> processes;
  int responses = 0;
};

perper::Task<void> CallLoop(int calls, Seen& seen) {
  for (int i = 0; i < calls; ++i) {
    perper::Result<std::string> name = co_await perper::call<std::string>("GetProcessName");
    if (!name.ok()) {
      Say(ProcessName() + " call failed: " + name.status().ToString());
      continue;
    }
    Say(ProcessName() + " Got response from " + *name);
    if (++replies_since_served >= 15) {
      Say("Stuck?");
    }
    std::lock_guard lock(seen.mu);
    seen.processes.insert(*name);
    ++seen.responses;
  }
}

}  // namespace

int main() {
  int calls = 20;
  if (const char* value = std::getenv("PERPER_SAMPLE_CALLS"); value != nullptr) {
    if (!absl::SimpleAtoi(value, &calls) || calls < 0) {
      std::fprintf(stderr, "PERPER_SAMPLE_CALLS must be a non-negative integer\n");
      return 2;
    }
  }
  perper::Agent app("MultiProcessSample");
  app.on("GetProcessName", []() -> perper::Task<std::string> {
    replies_since_served = 0;
    thread_local std::mt19937 random(std::random_device{}());
    asio::steady_timer work(
        co_await asio::this_coro::executor,
        std::chrono::milliseconds(std::uniform_int_distribution(10, 100)(random)));
    co_await work.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    co_return "Name: " + ProcessName();
  });
  app.on_deploy([calls]() -> perper::Task<void> {
    Say(ProcessName() + " serving");
    Seen seen;
    std::vector<perper::Task<void>> loops;
    for (int i = 0; i < 6; ++i) {
      loops.push_back(CallLoop(calls, seen));
    }
    co_await perper::WhenAll(std::move(loops));
    Say(absl::StrFormat("%s Done: %d responses from %d processes", ProcessName(), seen.responses,
                        seen.processes.size()));
  });

  auto options = perper::RunOptions::FromEnvironment(app.name());
  if (!options.ok()) {
    std::fprintf(stderr, "%s\n", options.status().ToString().c_str());
    return 2;
  }
  options->concurrency = 5;
  return perper::Run(app, *options);
}
