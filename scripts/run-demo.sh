#!/usr/bin/env bash
# Runs a Perper application on the embedded default: installs and builds what is needed, then
# `perper up examples/apps/hello.yaml`, which starts an embedded Fabric, the process scaler and
# the hello example's two agent processes, and ends when the example's Deploy finishes.
# Extra arguments go to `perper up` (e.g. --log-dir DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" perper my_first_agent stream_printer_agent >/dev/null
cd "$root"
exec "$root/build/apps/perper" up examples/apps/hello.yaml "$@"
