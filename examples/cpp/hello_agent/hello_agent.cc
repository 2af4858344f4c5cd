// SPDX-License-Identifier: MIT
// Hello world: an agent that calls one of its own delegates through the Fabric, prints the
// answer and exits.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./hello_agent
//   Hello, world!
#include <cstdio>
#include <string>

#include "perper/agent/agent.h"

int main() {
  perper::Agent app("Hello");

  // A delegate: called through the Fabric, with its arguments and result as protobuf values.
  app.on("Greet",
         [](std::string name) -> perper::Task<std::string> { co_return "Hello, " + name + "!"; });

  // Deploy runs once when the process starts.
  app.on_deploy([]() -> perper::Task<void> {
    perper::Result<std::string> greeting = co_await perper::call<std::string>("Greet", "world");
    if (!greeting.ok()) {
      std::fprintf(stderr, "Greet failed: %s\n", greeting.status().ToString().c_str());
      perper::stop_process(1);
      co_return;
    }
    std::printf("%s\n", greeting->c_str());
    std::fflush(stdout);
    perper::stop_process(0);
  });

  return perper::Run(app);
}
