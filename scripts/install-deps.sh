#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build, test and run Perper.
# Safe to run repeatedly: apt skips what is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libasio-dev libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev
  nlohmann-json3-dev librocksdb-dev libhiredis-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev valgrind ccache
  # scripts/check-thread-safety.sh: clang++-14's -Wthread-safety (the build itself uses GCC)
  clang-14
  # scripts/check-format.sh: the C++ format check, with the repository's .clang-format
  clang-format-14
  redis-server
  python3-grpcio python3-protobuf python3-pytest
  # pip install ./sdk/python (into a venv made with --system-site-packages), and its test
  python3-pip python3-venv
  # the Kubernetes scaler (scalers/kubernetes): the official client, and YAML for its config
  python3-kubernetes python3-yaml
  # Containers (docs/containers.md): podman builds and runs the images (with runc: crun cannot
  # run on a cgroup v1+v2 hybrid), debootstrap makes the Debian base image, docker-compose
  # drives podman's Docker-compatible socket for `perper up --scaler compose`; netavark and
  # aardvark-dns give the containers a network with service names (netavark runs iptables);
  # uidmap: podman's helpers; curl: the compose scaler reads the engine's container events.
  podman runc debootstrap docker-compose netavark aardvark-dns iptables uidmap curl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
