# SPDX-License-Identifier: MIT
"""Fixtures: a real perper-fabric (the Python SDK tests' FabricProcess), the stand-in API
server, and the scaler as a real process configured to talk to both."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCALER_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(SCALER_ROOT))

# The SDK tests' fixtures (it also makes `perper` importable from the build when run by hand).
_spec = importlib.util.spec_from_file_location("perper_sdk_fixtures",
                                               REPO / "sdk/python/tests/conftest.py")
sdk_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sdk_fixtures)

from fake_apiserver import FakeApiServer  # noqa: E402

NAMESPACE = "perper-test"


fabric = sdk_fixtures.fabric


@pytest.fixture
def api() -> Any:
    server = FakeApiServer()
    try:
        yield server
    finally:
        server.close()


class ScalerProcess:
    """`python3 -m perper_k8s_scaler` with `config` (a dict, written as YAML), its kubeconfig
    pointing at the stand-in API server; its stderr is collected in `lines`."""

    def __init__(self, fabric_address: str, api: FakeApiServer, config: dict[str, Any],
                 workdir: Path) -> None:
        config_path = workdir / "scaler.yaml"
        config_path.write_text(yaml.safe_dump(config))
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig(NAMESPACE))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SCALER_ROOT), sdk_fixtures.PACKAGE_PATH, env.get("PYTHONPATH"))
            if p)
        env.update(KUBECONFIG=str(kubeconfig), PERPER_FABRIC_ENDPOINT=fabric_address,
                   PYTHONUNBUFFERED="1")
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "perper_k8s_scaler", "--config", str(config_path)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._condition = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._condition:
                self.lines.append(line.rstrip("\n"))
                self._condition.notify_all()

    def wait_for_line(self, text: str, timeout: float = 15.0) -> str:
        """Waits for a log line containing `text`; returns it."""
        def found() -> Optional[str]:
            return next((line for line in self.lines if text in line), None)
        with self._condition:
            if not self._condition.wait_for(found, timeout):
                raise TimeoutError(f"no log line with {text!r}; got: {self.lines}")
            return found()

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        self._reader.join(5)
        return code


@pytest.fixture
def start_scaler() -> Any:
    """start_scaler(fabric_address, api, config) → a running ScalerProcess, stopped at the end."""
    started: list[ScalerProcess] = []
    with tempfile.TemporaryDirectory(prefix="perper-k8s-") as directory:
        def start(fabric_address: str, api: FakeApiServer,
                  config: dict[str, Any]) -> ScalerProcess:
            workdir = Path(directory) / str(len(started))
            workdir.mkdir()
            scaler = ScalerProcess(fabric_address, api, config, workdir)
            started.append(scaler)
            return scaler
        try:
            yield start
        finally:
            for scaler in started:
                scaler.stop()
