#!/usr/bin/env bash
# Builds Perper's container images with podman (docs/containers.md), from the binaries of a
# build (scripts/build.sh perper perper-fabric, and the example agents for perper-cpp-examples):
#   localhost/perper-debian:bookworm-minbase  debootstrap --variant=minbase, `podman import`
#   localhost/perper-cpp-agent                runtime libraries (apt), user perper
#   localhost/perper-fabric                   + perper-fabric, perper; /data, :40400, healthcheck
#   localhost/perper-python-agent             python3-grpcio, python3-protobuf, the Python SDK
#   localhost/perper-cpp-examples             + the C++ example agents (when they are built)
#   localhost/perper-python-examples          + the Python example agents (examples/python)
#   localhost/perper-test-agent               + the scaler's test agent (tests/containers)
# Cached: an image is rebuilt only when its inputs changed (its Containerfile, the files copied
# into it, its package list, the image it is built from); the hash is kept in the label
# io.perper.inputs. The base image is made once (--rebuild-base makes it again).
#   scripts/build-images.sh [--build-dir DIR] [--rebuild-base] [IMAGE...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$root/build"
rebuild_base=0
wanted=()
while (($#)); do
  case "$1" in
    --build-dir) build_dir=$(cd "$2" && pwd); shift ;;
    --rebuild-base) rebuild_base=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) wanted+=("$1") ;;
  esac
  shift
done
export CONTAINERS_CONF="$root/containers/containers.conf"
say() { echo "build-images: $*" >&2; }
command -v podman >/dev/null || { say "podman is not installed (scripts/install-deps.sh installs it)"; exit 1; }

base=localhost/perper-debian:bookworm-minbase
label=io.perper.inputs
scratch=$(mktemp -d /tmp/perper-images.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

image_label() { podman image inspect --format "{{index .Labels \"$label\"}}" "$1" 2>/dev/null || true; }
image_id() { podman image inspect --format '{{.Id}}' "$1"; }

# The Debian mirror apt uses on this machine (deb822 .sources or one-line lists).
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f
  for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    awk '
      /^deb / && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }
      /^URIs:/ { uri = $2 }
      /^Suites:/ && / bookworm( |$)/ && uri != "" && uri !~ /security/ { print uri; exit }
      /^$/ { uri = "" }' "$f"
  done | head -n1
}

build_base() {
  if [[ $rebuild_base == 0 ]] && podman image exists "$base"; then
    say "$base: exists (--rebuild-base to make it again)"
    return
  fi
  local mirror
  mirror=$(debian_mirror)
  [[ -n "$mirror" ]] || { say "no bookworm mirror found in /etc/apt/sources.list(.d)"; exit 1; }
  command -v debootstrap >/dev/null || { say "debootstrap is not installed (scripts/install-deps.sh)"; exit 1; }
  say "$base: debootstrap --variant=minbase bookworm $mirror (about 30 s)"
  local rootfs="$scratch/rootfs"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$scratch/debootstrap.log" 2>&1; then
    tail -n 20 "$scratch/debootstrap.log" >&2
    say "debootstrap failed (log above)"
    exit 1
  fi
  # The container's apt uses the same mirror; no caches or logs in the image.
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
  say "$base: podman import"
  tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' \
    --change "LABEL $label=debootstrap-minbase-bookworm" - "$base" >/dev/null
  rm -rf "$rootfs"
}

# The Debian packages holding the shared libraries the given binaries load.
runtime_packages() {
  ldd "$@" | awk '/=> \// { print $3 }' | sort -u |
    while read -r lib; do echo "x86_64-linux-gnu/${lib##*/}"; done |
    xargs dpkg -S 2>/dev/null | cut -d: -f1 | tr ', ' '\n\n' | grep -v -- '-dev$' | grep . |
    sort -u | tr '\n' ' '
}

