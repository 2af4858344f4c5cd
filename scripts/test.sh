#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. This is what CI runs.
#   scripts/test.sh            all tests (RelWithDebInfo build in build/)
#   scripts/test.sh --asan     all tests under AddressSanitizer + UBSan (build-asan/)
#   scripts/test.sh -L unit    extra arguments go to ctest (here: only the unit label)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$root/build"
build_args=()
ctest_args=()
for arg in "$@"; do
  case "$arg" in
    --asan) build_dir="$root/build-asan"; build_args+=(--asan) ;;
    *) ctest_args+=("$arg") ;;
  esac
done
"$root/scripts/build.sh" "${build_args[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build_dir"
ctest --output-on-failure --timeout 300 -j2 "${ctest_args[@]}"
