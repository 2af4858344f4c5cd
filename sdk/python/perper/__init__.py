"""Perper agent SDK for Python (asyncio, grpc.aio)."""

from __future__ import annotations

# The build (CMake, or the pip build backend) writes the grpc2 stubs and _version.py into the
# package: the sources alone are not importable, and _stubs says so.
from perper import _stubs  # noqa: F401
from perper._version import __version__
from perper import _logging

_logging.configure()

from perper.errors import (  # noqa: E402
    ExecutionCancelledError, ExecutionFailedError, PerperError, PerperTypeError,
    PerperValueError, ReservationRefusedError, StreamFailedError)
from perper.values import pack, unpack  # noqa: E402
from perper.connection import FabricConnection  # noqa: E402
from perper.model import (  # noqa: E402
    Agent, Changes, Dictionary, Execution, List, StepResult, Stream, StreamProgress)
from perper.context import (  # noqa: E402
    call, current_agent, current_execution, dictionary, get_connection, list_state,
    start_agent, state, stream, blank_stream, declare_stream, stream_progress,
    DeclaredStream)
from perper.application import (  # noqa: E402
    Application, StreamDelegate, connect, run, run_notebook, stream_delegate)

__all__ = [
    "__version__", "Agent", "Application", "Changes", "DeclaredStream", "Dictionary", "Execution",
    "ExecutionCancelledError", "ExecutionFailedError", "FabricConnection", "List", "PerperError",
    "PerperTypeError", "PerperValueError", "ReservationRefusedError", "StepResult", "Stream",
    "StreamDelegate", "StreamFailedError", "StreamProgress", "blank_stream", "call", "connect",
    "current_agent", "current_execution", "declare_stream", "dictionary", "get_connection",
    "list_state", "pack", "run", "run_notebook", "start_agent", "state", "stream",
    "stream_delegate", "stream_progress", "unpack",
]
