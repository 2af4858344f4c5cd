# SPDX-License-Identifier: MIT
"""The scaler's command line and configuration errors: each names the file and the key, and
the process exits with 2 before it contacts anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import SCALER_ROOT, sdk_fixtures
from perper_k8s_scaler.config import ConfigError, load


def run_scaler(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(SCALER_ROOT),
                                                       sdk_fixtures.PACKAGE_PATH)))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run([sys.executable, "-m", "perper_k8s_scaler", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_help(tmp_path):
    result = run_scaler(tmp_path, "--help")
    assert result.returncode == 0
    assert "usage: perper-k8s-scaler" in result.stdout
    assert "--config" in result.stdout


@pytest.mark.parametrize("text, message", [
    ("agents:\n  Cart:\n    image: a\n    mode: fast\n",
     "agents.Cart.mode: expected instance, pool or external, got 'fast'"),
    ("agents:\n  Cart:\n    mode: instance\n",
     "agents.Cart.image: missing: a per-instance agent needs an image"),
    ("agents:\n  Cart:\n    image: a\n    imgae: b\n", "agents.Cart.imgae: unknown key"),
    ("agents:\n  Cart:\n    image: a\n    env: {X_PERPER_INSTANCE: x}\n",
     "agents.Cart.env.X_PERPER_INSTANCE: set by the scaler; remove it"),
    ("agents:\n  Pricing: {mode: pool, deployment: p, min: 3, max: 2}\n",
     "agents.Pricing.max: 2 is less than min (3)"),
    ("agents:\n  Pricing: {mode: pool, min: 1}\n",
     "agents.Pricing.deployment: missing: a pooled agent needs a Deployment name"),
    ("agents:\n  Pricing: {mode: pool, deployment: p, max: two}\n",
     "agents.Pricing.max: expected an integer, got str"),
    ("agents:\n  'Bad Agent!': {image: a}\n",
     "agents.Bad Agent!: an agent type must be a valid label value"),
    ("namespace: Shop\nagents:\n  Cart: {image: a}\n",
     "namespace: 'Shop' is not a valid namespace name"),
    ("agents: [Cart]\n", "agents: expected a mapping, got list"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    config = tmp_path / "scaler.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as error:
        load(str(config))
    assert str(error.value).startswith(f"{config}: {message}")


def test_a_config_error_stops_the_scaler_with_code_2(tmp_path):
    config = tmp_path / "scaler.yaml"
    config.write_text("agents:\n  Cart:\n    image: a\n    mode: fast\n")
    result = run_scaler(tmp_path, "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (f"perper-k8s-scaler: {config}: agents.Cart.mode: expected "
                             "instance, pool or external, got 'fast'\n")


def test_missing_config_file(tmp_path):
    result = run_scaler(tmp_path, "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert result.stderr == \
        f"perper-k8s-scaler: {tmp_path / 'absent.yaml'}: No such file or directory\n"
