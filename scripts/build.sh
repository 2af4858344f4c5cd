#!/usr/bin/env bash
# Installs what is missing (Debian packages), then configures and builds Perper.
#   scripts/build.sh [--asan] [--no-tests] [ninja targets...]
# Build trees: build/ (RelWithDebInfo), build-asan/ (Debug, ASan+UBSan).
# Progress goes to stderr: each phase is announced, and ninja shows its [done/total] steps (a
# first build takes several minutes on 2 cores); cmake's output only when it fails.
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
echo "build: configuring ${build_dir#"$root"/}/ (cmake)" >&2
if ! configure_log=$(cmake -S "$root" -B "$build_dir" "${cmake_args[@]}" 2>&1); then
  echo "$configure_log" >&2
  exit 1
fi
echo "build: building ${targets[*]:-everything} (ninja)" >&2
ninja -C "$build_dir" "${targets[@]}" >&2
