# SPDX-License-Identifier: MIT
# Shared by the container tests (sourced): skipping with a reason, failing with one, waiting on a
# condition with a timeout, free ports.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CONTAINERS_CONF="$root/containers/containers.conf"

# ctest reports exit code 77 as skipped (SKIP_RETURN_CODE); the reason is on stdout.
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what: not within ${seconds} s"
    sleep 0.2
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Skips (never silently) unless podman can build and run containers here.
require_podman() {
  command -v podman >/dev/null || skip "podman is not installed (scripts/install-deps.sh installs it)"
  command -v debootstrap >/dev/null || skip "debootstrap is not installed (scripts/install-deps.sh)"
  local out
  out=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1) || skip "podman info failed: $out"
}

# Builds (or finds up to date) the images the tests use; once per run thanks to the cache.
build_images() {
  "$root/scripts/build-images.sh" --build-dir "$build_dir" "$@" ||
    fail "scripts/build-images.sh failed"
}
