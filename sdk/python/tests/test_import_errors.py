"""What importing perper says when it cannot work: the error names the real cause."""

from __future__ import annotations

import subprocess
import sys


def _import_with_blocked(module: str) -> subprocess.CompletedProcess:
    # A module mapped to None in sys.modules cannot be imported: as in a Python without it.
    code = f"import sys; sys.modules[{module!r}] = None; import perper"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_python_without_grpc_is_named_not_the_stubs():
    result = _import_with_blocked("grpc")
    assert result.returncode != 0
    assert "cannot import grpc" in result.stderr
    assert "python3-grpcio" in result.stderr
    assert "stubs were not found" not in result.stderr


def test_a_python_without_protobuf_is_named_not_the_stubs():
    result = _import_with_blocked("google.protobuf")
    assert result.returncode != 0
    assert "cannot import google.protobuf" in result.stderr
    assert "stubs were not found" not in result.stderr


def test_missing_stubs_are_named():
    result = _import_with_blocked("perper.grpc2")
    assert result.returncode != 0
    assert "stubs were not found" in result.stderr
