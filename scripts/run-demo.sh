#!/usr/bin/env bash
# Runs a Perper application on the embedded default: installs and builds what is needed, then
# `perper up examples/apps/hello.yaml`, which starts an embedded Fabric, the process scaler and
# the hello example's two agent processes, and ends when the example's Deploy finishes.
# It also builds what the README goes on to use: perper-fabric and the Python package
# (build/python). The build's progress goes to stderr. Extra arguments go to `perper up`
# (e.g. --log-dir DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" perper perper-fabric perper_python_stubs my_first_agent \
  stream_printer_agent
cd "$root"
exec "$root/build/apps/perper" up examples/apps/hello.yaml "$@"
