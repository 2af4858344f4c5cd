"""Imports the generated grpc2 stubs (built by sdk/python/CMakeLists.txt, never committed).

The generated modules live in `<stubs dir>/perper/grpc2/`. The package `perper` adds every
`perper` folder found on sys.path (and `$PERPER_PYTHON_STUBS/perper`) to its __path__, so the
stubs import as `perper.grpc2.<name>_pb2`.
"""

from __future__ import annotations

try:
    from perper.grpc2 import executions_pb2, executions_pb2_grpc  # noqa: F401
    from perper.grpc2 import instances_pb2, instances_pb2_grpc  # noqa: F401
    from perper.grpc2 import introspection_pb2, introspection_pb2_grpc  # noqa: F401
    from perper.grpc2 import model_pb2  # noqa: F401
    from perper.grpc2 import states_pb2, states_pb2_grpc  # noqa: F401
    from perper.grpc2 import streams_pb2, streams_pb2_grpc  # noqa: F401
except ImportError as e:  # pragma: no cover - a setup error, reported clearly
    raise ImportError(
        "perper: the generated grpc2 stubs were not found. Build the target "
        "perper_python_stubs (cmake) and put its output folder (<build>/sdk/python/python) "
        "on PYTHONPATH or in PERPER_PYTHON_STUBS.") from e
