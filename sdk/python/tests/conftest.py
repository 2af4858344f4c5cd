"""Fixtures: a real perper-fabric process on a free loopback port, and an SDK session on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Coroutine, Mapping, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[3]
try:
    import perper
except ImportError:  # pytest run by hand: the package the build lays out (CMake's ctest sets it)
    sys.path.insert(0, str(REPO / "build" / "python"))
    import perper
from perper import _ambient  # noqa: E402

# Where `perper` was imported from (not resolved: its files link into the source tree), so that
# the agent processes the tests start import the same package.
PACKAGE_PATH = str(Path(perper.__file__).parent.parent)


def fabric_binary() -> str:
    binary = os.environ.get("PERPER_FABRIC_BINARY")
    if not binary:
        for candidate in ("build", "build-python"):
            path = REPO / candidate / "apps" / "perper-fabric"
            if path.exists():
                return str(path)
        pytest.fail("PERPER_FABRIC_BINARY is not set and no built perper-fabric was found; "
                    "build it first (scripts/build.sh)")
    return binary


class FabricProcess:
    """A perper-fabric child process listening on `listen`: memory storage, or rocksdb in
    `data_dir` when given."""

    def __init__(self, listen: str = "127.0.0.1:0", data_dir: Optional[str] = None,
                 extra_args: Sequence[str] = ()) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="perper-py-")
        address_file = Path(self._dir.name) / "address"
        storage = ["--storage", "rocksdb", "--data-dir", data_dir, "--sync", "false"] \
            if data_dir else ["--storage", "memory"]
        self.process = subprocess.Popen(
            [fabric_binary(), *storage, "--listen", listen, "--address-file",
             str(address_file), "--log-level", "warn", *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not (address_file.exists() and address_file.read_text().strip()):
            if self.process.poll() is not None:
                raise RuntimeError("perper-fabric exited: " + self.process.stderr.read().decode())
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("perper-fabric did not write its address")
            time.sleep(0.01)  # polling a file the child writes; not synchronising on time
        self.address = address_file.read_text().strip()

    def kill(self) -> None:
        """Kills the Fabric (SIGKILL), as a crash would."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """Stops the Fabric (SIGTERM); safe to call twice."""
        if self.process.returncode is not None and self.process.stderr.closed:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()
        self._dir.cleanup()


@pytest.fixture
def fabric() -> Any:
    """A fresh Fabric for one test; yields the FabricProcess (use .address)."""
    process = FabricProcess()
    try:
        yield process
    finally:
        process.stop()


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    """Runs a test body on a fresh event loop, failing after `timeout` seconds."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, timeout)
    try:
        return asyncio.run(bounded())
    finally:
        _ambient.set_default_context(None)


@contextlib.asynccontextmanager
async def session(address: str, agent: str = "test",
                  handlers: Optional[Mapping[str, Any]] = None,
                  **options: Any) -> AsyncIterator[perper.Application]:
    """Connects (notebook style) as `agent`, serving `handlers`, until the block ends."""
    application = await perper.connect(agent, endpoint=address, handlers=handlers, **options)
    try:
        await application.ready(10)
        yield application
    finally:
        await application.stop()
        _ambient.set_default_context(None)


def start_restart_agent(role: str, address: str, **env: str) -> subprocess.Popen:
    """Starts a process of tests/restart_agents.py in `role` (see there) on the Fabric at
    `address`, with extra environment variables `env`."""
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("restart_agents.py")),
                             role], env=python_env(address, **env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def kill(*processes: Optional[subprocess.Popen]) -> None:
    """Kills the processes (SIGKILL, as a crash would) and waits for them; None is skipped."""
    for process in processes:
        if process is not None:
            process.kill()
            process.wait()
            process.stderr.close()


def python_env(address: str, **extra: str) -> dict[str, str]:
    """The environment of an agent process: PYTHONPATH, PERPER_FABRIC_ENDPOINT, extras."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_PATH, env.get("PYTHONPATH", "")) if p)
    env["PERPER_FABRIC_ENDPOINT"] = address
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
