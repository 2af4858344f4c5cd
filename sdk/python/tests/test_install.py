"""`pip install ./sdk/python`, offline: into a fresh virtual environment that sees Debian's grpcio
and protobuf (--system-site-packages), and with --user; the installed package has the project's
version and its agents reach a real Fabric."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

from conftest import REPO

SDK = REPO / "sdk" / "python"

AGENT = """
import perper

async def deploy():
    print("doubled:", await perper.call("Double", 21), flush=True)

perper.run("Installed", {"Deploy": deploy, "Double": lambda x: 2 * x})
"""


def project_version() -> str:
    """The project's version: CMake's, as ctest passes it, else read from CMakeLists.txt."""
    return os.environ.get("PERPER_VERSION") or re.search(
        r"project\(\s*perper\s+VERSION\s+([0-9.]+)", (REPO / "CMakeLists.txt").read_text()
    ).group(1)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the build tree's package (ctest puts it on PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONUSERBASE")}
    env.update(extra)
    return env


def pip_install(python: str, *args: str, env: dict[str, str]) -> None:
    # --no-index: nothing may come from a package index (the machine may be offline).
    result = subprocess.run([python, "-m", "pip", "install", "--no-index", *args, str(SDK)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def imported(python: str, env: dict[str, str]) -> tuple[str, str]:
    """(perper.__version__, perper.__file__) as `python` imports it."""
    result = subprocess.run(
        [python, "-c", "import perper; print(perper.__version__); print(perper.__file__)"],
        env=env, capture_output=True, text=True, timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    version, path = result.stdout.split()
    return version, path


def test_pip_install_into_a_virtual_environment_then_run_an_agent(tmp_path, fabric):
    environment = tmp_path / "venv"
    venv.create(environment, system_site_packages=True, with_pip=True)
    python = str(environment / "bin" / "python")
    env = clean_env()
    pip_install(python, env=env)

    version, path = imported(python, env)
    assert version == project_version()
    assert Path(path).is_relative_to(environment), path

    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    # The agent serves until SIGTERM: "serving" is logged once every listen call has started,
    # which may come after Deploy returns, so the process must outlive both.
    process = subprocess.Popen([python, str(agent)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/",
                               env=clean_env(PERPER_FABRIC_ENDPOINT=fabric.address))
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda: out.extend(process.stdout), daemon=True),
               threading.Thread(target=lambda: err.extend(process.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    serving = f"[agent=Installed] serving from {fabric.address}"
    try:
        deadline = time.monotonic() + 60
        while not (out and any(serving in line for line in err)):
            assert process.poll() is None, "".join(err)
            assert time.monotonic() < deadline, "".join(out + err)
            time.sleep(0.05)  # polls the readers' lists; the condition is checked above
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=10)
    assert returncode == 0, "".join(err)
    assert "".join(out) == "doubled: 42\n"


def test_pip_install_user(tmp_path):
    # Debian marks its Python as externally managed (PEP 668): a --user install needs
    # --break-system-packages, which writes to the user's site only (here a temporary one).
    env = clean_env(PYTHONUSERBASE=str(tmp_path / "user"))
    pip_install(sys.executable, "--user", "--break-system-packages", env=env)
    version, path = imported(sys.executable, env)
    assert version == project_version()
    assert Path(path).is_relative_to(tmp_path / "user"), path
