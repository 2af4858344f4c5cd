#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `perper up --scaler compose` with real podman and docker-compose (label containers):
# - the hello example (C++, and Python in the Python agent image) prints what it prints as
#   processes, its StreamPrinterAgent instance runs in a container of its own that is removed
#   when the instance is destroyed;
# - the instances example routes its calls between two instance containers and passes;
# - a long-running application: an instance container whose process is killed is restarted
#   (restart: always), one stopped with `podman kill` is started again by the scaler, and it
#   answers calls again; a destroyed instance's container is removed; a pool of containers
#   scales up to its max under waiting executions and back to zero when they are gone;
#   SIGTERM stops it with exit code 143;
# - after each run no container and no network of the project is left.
#   tests/containers/compose_test.sh BUILD_DIR
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source "$(dirname "$0")/lib.sh"
perper="$build_dir/apps/perper"
require_podman
command -v docker-compose >/dev/null || skip "docker-compose is not installed (scripts/install-deps.sh)"
build_images perper-fabric perper-cpp-examples perper-python-examples perper-test-agent

export PERPER_PODMAN_DIR=$(mktemp -d /tmp/perper-podman-compose.XXXXXX)
work=$(mktemp -d)
up_pid=
cleanup() {
  set +e  # every step runs, whatever the one before returned
  [[ -n "$up_pid" ]] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
  for p in hello$$ pyhello$$ instances$$ workers$$; do
    podman ps -a -q --filter "label=com.docker.compose.project=$p" | xargs -r podman rm -f -t 0 >/dev/null 2>&1
    podman network rm -f "${p}_default" >/dev/null 2>&1 || true
  done
  "$root/scripts/podman-service.sh" stop 2>/dev/null || true
  rm -rf "$PERPER_PODMAN_DIR" "$work"
}
trap cleanup EXIT
export DOCKER_HOST=$("$root/scripts/podman-service.sh" start 2>/dev/null)

# containers PROJECT [FILTER...]: the names of the project's containers.
containers() {
  local project=$1
  shift
  local filters=(--filter "label=com.docker.compose.project=$project")
  for f in "$@"; do filters+=(--filter "$f"); done
  podman ps -a --format '{{.Names}}' "${filters[@]}"
}
count() { containers "$@" | grep -c . || true; }
nothing_left() {
  local project=$1
  [[ -z "$(containers "$project")" ]] || fail "containers of $project left: $(containers "$project" | tr '\n' ' ')"
  ! podman network exists "${project}_default" || fail "network ${project}_default left"
  pass "$project: no container and no network left"
}

# What cannot run says why: no DOCKER_HOST; an image manifest without --scaler compose.
status=0
out=$(env -u DOCKER_HOST "$perper" up --scaler compose "$root/examples/apps/containers/hello.yaml" 2>&1) || status=$?
[[ $status == 1 && "$out" == *"DOCKER_HOST is not set: start podman's Docker API first"* ]] ||
  fail "without DOCKER_HOST: exit code $status, '$out'"
status=0
out=$("$perper" up "$root/examples/apps/containers/hello.yaml" 2>&1) || status=$?
[[ $status == 2 && "$out" == *"hello.yaml:12: agents.MyFirstAgent has an image: run it with --scaler compose"* ]] ||
  fail "an image manifest with the local scaler: exit code $status, '$out'"
pass "refused with the reason: no DOCKER_HOST (exit 1), images without --scaler compose (exit 2)"

