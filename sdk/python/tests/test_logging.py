"""The SDK's log lines: the C++ SDK's format, the level from PERPER_LOG_LEVEL, and what is
logged (serving once a Fabric answered, reconnecting, reconnected, a failed handler, a signal),
read from the stderr of real agent processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from typing import Callable

import pytest

import perper

from conftest import FabricProcess, python_env, run, session
from test_connection import free_address

AGENT = """
import perper

async def fail():
    raise ValueError("boom")

perper.run("LogTest", {"Fail": fail})
"""
# "2026-11-27T02:07:58.961 I sdk: ...", as spdlog writes the C++ SDK's lines.
PREFIX = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "


class AgentProcess:
    """The agent above as a process; its stderr lines are collected as they come."""

    def __init__(self, tmp_path, address: str, **env: str) -> None:
        script = tmp_path / "log_agent.py"
        script.write_text(AGENT)
        self.process = subprocess.Popen([sys.executable, str(script)],
                                        env=python_env(address, **env),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 20) -> int:
        """Waits for a line that satisfies `predicate`; returns its index."""
        def found() -> int:
            return next((i for i, line in enumerate(self.lines) if predicate(line)), -1)
        with self._changed:
            assert self._changed.wait_for(lambda: found() >= 0, timeout), self.lines
            return found()

    def stop(self) -> int:
        """SIGTERM; returns the exit code once stderr is read to its end."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        self._reader.join(15)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(15)


def call_fail(address: str) -> str:
    async def body() -> str:
        async with session(address):
            with pytest.raises(perper.ExecutionFailedError) as error:
                await perper.Agent("LogTest", "log-1").call("Fail")
            return error.value.message
    return run(body())


def test_lines_have_the_cpp_format_and_serving_waits_for_a_fabric(tmp_path, fabric):
    dead = free_address()
    agent = AgentProcess(tmp_path, f"{dead},{fabric.address}", PERPER_FABRIC_ENDPOINT_INDEX="0")
    try:
        serving = agent.wait_for_line(lambda line: "serving from" in line)
        assert call_fail(fabric.address) == "ValueError: boom"
        failed = agent.wait_for_line(lambda line: "Fail failed" in line)
        assert agent.stop() == 0
    finally:
        agent.kill()
    lines = agent.lines
    # Logged once the listen calls were answered, by the Fabric that answered.
    assert re.fullmatch(PREFIX + re.escape(f"I sdk: [agent=LogTest] serving from {fabric.address}"
                                           " (concurrency 64, workgroup '')"), lines[serving])
    moved = agent.wait_for_line(
        lambda line: f"W sdk: [agent=LogTest] Fabric {dead} unavailable; moving to "
                     f"{fabric.address}" in line)
    assert moved < serving
    assert not any(f"serving from {dead}" in line for line in lines)
    assert re.fullmatch(PREFIX + r"W sdk: \[agent=LogTest exec=Fail-[0-9a-f-]{36}\] Fail failed: "
                        r"ValueError: boom", lines[failed])
    assert re.fullmatch(PREFIX + r"I sdk: \[agent=LogTest\] signal 15: stopping", lines[-1])


def test_the_level_comes_from_the_environment(tmp_path, fabric):
    agent = AgentProcess(tmp_path, fabric.address, PERPER_LOG_LEVEL="error")
    try:
        assert call_fail(fabric.address) == "ValueError: boom"  # served, and failed
        assert agent.stop() == 0
    finally:
        agent.kill()
    assert agent.lines == []

    bad = subprocess.run([sys.executable, "-c", AGENT], capture_output=True, text=True,
                         timeout=30, env=python_env(fabric.address, PERPER_LOG_LEVEL="loud"))
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1] == (
        "ValueError: PERPER_LOG_LEVEL must be trace, debug, info, warn, error or off, got 'loud'")


def test_reconnecting_and_reconnected_are_logged(tmp_path, fabric):
    other = FabricProcess()
    agent = AgentProcess(tmp_path, f"{fabric.address},{other.address}",
                         PERPER_FABRIC_ENDPOINT_INDEX="0")
    try:
        agent.wait_for_line(lambda line: f"serving from {fabric.address}" in line)
        fabric.kill()
        reconnected = agent.wait_for_line(
            lambda line: f"[agent=LogTest] listen call reconnected to "
                         f"{other.address}" in line)
        ended = agent.wait_for_line(
            lambda line: "[agent=LogTest] listen call ended (14 " in line)
        assert ended < reconnected
        assert re.fullmatch(PREFIX + r"W sdk: \[agent=LogTest\] listen call ended "
                            r"\(14 .*\); reconnecting in \d+ ms", agent.lines[ended])
        assert re.fullmatch(PREFIX + "I sdk: .*", agent.lines[reconnected])
        assert agent.stop() == 0
    finally:
        agent.kill()
        other.stop()
