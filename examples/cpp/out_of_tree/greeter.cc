// SPDX-License-Identifier: MIT
// An agent built outside the Perper tree, against the installed SDK (find_package(Perper)).
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./greeter
//   Hello, out of tree!
#include <cstdio>
#include <string>

#include "perper/agent/agent.h"

int main() {
  perper::Agent app("Greeter");
  app.on("Greet",
         [](std::string name) -> perper::Task<std::string> { co_return "Hello, " + name + "!"; });
  app.on_deploy([]() -> perper::Task<void> {
    perper::Result<std::string> greeting =
        co_await perper::call<std::string>("Greet", "out of tree");
    std::printf("%s\n", greeting.ok() ? greeting->c_str() : greeting.status().ToString().c_str());
    std::fflush(stdout);
    perper::stop_process(greeting.ok() ? 0 : 1);
  });
  return perper::Run(app);
}
