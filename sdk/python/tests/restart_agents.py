"""Agent processes for the restart tests (test_stable_ids.py, test_steps.py): each is killed
with SIGKILL at some point and started again, and the tests check what the Fabric holds then.

Usage: restart_agents.py ROLE   (with PERPER_FABRIC_ENDPOINT set)
- rerun: serves agent "Rerun", delegate "Outer": makes a dictionary ID, calls Callee.Count,
  logs both in the dictionary "rerun-log"; its first run then hangs until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

import perper


async def outer():
    made = perper.dictionary().dictionary
    result = await perper.Agent("Callee", "callee-1").call("Count")
    log = perper.dictionary("rerun-log")
    runs = await log.update("outer-runs", lambda n: n + 1, 0)
    await log.set(f"run-{runs}", [made, result])
    if runs == 1:
        await asyncio.Event().wait()  # held until the process is killed
    return made, result


def main() -> None:
    role = sys.argv[1]
    if role == "rerun":
        perper.run("Rerun", {"Outer": outer})
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
