// SPDX-License-Identifier: MIT
// Runs a test body inside an agent handler, against a Fabric.
//
//   ASSERT_TRUE(DriveAgent(fabric.address(), [&](perper::Context& ctx) -> perper::Task<void> {
//     sum = co_await ctx.agent("Calculator", "calc-1").call<int64_t>("Add", 1, 2);
//   }));
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "perper/agent/agent.h"

namespace perper::testing {

// Runs `body(ctx)` as the Deploy of a driver agent and waits (up to `timeout`) for it to return.
// The runtime's exit code goes to `exit_code` when given, else it must be 0.
template <typename Body>
bool DriveAgent(const std::string& endpoint, Body body,
                std::chrono::seconds timeout = std::chrono::seconds(30), int* exit_code = nullptr) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  perper::Agent driver("Driver");
  // The lambda lives in `driver` until the runtime stops, so its captures outlive the handler.
  driver.on_deploy([&body, done](perper::Context& ctx) -> perper::Task<void> {
    co_await body(ctx);
    done->set_value();
  });
  perper::RunOptions options;
  options.fabric_endpoint = endpoint;
  perper::Runtime runtime(driver, options);
  EXPECT_TRUE(runtime.Start().ok());
  bool ok = finished.wait_for(timeout) == std::future_status::ready;
  runtime.RequestStop();
  int code = runtime.Wait();
  if (exit_code != nullptr) {
    *exit_code = code;
  } else {
    EXPECT_EQ(code, 0);
  }
  return ok;
}

}  // namespace perper::testing