# The hello example across two containers, with C++ agents and with Python agents.
hello() {
  local manifest=$1 project=$2 status=0
  "$perper" up --scaler compose "$root/examples/apps/containers/$manifest" --project "$project" \
    >"$work/hello.out" 2>"$work/hello.err" || status=$?
  [[ $status == 0 ]] || fail "$manifest: exit code $status; $(cat "$work/hello.out" "$work/hello.err")"
  for line in "Hello world from Deploy!" "Hello world from HelloWorldGenerator!" \
      "Hello world from StreamPrinterAgent's StreamPrinter!" "Hello world through stream!" \
      "StreamPrinter printed 27 characters"; do
    grep -q "| $line\$" "$work/hello.out" || fail "$manifest: no '$line' in: $(cat "$work/hello.out")"
  done
  grep -q "\[agent=StreamPrinterAgent instance=Run-.* service=streamprinteragent-[0-9a-f]\{10\}\] starting its container" \
    "$work/hello.err" || fail "$manifest: the instance's container was not started: $(cat "$work/hello.err")"
  grep -q "service=streamprinteragent-[0-9a-f]\{10\}\] instance destroyed: removing its container" \
    "$work/hello.err" || fail "$manifest: the destroyed instance's container was not removed: $(cat "$work/hello.err")"
  pass "$manifest: printed the sentence through the stream, exit code 0, printer container removed"
  nothing_left "$project"
}
hello hello.yaml hello$$
hello python-hello.yaml pyhello$$

# The instances example: two instance containers.
status=0
"$perper" up --scaler compose "$root/examples/apps/containers/instances.yaml" \
  --project instances$$ >"$work/instances.out" 2>"$work/instances.err" || status=$?
[[ $status == 0 ]] || fail "instances: exit code $status; $(cat "$work/instances.out" "$work/instances.err")"
grep -q "| Test passed!$" "$work/instances.out" || fail "instances: no 'Test passed!': $(cat "$work/instances.out")"
grep -q "| Both agents destroyed!$" "$work/instances.out" || fail "instances: no 'Both agents destroyed!'"
[[ $(grep -c "\[agent=container-sample .*starting its container" "$work/instances.err") == 2 ]] ||
  fail "instances: not two instance containers: $(cat "$work/instances.err")"
pass "instances: Test passed!, two instance containers started"
nothing_left instances$$

# A long-running application: restart, destroy, pool.
p=workers$$
"$perper" up --scaler compose "$root/tests/containers/apps/workers.yaml" --project $p \
  --address-file "$work/address" >"$work/workers.out" 2>"$work/workers.err" &
up_pid=$!
running_workers() { [[ $(count $p label=io.perper.agent=Worker status=running) == 2 ]]; }
wait_for 60 "two running Worker containers" running_workers
address=$(cat "$work/address")
grep -q "| Deployed$" "$work/workers.out" || wait_for 10 "Deploy printing Deployed" grep -q "| Deployed$" "$work/workers.out"
mapfile -t workers < <(containers $p label=io.perper.agent=Worker status=running)
victim=${workers[0]}
victim_instance=$(podman inspect --format '{{index .Config.Labels "io.perper.instance"}}' "$victim")
other=${workers[1]}
other_instance=$(podman inspect --format '{{index .Config.Labels "io.perper.instance"}}' "$other")
[[ "$victim_instance" == Run-* && "$other_instance" == Run-* && "$victim_instance" != "$other_instance" ]] ||
  fail "instance labels: '$victim_instance' '$other_instance'"

# The agent dies as in a crash or an OOM kill: SIGKILL to the container's process from outside.
# (`podman kill` and `podman stop` are a user's decision, which a restart policy respects.)
victim_pid=$(podman inspect --format '{{.State.Pid}}' "$victim")
kill -KILL "$victim_pid"
restarted() { [[ "$(podman inspect --format '{{.RestartCount}} {{.State.Running}}' "$victim")" == "1 true" ]]; }
wait_for 30 "container $victim restarted after SIGKILL" restarted
who=$("$perper" call Worker "$victim_instance" WhoAmI --fabric "$address" --timeout 20) ||
  fail "calling the restarted instance failed: $who
