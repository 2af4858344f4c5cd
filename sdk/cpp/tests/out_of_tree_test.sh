#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the build tree BUILD into a temporary prefix (cmake --install) and checks what an
# installation gives: the programs run (--version), the out-of-tree project PROJECT builds against
# the C++ SDK with find_package(Perper <version>) (and a later minor version is refused), its
# agent runs against a Fabric, and the installed `perper up` runs Python agents with the
# installed Python package (no PYTHONPATH, no pip).
#   out_of_tree_test.sh BUILD PROJECT FABRIC_BINARY VERSION SOURCE_DIR
set -euo pipefail
build=$1 project=$2 fabric=$3 version=$4 source=$5
work=$(mktemp -d)
fabric_pid=
cleanup() {
  [[ -n $fabric_pid ]] && kill "$fabric_pid" 2>/dev/null && wait "$fabric_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
prefix=$work/prefix
[[ $("$prefix/bin/perper" --version) == "perper $version" ]]
[[ $("$prefix/bin/perper-fabric" --version) == "perper-fabric $version" ]]
[[ -f $prefix/lib/cmake/Perper/PerperConfigVersion.cmake ]]

cmake -S "$project" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DPERPER_WANTED_VERSION="${version%.*}" >/dev/null
cmake --build "$work/build"
# A release this one is not compatible with (the next minor) is refused.
major=${version%%.*} minor=${version#*.}; minor=${minor%%.*}
if cmake -S "$project" -B "$work/build-next" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
     -DPERPER_WANTED_VERSION="$major.$((minor + 1))" >"$work/next.log" 2>&1; then
  echo "find_package(Perper $major.$((minor + 1))) accepted version $version"; exit 1
fi
grep -q "$version" "$work/next.log" || { cat "$work/next.log"; exit 1; }

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

# The installed perper up: its Python agents import the installed package.
output=$(env -u PYTHONPATH HELLO_DELAY=0 timeout 60 "$prefix/bin/perper" up \
  "$source/examples/apps/python-hello.yaml" 2>"$work/up.log") || { cat "$work/up.log"; exit 1; }
echo "perper up printed: $output"
grep -q "] Hello world through stream!$" <<<"$output"
