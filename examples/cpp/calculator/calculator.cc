// SPDX-License-Identifier: MIT
// A calculator agent serving calls until SIGINT or SIGTERM: one result, several results, an
// error as a status, an error as an exception, and a call back through the Fabric.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./calculator
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"

#include "perper/agent/agent.h"

int main() {
  perper::Agent app("Calculator");

  app.on("Add", [](perper::Context& ctx, int64_t a, int64_t b) -> perper::Task<int64_t> {
    co_return a + b;
  });

  // Several results: the caller reads them as a std::tuple.
  app.on("DivMod",
         [](perper::Context& ctx, int64_t a,
            int64_t b) -> perper::Task<absl::StatusOr<std::tuple<int64_t, int64_t>>> {
           if (b == 0) {
             co_return absl::InvalidArgumentError("division by zero");
           }
           co_return std::make_tuple(a / b, a % b);
         });

  // A thrown exception fails the execution with its message.
  app.on("Sqrt", [](perper::Context& ctx, double x) -> perper::Task<double> {
    if (x < 0) {
      throw std::domain_error("square root of a negative number");
    }
    double r = x;
    for (int i = 0; i < 50; ++i) {
      r = (r + x / r) / 2;
    }
    co_return r;
  });

  // Calls Add on this same instance, through the Fabric.
  app.on("Triple", [](perper::Context& ctx, int64_t x) -> perper::Task<absl::StatusOr<int64_t>> {
    perper::Result<int64_t> twice = co_await ctx.call<int64_t>("Add", x, x);
    if (!twice.ok()) {
      co_return twice.status();
    }
    co_return co_await ctx.call<int64_t>("Add", *twice, x);
  });

  // Which instance and process answered.
  app.on("WhoAmI", [](perper::Context& ctx) -> perper::Task<std::string> {
    co_return ctx.instance().instance();
  });

  return perper::Run(app);
}
