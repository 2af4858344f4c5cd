#!/usr/bin/env bash
# Clang's thread-safety analysis over our C++ (docs/development.md, "Thread-safety check").
#   scripts/check-thread-safety.sh [-B build-dir] [file.cc...]
# (default: build/, and every file; a file names the ones to check, e.g. src/perper/cli/up.cc)
# Parses every .cc file of src/, apps/ and sdk/cpp/src/ with clang++-14 -fsyntax-only
# -Wthread-safety, using the include paths and defines of the build's compile_commands.json, so
# GCC builds the code and clang only checks it. Prints each warning; exits non-zero on any.
# Runs as the ctest test `thread_safety` (label lint). PERPER_LINT_JOBS sets the parallelism.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=$root/build
if [[ ${1:-} == -B ]]; then
  build_dir=$(cd "$2" && pwd)
  shift 2
fi
only=()
for file in "$@"; do only+=("$(realpath "$file")"); done
clang=${PERPER_CLANGXX:-clang++-14}
jobs=${PERPER_LINT_JOBS:-$(nproc)}

if ! command -v "$clang" >/dev/null; then
  echo "check-thread-safety: $clang not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [[ ! -f $build_dir/compile_commands.json ]]; then
  echo "check-thread-safety: no compile_commands.json in $build_dir (run scripts/build.sh)" >&2
  exit 1
fi

# One shell command per file, keeping only what decides how the code parses (-D, -I, -isystem,
# -std) from GCC's command line. Asio detects coroutine support from the compiler and the library
# together and misses it under clang with libstdc++; the two defines tell it. -Wthread-safety-beta
# adds the checks of constructors, destructors and the lock types' own members.
commands=$(python3 - "$root" "$build_dir/compile_commands.json" "$clang" "${only[@]}" <<'PY'
import json, shlex, sys
root, path, clang, only = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4:])
dirs = tuple(f"{root}/{d}/" for d in ("src", "apps", "sdk/cpp/src"))
seen = set()
for entry in json.load(open(path)):
    file = entry["file"]
    if not file.endswith(".cc") or not file.startswith(dirs) or file in seen:
        continue
    if only and file not in only:
        continue
    seen.add(file)
    argv = entry.get("arguments") or shlex.split(entry["command"])
    keep, it = [clang], iter(argv[1:])
    for arg in it:
        if arg in ("-isystem", "-I", "-D", "-include"):
            keep += [arg, next(it)]
        elif arg.startswith(("-D", "-I", "-std=")) or arg == "-pthread":
            keep.append(arg)
    keep += ["-DASIO_HAS_CO_AWAIT=1", "-DASIO_HAS_STD_COROUTINE=1", "-fsyntax-only",
             "-Wno-everything", "-Wthread-safety", "-Wthread-safety-beta",
             "-Werror=thread-safety", "-Werror=thread-safety-beta", file]
    print(f"cd {shlex.quote(entry['directory'])} && {shlex.join(keep)}")
PY
)
if [[ -z $commands ]]; then
  echo "check-thread-safety: no file to check (${*:-none in compile_commands.json})" >&2
  exit 1
fi
count=$(wc -l <<<"$commands")

# Each file's diagnostics are printed in one piece, so parallel files do not interleave; a file
# that fails is named (a parse error prints no thread-safety warning).
check_one='out=$(eval "$1" 2>&1) && exit 0; printf "%s\nFAILED: %s\n" "$out" "${1##* }"; exit 1'
status=0
xargs -d '\n' -P "$jobs" -n 1 bash -c "$check_one" _ <<<"$commands" || status=$?
if ((status != 0)); then
  echo "check-thread-safety: FAILED (the warnings above; $count files checked)" >&2
  exit 1
fi
echo "check-thread-safety: $count files, no warnings"
