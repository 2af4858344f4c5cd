#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the C++ SDK from the build tree BUILD into a temporary prefix, builds the out-of-tree
# project PROJECT against it with find_package(Perper), and runs its agent against a Fabric.
#   out_of_tree_test.sh BUILD PROJECT FABRIC_BINARY
set -euo pipefail
build=$1 project=$2 fabric=$3
work=$(mktemp -d)
fabric_pid=
cleanup() {
  [[ -n $fabric_pid ]] && kill "$fabric_pid" 2>/dev/null && wait "$fabric_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$project" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build"

"$fabric" --storage memory --listen 127.0.0.1:0 --address-file "$work/address" \
  >"$work/fabric.log" 2>&1 &
fabric_pid=$!
for _ in $(seq 200); do
  [[ -s $work/address ]] && break
  sleep 0.05  # polling for the address file, with a bound
done
[[ -s $work/address ]] || { echo "the Fabric did not start"; cat "$work/fabric.log"; exit 1; }

output=$(PERPER_FABRIC_ENDPOINT=$(cat "$work/address") timeout 60 "$work/build/greeter" 2>/dev/null)
echo "greeter printed: $output"
[[ $output == "Hello, out of tree!" ]]
