#!/usr/bin/env bash
# Installs what is missing (Debian packages), then configures and builds Perper.
#   scripts/build.sh [--asan] [--no-tests] [ninja targets...]
# Build trees: build/ (RelWithDebInfo), build-asan/ (Debug, ASan+UBSan).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"

build_dir="$root/build"
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
targets=()
for arg in "$@"; do
  case "$arg" in
    --asan) build_dir="$root/build-asan"
            cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Debug -DPERPER_SANITIZE=ON) ;;
    --no-tests) cmake_args+=(-DPERPER_BUILD_TESTS=OFF) ;;
    *) targets+=("$arg") ;;
  esac
done

# Compiler cache: paths are hashed relative to the checkout, so another clone of the same code
# (CI's) reuses what this one compiled.
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build_dir" "${cmake_args[@]}" >/dev/null
ninja -C "$build_dir" "${targets[@]}"