--- perper up's log (last 40 lines):
$(tail -n 40 "$work/workers.err")
--- the restarted container's log (last 40 lines):
$(podman logs --tail 40 "$victim" 2>&1)"
[[ "$who" == *"$victim_instance"* ]] || fail "the restarted instance answered '$who'"
pass "killed container $victim restarted (RestartCount 1) and answered WhoAmI = $victim_instance"
# `podman kill` is a user's stop, which podman's restart policy respects: the scaler sees the
# container die (docker-compose events) and starts it again itself.
podman kill "$victim" >/dev/null
victim_service=${victim#"${p}_"}
victim_service=${victim_service%_*}  # <project>_<service>_<index>
user_killed() { grep -q "service=$victim_service\] container exited with code 137 unexpectedly" "$work/workers.err"; }
wait_for 30 "the scaler noticing that $victim was killed ($(tail -5 "$work/workers.err"))" user_killed
running_again() { [[ "$(podman inspect --format '{{.State.Running}}' "$victim")" == true ]]; }
wait_for 30 "container $victim started again by the scaler" running_again
who=$("$perper" call Worker "$victim_instance" WhoAmI --fabric "$address" --timeout 20) ||
  fail "calling the instance after podman kill failed: $who"
[[ "$who" == *"$victim_instance"* ]] || fail "the instance answered '$who' after podman kill"
pass "podman kill $victim: started again by the scaler and answered WhoAmI"

"$perper" destroy "$other_instance" --fabric "$address" >/dev/null || fail "perper destroy $other_instance failed"
other_gone() { [[ -z "$(containers $p "label=io.perper.instance=$other_instance")" ]]; }
wait_for 30 "the destroyed instance's container removed" other_gone
one_worker() { [[ $(count $p label=io.perper.agent=Worker status=running) == 1 ]]; }
wait_for 20 "the remaining Worker container running ($(podman ps -a --format '{{.Names}} {{.Status}}' --filter label=com.docker.compose.project=$p | tr '\n' ';') $(tail -4 "$work/workers.err"))" one_worker
pass "destroyed instance $other_instance: its container $other is gone, the other runs"

[[ $(count $p label=io.perper.agent=Sleeper) == 0 ]] || fail "Sleeper containers while idle (min 0)"
executions() {
  PYTHONPATH="$build_dir/python" /usr/bin/python3 - "$address" "$1" <<'PY'
import sys, grpc
from perper.grpc2 import executions_pb2 as e, executions_pb2_grpc as eg
stub = eg.FabricExecutionsStub(grpc.insecure_channel(sys.argv[1]))
for i in range(5):
    r = e.ExecutionsCreateRequest(delegate="Hold")
    r.execution.execution = f"Hold-{i}"
    r.instance.instance = "sleepers"
    r.instance.agent = "Sleeper"
    if sys.argv[2] == "create":
        stub.Create(r, timeout=10)
    else:
        stub.Delete(e.ExecutionsDeleteRequest(execution=r.execution), timeout=10)
PY
}
executions create
three_sleepers() { [[ $(count $p label=io.perper.agent=Sleeper status=running) == 3 ]]; }
wait_for 60 "three Sleeper containers for five waiting executions (max 3)" three_sleepers
# The five executions are created one by one, so the scaler may get there in steps (0 -> 2 -> 3).
grep -Eq "\[agent=Sleeper\] scaling from [0-2] to 3 containers \(" "$work/workers.err" ||
  fail "no scaling line: $(cat "$work/workers.err")"
! grep -Eq "\[agent=Sleeper\] scaling from [0-9]+ to ([4-9]|[0-9]{2,}) " "$work/workers.err" ||
  fail "scaled past max 3: $(grep 'agent=Sleeper' "$work/workers.err")"
pass "pool: five waiting executions, scaled 0 -> 3 containers (max 3)"
executions delete
no_sleepers() { [[ $(count $p label=io.perper.agent=Sleeper) == 0 ]]; }
wait_for 60 "the Sleeper containers removed once idle" no_sleepers
grep -Eq "\[agent=Sleeper\] scaling from [1-3] to 0 containers" "$work/workers.err" ||
  fail "no scale-down line: $(grep 'agent=Sleeper' "$work/workers.err")"
pass "pool: executions gone, scaled 3 -> 0 containers"

kill -TERM "$up_pid"
status=0
wait "$up_pid" || status=$?
up_pid=
[[ $status == 143 ]] || fail "perper up after SIGTERM: exit code $status; $(tail -20 "$work/workers.err")"
[[ ! -e "$work/address" || -s "$work/address" ]]
pass "SIGTERM: perper up exited with 143"
nothing_left $p
