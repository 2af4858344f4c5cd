#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/podman-service.sh with real podman (label containers): `start` prints a socket that
# answers the Docker API; docker-compose runs a container through it with Perper's
# containers.conf in force (nofile 20000, runc); a second `start` reuses the service; `stop`
# ends it and removes the socket.
#   tests/containers/podman_service_test.sh BUILD_DIR
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source "$(dirname "$0")/lib.sh"
require_podman
command -v docker-compose >/dev/null || skip "docker-compose is not installed (scripts/install-deps.sh)"
build_images perper-cpp-agent

export PERPER_PODMAN_DIR=$(mktemp -d /tmp/perper-podman-test.XXXXXX)
project=perpersvc$$
work=$(mktemp -d)
cleanup() {
  set +e  # every step runs, whatever the one before returned
  [[ -n "${DOCKER_HOST:-}" ]] && docker-compose -p "$project" -f "$work/compose.yaml" down -t 0 >/dev/null 2>&1
  "$root/scripts/podman-service.sh" stop 2>/dev/null || true
  rm -rf "$PERPER_PODMAN_DIR" "$work"
}
trap cleanup EXIT

export DOCKER_HOST=$("$root/scripts/podman-service.sh" start)
[[ "$DOCKER_HOST" == "unix://$PERPER_PODMAN_DIR/podman.sock" ]] || fail "start printed '$DOCKER_HOST'"
pid=$(cat "$PERPER_PODMAN_DIR/service.pid")
[[ "$(curl -sf --unix-socket "$PERPER_PODMAN_DIR/podman.sock" http://d/_ping)" == OK ]] ||
  fail "the socket does not answer /_ping"
again=$("$root/scripts/podman-service.sh" start)
[[ "$again" == "$DOCKER_HOST" && "$(cat "$PERPER_PODMAN_DIR/service.pid")" == "$pid" ]] ||
  fail "a second start did not reuse the running service"
pass "service answers on $DOCKER_HOST (pid $pid), reused by a second start"

cat >"$work/compose.yaml" <<'YAML'
version: "3.7"
services:
  probe:
    image: localhost/perper-cpp-agent
    command: ["sh", "-c", "echo nofile=$$(ulimit -n) uid=$$(id -u)"]
YAML
out=$(docker-compose -p "$project" -f "$work/compose.yaml" up --no-color 2>&1) ||
  fail "docker-compose up failed: $out"
grep -q "nofile=20000 uid=10001" <<<"$out" || fail "the container printed: $out"
pass "docker-compose ran a container through the service: nofile=20000 uid=10001"
docker-compose -p "$project" -f "$work/compose.yaml" down -t 0 2>/dev/null
[[ -z "$(podman ps -a -q --filter "label=com.docker.compose.project=$project")" ]] ||
  fail "containers of $project are left after down"
! podman network exists "${project}_default" || fail "network ${project}_default is left after down"

"$root/scripts/podman-service.sh" stop
! kill -0 "$pid" 2>/dev/null || fail "podman system service (pid $pid) still runs after stop"
[[ ! -e "$PERPER_PODMAN_DIR/podman.sock" ]] || fail "the socket is still there after stop"
unset DOCKER_HOST
pass "stop ended the service and removed the socket"