# build NAME CONTAINERFILE CONTEXT [BUILD-ARG...]: podman build unless the inputs are unchanged.
build() {
  local name=$1 file=$2 context=$3
  shift 3
  local from hash
  from=$(sed -n 's/^ARG BASE=//p' "$file")
  hash=$({
    cat "$file"
    printf '%s\n' "$@"
    image_id "$from"
    (cd "$context" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -c1-32)
  if [[ "$(image_label "$name")" == "$hash" ]]; then
    say "$name: up to date"
    return
  fi
  say "$name: building"
  local args=()
  for a in "$@"; do args+=(--build-arg "$a"); done
  local started=$SECONDS
  # docker format: OCI images have no HEALTHCHECK.
  if ! podman build --format docker -q --label "$label=$hash" -f "$file" "${args[@]}" \
      -t "$name" "$context" >"$scratch/build.log" 2>&1; then
    tail -n 30 "$scratch/build.log" >&2
    say "$name: podman build failed (log above)"
    exit 1
  fi
  say "$name: built in $((SECONDS - started)) s"
}

# The build's binaries carry debug information (RelWithDebInfo): not in the images.
strip_debug() { strip --strip-debug "$@"; }

want() { ((${#wanted[@]} == 0)) || [[ " ${wanted[*]} " == *" $1 "* ]]; }
# Named only: the test agent is not part of a plain run.
want_named() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

binaries=("$build_dir/apps/perper-fabric" "$build_dir/apps/perper")
for b in "${binaries[@]}"; do
  [[ -x "$b" ]] || { say "$b is missing: run scripts/build.sh perper perper-fabric first"; exit 1; }
done
examples=()
for e in my_first_agent stream_printer_agent container_sample container_usage_sample; do
  [[ -x "$build_dir/examples/cpp/$e" ]] && examples+=("$build_dir/examples/cpp/$e")
done

build_base
packages=$(runtime_packages "${binaries[@]}" "${examples[@]}")
mkdir -p "$scratch/empty"
if want perper-cpp-agent || want perper-fabric || want perper-cpp-examples; then
  build localhost/perper-cpp-agent "$root/containers/cpp-agent.Containerfile" "$scratch/empty" \
    "PACKAGES=$packages"
fi
if want perper-fabric; then
  mkdir -p "$scratch/fabric"
  cp "${binaries[@]}" "$scratch/fabric/"
  strip_debug "$scratch/fabric"/*
  build localhost/perper-fabric "$root/containers/fabric.Containerfile" "$scratch/fabric"
fi
if want perper-python-agent || want perper-python-examples; then
  [[ -d "$build_dir/python/perper" ]] ||
    { say "$build_dir/python is missing: run scripts/build.sh perper_python_stubs first"; exit 1; }
  mkdir -p "$scratch/python"
  # -L: the build links the sources into python/perper; the image needs the files.
  cp -rL "$build_dir/python/perper" "$scratch/python/"
  find "$scratch/python" -name __pycache__ -prune -exec rm -rf {} +
  build localhost/perper-python-agent "$root/containers/python-agent.Containerfile" "$scratch/python"
fi
if want perper-cpp-examples; then
  if ((${#examples[@]} == 0)); then
    say "perper-cpp-examples: skipped (no example agents in $build_dir/examples/cpp)"
  else
    mkdir -p "$scratch/examples/bin"
    cp "${examples[@]}" "$scratch/examples/bin/"
    strip_debug "$scratch/examples/bin"/*
    build localhost/perper-cpp-examples "$root/containers/cpp-examples.Containerfile" \
      "$scratch/examples"
  fi
fi
if want perper-python-examples; then
  mkdir -p "$scratch/python-examples"
  cp -r "$root/examples/python" "$scratch/python-examples/"
  find "$scratch/python-examples" -name __pycache__ -prune -exec rm -rf {} +
  build localhost/perper-python-examples "$root/containers/python-examples.Containerfile" \
    "$scratch/python-examples"
fi
if want_named perper-test-agent; then
  agent="$build_dir/tests/scaler/scaler_test_agent"
  [[ -x "$agent" ]] || { say "$agent is missing: run scripts/build.sh scaler_test_agent first"; exit 1; }
  mkdir -p "$scratch/test-agent/bin"
  cp "$agent" "$scratch/test-agent/bin/"
  strip_debug "$scratch/test-agent/bin"/*
  build localhost/perper-test-agent "$root/containers/cpp-examples.Containerfile" "$scratch/test-agent"
fi
