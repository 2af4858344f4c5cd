// SPDX-License-Identifier: MIT
// perper-fabric: the Perper server. See `perper-fabric --help` and docs/configuration.md.
#include <CLI/CLI.hpp>

#include "perper/fabric/fabric_config.h"

int main(int argc, char** argv) {
  perper::fabric::BlockShutdownSignals();
  CLI::App app{
      "perper-fabric: the Perper server. Stores executions, streams and state, and pushes\n"
      "changes to agent processes over the grpc2 protocol. Serves KEDA's external scaler on\n"
      "the same address (externalscaler.ExternalScaler), for scaling agents on Kubernetes."};
  perper::fabric::FabricConfigFlags flags;
  perper::fabric::AddFabricFlags(app, flags);
  app.set_version_flag("--version", std::string("perper-fabric ") + PERPER_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every bad flag exits 2, as a bad setting does.
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto config = perper::fabric::ResolveFabricConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "perper-fabric: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  return perper::fabric::RunFabricUntilSignalled(*config);
}
