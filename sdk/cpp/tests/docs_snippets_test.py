"""The C++ code in the tutorials of docs/sdk-cpp.md is taken from the examples: every line of
each ```cpp block of a "## Tutorial" section must appear, in order, in one file under
examples/cpp/ (indentation aside; a line "// ..." in the block stands for omitted lines), so the
tutorial cannot drift from code that builds and runs.

    python3 docs_snippets_test.py DOC EXAMPLES_DIR
"""
import pathlib
import re
import sys


def tutorial_blocks(doc: str) -> list[list[str]]:
    blocks, in_tutorial, block = [], False, None
    for line in doc.splitlines():
        if line.startswith("## "):
            in_tutorial = line.startswith("## Tutorial")
        if not in_tutorial:
            continue
        if block is None and line.strip() == "```cpp":
            block = []
        elif block is not None and line.strip() == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block.append(line.strip())
    return blocks


def contains_in_order(source: list[str], lines: list[str]) -> bool:
    position = 0
    for line in lines:
        if not line or line.startswith("// ..."):
            continue
        while position < len(source) and source[position] != line:
            position += 1
        if position == len(source):
            return False
        position += 1
    return True


def main() -> int:
    doc = pathlib.Path(sys.argv[1]).read_text()
    sources = {path: [l.strip() for l in path.read_text().splitlines()]
               for path in pathlib.Path(sys.argv[2]).rglob("*.cc")}
    blocks = tutorial_blocks(doc)
    if not blocks:
        print("no C++ blocks found in the tutorials")
        return 1
    failures = 0
    for block in blocks:
        if not any(contains_in_order(source, block) for source in sources.values()):
            failures += 1
            print("not found in any example, in this order:\n  " + "\n  ".join(block))
    print(f"{len(blocks) - failures} of {len(blocks)} tutorial blocks match an example")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
