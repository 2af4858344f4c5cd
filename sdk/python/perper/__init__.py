"""Perper agent SDK for Python (asyncio, grpc.aio)."""

from __future__ import annotations

import os
import pkgutil

# The generated grpc2 stubs live in a `perper/grpc2` folder outside this source tree (the build
# tree); extend the package path so that `perper.grpc2.*_pb2` resolves.
__path__ = pkgutil.extend_path(__path__, __name__)  # type: ignore[name-defined]
_stubs_dir = os.environ.get("PERPER_PYTHON_STUBS")
if _stubs_dir and os.path.join(_stubs_dir, "perper") not in __path__:
    __path__.append(os.path.join(_stubs_dir, "perper"))

from perper.errors import (  # noqa: E402
    ExecutionCancelledError, ExecutionFailedError, PerperError, PerperTypeError,
    PerperValueError, StreamFailedError)
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
    "Agent", "Application", "Changes", "DeclaredStream", "Dictionary", "Execution",
    "ExecutionCancelledError", "ExecutionFailedError", "FabricConnection", "List", "PerperError",
    "PerperTypeError", "PerperValueError", "StepResult", "Stream", "StreamDelegate",
    "StreamFailedError", "StreamProgress", "blank_stream", "call", "connect", "current_agent",
    "current_execution", "declare_stream", "dictionary", "get_connection", "list_state", "pack",
    "run", "run_notebook", "start_agent", "state", "stream", "stream_delegate",
    "stream_progress", "unpack",
]
