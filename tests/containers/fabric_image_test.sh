#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The images of scripts/build-images.sh, run with real podman (label containers):
# perper-fabric starts as a non-root user, stores with rocksdb in /data, answers the perper CLI
# and its grpc.health.v1 health check through a published port and from its HEALTHCHECK, and
# stops cleanly (exit code 0, "received SIGTERM") on `podman stop`; perper-python-agent imports
# the SDK; perper-cpp-agent runs as a non-root user.
#   tests/containers/fabric_image_test.sh BUILD_DIR
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source "$(dirname "$0")/lib.sh"
perper="$build_dir/apps/perper"
require_podman
build_images perper-fabric perper-python-agent

name=perper-test-fabric-$$
cleanup() {
  set +e
  podman rm -f -t 0 "$name" >/dev/null 2>&1
  podman volume rm -f "$name" >/dev/null 2>&1
}
trap cleanup EXIT
# podman itself can run a container here (else skip with podman's reason).
if ! out=$(podman run --rm localhost/perper-cpp-agent id -u 2>&1); then
  skip "podman cannot run a container here: $out"
fi
[[ "$out" == 10001 ]] || fail "perper-cpp-agent runs as uid '$out', expected 10001 (perper)"
pass "perper-cpp-agent runs as uid 10001"

port=$(free_port)
podman run -d --name "$name" -p "127.0.0.1:$port:40400" -v "$name:/data" localhost/perper-fabric >/dev/null
wait_for 30 "perper health against the published port 127.0.0.1:$port" \
  "$perper" health --fabric "127.0.0.1:$port" --timeout 1
out=$("$perper" health --fabric "127.0.0.1:$port")
[[ "$out" == "SERVING (127.0.0.1:$port)" ]] || fail "perper health printed '$out'"
pass "health through the published port: $out"
podman healthcheck run "$name" || fail "the image's HEALTHCHECK reports the Fabric unhealthy"
[[ "$(podman inspect --format '{{.State.Health.Status}}' "$name")" == healthy ]] ||
  fail "health status is $(podman inspect --format '{{.State.Health.Status}}' "$name")"
pass "HEALTHCHECK: healthy"
"$perper" executions --fabric "127.0.0.1:$port" --json >/dev/null || fail "perper executions failed"
[[ "$(podman exec "$name" id -un)" == perper ]] || fail "the Fabric does not run as perper"
podman exec "$name" test -f /data/CURRENT || fail "no rocksdb database in /data"
pass "runs as perper, rocksdb in /data, perper executions answers"

started=$SECONDS
podman stop -t 20 "$name" >/dev/null
elapsed=$((SECONDS - started))
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
logs=$(podman logs "$name" 2>&1)
[[ "$code" == 0 ]] || fail "exit code after SIGTERM: $code; logs: $logs"
grep -q "received SIGTERM, stopping" <<<"$logs" || fail "no 'received SIGTERM' in the logs: $logs"
((elapsed < 10)) || fail "podman stop took ${elapsed} s"
pass "stopped by SIGTERM in ${elapsed} s with exit code 0"

out=$(podman run --rm localhost/perper-python-agent python3 -c \
  'import grpc, google.protobuf, os, perper, perper.grpc2.executions_pb2
print(perper.__name__, callable(perper.run), os.getuid())' 2>&1) ||
  fail "perper-python-agent cannot import the SDK: $out"
[[ "$out" == "perper True 10001" ]] || fail "perper-python-agent printed '$out'"
pass "perper-python-agent imports perper as uid 10001"
