#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. This is what CI runs.
#   scripts/test.sh            all tests (RelWithDebInfo build in build/), then the short fuzz and
#                              stress runs under AddressSanitizer + UBSan (only their targets are
#                              built in build-asan/)
#   scripts/test.sh --asan     all tests under AddressSanitizer + UBSan (build-asan/)
#   scripts/test.sh -L unit    extra arguments go to ctest (here: only the unit label); with extra
#                              arguments the sanitizer step is skipped (add --asan for it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$root/build"
build_args=()
ctest_args=()
asan=0
for arg in "$@"; do
  case "$arg" in
    --asan) build_dir="$root/build-asan"; build_args+=(--asan); asan=1 ;;
    *) ctest_args+=("$arg") ;;
  esac
done
"$root/scripts/build.sh" "${build_args[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build_dir"
if [[ $asan == 1 || ${#ctest_args[@]} -gt 0 ]]; then
  exec ctest --output-on-failure --timeout 300 -j2 "${ctest_args[@]}"
fi

# The ordinary command. The fuzz runs are meaningful under sanitizers only, so they run in the
# second step, with the stress tests; the long fuzz runs (labels fuzz;slow) run on demand.
status=0
ctest --output-on-failure --timeout 300 -j2 -LE fuzz || status=$?
"$root/scripts/build.sh" --asan fabric_fuzz_test states_stress_test
ctest --test-dir "$root/build-asan" --output-on-failure --timeout 300 -j2 -L 'fuzz|stress' \
  -LE slow || status=$?
exit $status
