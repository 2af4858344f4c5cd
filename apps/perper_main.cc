// SPDX-License-Identifier: MIT
// perper: runs an application on this machine (`perper up APP.yaml`), runs a Fabric
// (`perper fabric`) and inspects a running one. See `perper --help` and docs/cli.md.
#include "perper/cli/cli.h"

int main(int argc, char** argv) { return perper::cli::Main(argc, argv); }
