#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `perper init cpp NAME`, then the template built out of tree against the C++ SDK installed from
# the build tree BUILD (as sdk/cpp/tests/out_of_tree_test.sh does), then run with `perper up`:
#   init_cpp_test.sh BUILD PERPER
set -euo pipefail
build=$1 perper=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cd "$work"
"$perper" init cpp greeter
# A second init into the same folder is refused, and writes nothing.
if "$perper" init cpp greeter 2>"$work/err"; then
  echo "a second perper init cpp greeter succeeded"
  exit 1
fi
grep -q "perper init: ./greeter exists and is not an empty folder" "$work/err"

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S greeter -B greeter/build -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" \
  >/dev/null
cmake --build greeter/build

status=0
output=$(timeout 120 "$perper" up greeter/app.yaml 2>"$work/up.err") || status=$?
echo "perper up printed: $output"
if [[ $status -ne 0 || $output != "[agent=greeter instance=deploy pid="*"] Hello, greeter!" ]]; then
  echo "perper up exited with $status:"
  cat "$work/up.err"
  exit 1
fi

# The README's two-language application: a Python Deploy (perper init python) calling the C++
# agent above, once greeter's own Deploy is removed, in one manifest.
"$perper" init python asker >/dev/null
/usr/bin/python3 - <<'PY'
import pathlib, re
asker = pathlib.Path("asker/agent.py")
text, n = re.subn(r"async def deploy\(\):.*?\n\n\n",
                  "async def deploy():\n"
                  "    greeter = await perper.start_agent(\"greeter\")\n"
                  "    print(await greeter.call(\"Greet\", \"asker\"), flush=True)\n\n\n",
                  asker.read_text(), flags=re.S)
assert n == 1, "no deploy function in asker/agent.py"
asker.write_text(text)
greeter = pathlib.Path("greeter/agent.cc")
text, n = re.subn(r"\n  // Deploy runs once.*?\n  \}\);\n", "\n", greeter.read_text(), flags=re.S)
assert n == 1, "no on_deploy in greeter/agent.cc"
greeter.write_text(text)
PY
cmake --build greeter/build >/dev/null
cat >two.yaml <<'YAML'
name: two
deploy: asker
agents:
  asker:
    command: ["/usr/bin/python3", asker/agent.py]
  greeter:
    command: ./greeter/build/greeter
YAML
status=0
output=$(timeout 120 "$perper" up two.yaml 2>"$work/two.err") || status=$?
echo "perper up two.yaml printed: $output"
if [[ $status -ne 0 || $output != *"[agent=asker instance=deploy pid="*"] Hello, asker!"* ]]; then
  echo "perper up two.yaml exited with $status:"
  cat "$work/two.err"
  exit 1
fi
