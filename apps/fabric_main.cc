// SPDX-License-Identifier: MIT
// perper-fabric: the Perper server. See `perper-fabric --help` and docs/configuration.md.
#include <CLI/CLI.hpp>

#include "perper/fabric/fabric_config.h"

int main(int argc, char** argv) {
  perper::fabric::BlockShutdownSignals();
  CLI::App app{
      "perper-fabric: the Perper server. Stores executions, streams and state, and pushes\n"
      "changes to agent processes over the grpc2 protocol."};
  perper::fabric::FabricConfigFlags flags;
  perper::fabric::AddFabricFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  auto config = perper::fabric::ResolveFabricConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "perper-fabric: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  return perper::fabric::RunFabricUntilSignalled(*config);
}
