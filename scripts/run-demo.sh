#!/usr/bin/env bash
# Runs a Perper application on the embedded default: builds what is needed, starts
# perper-fabric (rocksdb storage in a temporary directory, a free port), runs the fabric_tour
# application against it, and stops the Fabric.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" perper-fabric fabric_tour >/dev/null
work=$(mktemp -d)
fabric_pid=
cleanup() {
  if [[ -n "$fabric_pid" ]]; then kill -TERM "$fabric_pid" 2>/dev/null || true; wait "$fabric_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$root/build/apps/perper-fabric" --listen 127.0.0.1:0 --data-dir "$work/data" \
  --address-file "$work/address" --log-level warn &
fabric_pid=$!
for _ in $(seq 1 200); do [[ -s "$work/address" ]] && break; sleep 0.05; done
[[ -s "$work/address" ]] || { echo "run-demo: the Fabric did not start" >&2; exit 1; }
address=$(cat "$work/address")
echo "run-demo: Fabric at $address (storage rocksdb in $work/data)"
"$root/build/examples/fabric_tour/fabric_tour" "$address"
