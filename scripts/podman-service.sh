#!/usr/bin/env bash
# Starts or stops podman's Docker-compatible API service with Perper's containers.conf, so that
# docker-compose (and `perper up --scaler compose`) can drive podman (docs/containers.md).
#   scripts/podman-service.sh start    # prints the DOCKER_HOST to use: unix:///…/podman.sock
#   scripts/podman-service.sh stop
#   scripts/podman-service.sh status   # exit 0 when it answers
#   scripts/podman-service.sh env      # export lines for a shell: eval "$(… env)"
# PERPER_PODMAN_DIR: where the socket, pid file and log live (default /tmp/perper-podman-$UID).
# Starting an already running service only prints its socket.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${PERPER_PODMAN_DIR:-/tmp/perper-podman-$(id -u)}
socket="$dir/podman.sock"
pid_file="$dir/service.pid"
log="$dir/service.log"
export CONTAINERS_CONF="$root/containers/containers.conf"

answers() { curl -sf --max-time 2 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; }

case "${1:-}" in
  start)
    command -v podman >/dev/null || { echo "podman-service: podman is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
    mkdir -p "$dir"
    if ! answers; then
      rm -f "$socket"
      # setsid: the service outlives this script and a Ctrl-C of the shell that started it.
      setsid podman system service --time=0 "unix://$socket" >"$log" 2>&1 </dev/null &
      echo $! >"$pid_file"
      for _ in $(seq 100); do
        answers && break
        if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
          echo "podman-service: podman system service exited; its log ($log):" >&2
          cat "$log" >&2
          exit 1
        fi
        sleep 0.1
      done
      answers || { echo "podman-service: $socket does not answer after 10 s; log: $log" >&2; exit 1; }
      echo "podman-service: started (pid $(cat "$pid_file"), CONTAINERS_CONF=$CONTAINERS_CONF)" >&2
    fi
    echo "unix://$socket"
    ;;
  stop)
    if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      kill "$(cat "$pid_file")"
      for _ in $(seq 50); do kill -0 "$(cat "$pid_file")" 2>/dev/null || break; sleep 0.1; done
      echo "podman-service: stopped" >&2
    fi
    rm -f "$pid_file" "$socket"
    ;;
  status)
    answers && echo "unix://$socket"
    ;;
  env)
    echo "export CONTAINERS_CONF=$CONTAINERS_CONF DOCKER_HOST=unix://$socket"
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
