#!/usr/bin/env bash
# The C++ format check (docs/development.md, "Format"): every tracked .cc and .h file outside
# sdk/dotnet must be as clang-format-14 writes it with the repository's .clang-format.
#   scripts/check-format.sh         lists the files that differ, exits 1 if any
#   scripts/check-format.sh --fix   formats them in place
# Runs as the ctest test `format` (label lint).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
format=${PERPER_CLANG_FORMAT:-clang-format-14}
if ! command -v "$format" >/dev/null; then
  echo "check-format: $format not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
# From git when this is a clone; otherwise every such file under the tree.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h' | grep -v '^sdk/dotnet/')
else
  mapfile -t files < <(find apps benchmarks examples sdk/cpp src tests -name '*.cc' -o -name '*.h')
fi
if [[ ${1:-} == --fix ]]; then
  printf '%s\0' "${files[@]}" | xargs -0 "$format" -i
  exit 0
fi
differ=()
for file in "${files[@]}"; do
  [[ -f $file ]] || continue  # deleted but not yet committed
  if ! "$format" "$file" | cmp -s - "$file"; then differ+=("$file"); fi
done
if (( ${#differ[@]} > 0 )); then
  echo "check-format: ${#differ[@]} file(s) differ from $format's output (fix: scripts/check-format.sh --fix):" >&2
  for file in "${differ[@]}"; do
    echo "--- $file" >&2
    "$format" "$file" | diff "$file" - | head -20 >&2 || true
  done
  exit 1
fi
echo "check-format: ${#files[@]} files formatted as $format writes them"
