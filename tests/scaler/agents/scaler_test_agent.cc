// SPDX-License-Identifier: MIT
// An agent program for the scaler tests, run by `perper up`:
//
//   scaler_test_agent worker [NAME]   agent NAME (default Worker): WhoAmI (the instance ID),
//                                     Pid (this process's PID), Hold (waits until cancelled)
//   scaler_test_agent usage           agent Usage, whose Deploy runs $TEST_SCENARIO:
//     instances: starts two Worker instances, routes 127 calls between them, checks each reply
//                came from the right instance, destroys both, checks their processes are gone,
//                prints "Test passed" and exits 0;
//     restart:   starts one Worker, prints "worker pid N", calls Pid until another process
//                answers (the test kills N), prints "worker restarted" and "Test passed";
//     durable:   counts its runs in its own dictionary (key "deploy_runs"), prints
//                "Deploy run N", starts two Worker instances, prints "Deployed" and keeps
//                serving (the application runs until SIGTERM). With DURABLE_HOLD_AFTER_FIRST
//                set, it prints "Holding after the first worker" after the first one and waits
//                to be killed (an interrupted Deploy).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include "perper/agent/agent.h"

namespace {

perper::Task<void> Pause(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(duration);
  co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
}

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

perper::Task<int> Instances(perper::Context& ctx) {
  auto first = co_await ctx.start_agent("Worker");
  auto second = co_await ctx.start_agent("Worker");
  if (!first.ok() || !second.ok()) {
    Say("start_agent failed: " + (first.ok() ? second.status() : first.status()).ToString());
    co_return 1;
  }
  Say("Started both workers");
  auto pid1 = co_await first->call<int64_t>("Pid");
  auto pid2 = co_await second->call<int64_t>("Pid");
  if (!pid1.ok() || !pid2.ok() || *pid1 == *pid2) {
    Say("Pid calls failed or answered by one process");
    co_return 1;
  }
  for (int i = 0; i < 127; ++i) {
    const perper::Instance& target = ((i ^ (i << 2)) & 8) ? *second : *first;
    auto who = co_await target.call<std::string>("WhoAmI");
    if (!who.ok() || *who != target.model().instance()) {
      Say("call " + std::to_string(i) + " answered by the wrong instance");
      co_return 1;
    }
  }
  Say("Test passed");
  if (!(co_await first->destroy()).ok() || !(co_await second->destroy()).ok()) {
    Say("destroy failed");
    co_return 1;
  }
  Say("Both agents destroyed");
  for (int i = 0; i < 400; ++i) {
    if (kill(static_cast<pid_t>(*pid1), 0) != 0 && kill(static_cast<pid_t>(*pid2), 0) != 0) {
      Say("Both worker processes stopped");
      co_return 0;
    }
    co_await Pause(std::chrono::milliseconds(25));
  }
  Say("worker processes still running after destroy");
  co_return 1;
}

perper::Task<int> Restart(perper::Context& ctx) {
  auto worker = co_await ctx.start_agent("Worker");
  if (!worker.ok()) co_return 1;
  auto first = co_await worker->call<int64_t>("Pid");
  if (!first.ok()) co_return 1;
  Say("worker pid " + std::to_string(*first));
  for (int i = 0; i < 800; ++i) {
    auto pid = co_await worker->call<int64_t>("Pid");
    if (pid.ok() && *pid != *first) {
      Say("worker restarted");
      Say("Test passed");
      (void)co_await worker->destroy();
      co_return 0;
    }
    co_await Pause(std::chrono::milliseconds(25));
  }
  Say("worker was not restarted");
  co_return 1;
}

perper::Task<int> Durable(perper::Context& ctx) {
  perper::Dictionary state = ctx.state();
  auto runs = co_await state.get<int64_t>("deploy_runs");
  if (!runs.ok()) {
    Say("reading deploy_runs failed: " + runs.status().ToString());
    co_return 1;
  }
  int64_t run = runs->value_or(0) + 1;
  if (absl::Status s = co_await state.set("deploy_runs", run); !s.ok()) {
    Say("writing deploy_runs failed: " + s.ToString());
    co_return 1;
  }
  Say("Deploy run " + std::to_string(run));
  for (int i = 0; i < 2; ++i) {
    auto worker = co_await ctx.start_agent("Worker");
    if (!worker.ok()) {
      Say("start_agent failed: " + worker.status().ToString());
      co_return 1;
    }
    if (i == 0 && std::getenv("DURABLE_HOLD_AFTER_FIRST") != nullptr) {
      Say("Holding after the first worker");
      while (true) co_await Pause(std::chrono::milliseconds(100));
    }
  }
  Say("Deployed");
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string role = argc > 1 ? argv[1] : "";
  if (role == "worker") {
    perper::Agent app(argc > 2 ? argv[2] : "Worker");
    app.on("WhoAmI", [](perper::Context& ctx) -> perper::Task<std::string> {
      co_return ctx.instance().instance();
    });
    app.on("Pid", [](perper::Context& ctx) -> perper::Task<int64_t> {
      co_return static_cast<int64_t>(getpid());
    });
    app.on("Hold", [](perper::Context& ctx) -> perper::Task<void> {
      for (int i = 0; i < 1200 && !ctx.cancelled(); ++i) {
        co_await Pause(std::chrono::milliseconds(25));
      }
    });
    return perper::Run(app);
  }
  if (role == "usage") {
    perper::Agent app("Usage");
    app.on_deploy([](perper::Context& ctx) -> perper::Task<void> {
      const char* scenario = std::getenv("TEST_SCENARIO");
      std::string name = scenario != nullptr ? scenario : "";
      if (name == "durable") {
        int code = co_await Durable(ctx);
        if (code != 0) ctx.stop_process(code);
        co_return;
      }
      int code = 2;
      if (name == "instances") {
        code = co_await Instances(ctx);
      } else if (name == "restart") {
        code = co_await Restart(ctx);
      }
      ctx.stop_process(code);
    });
    return perper::Run(app);
  }
  std::fprintf(stderr, "usage: scaler_test_agent worker [NAME] | usage\n");
  return 2;
}
