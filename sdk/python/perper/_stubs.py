"""Imports the generated grpc2 stubs (never committed).

They are generated into the package, `perper/grpc2/<name>_pb2.py`, by the build: the CMake
target perper_python_stubs (in <build>/python) or `pip install ./sdk/python`.
"""

from __future__ import annotations

try:
    from perper.grpc2 import executions_pb2, executions_pb2_grpc  # noqa: F401
    from perper.grpc2 import instances_pb2, instances_pb2_grpc  # noqa: F401
    from perper.grpc2 import introspection_pb2, introspection_pb2_grpc  # noqa: F401
    from perper.grpc2 import model_pb2  # noqa: F401
    from perper.grpc2 import states_pb2, states_pb2_grpc  # noqa: F401
    from perper.grpc2 import streams_pb2, streams_pb2_grpc  # noqa: F401
except ImportError as e:  # a setup error, reported clearly
    import sys

    missing = getattr(e, "name", None) or ""
    if missing == "perper.grpc2" or missing.startswith("perper.grpc2."):
        raise ImportError(
            "perper: the generated grpc2 stubs were not found: this is the source tree, not a "
            "built package. Install it (pip install ./sdk/python) or use the build's "
            "<build>/python (CMake target perper_python_stubs).") from e
    # The stubs are there, but what they import is not: the wrong interpreter.
    raise ImportError(
        f"perper: {sys.executable} cannot import {missing or 'a dependency'} ({e}). The Python "
        "SDK needs grpcio and protobuf: on Debian, apt install python3-grpcio python3-protobuf "
        "and run /usr/bin/python3 (for perper up: PERPER_PYTHON=/usr/bin/python3, or the "
        "manifest's command).") from e
