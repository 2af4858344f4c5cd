"""The ambient context of the running code (contextvars), shared by the SDK's modules."""

from __future__ import annotations

import contextvars
import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from perper.errors import PerperError

if TYPE_CHECKING:
    from perper.connection import FabricConnection
    from perper.model import Agent, KeptCalls


class DerivedIds:
    """The IDs one run of an execution makes, derived from the execution's ID instead of drawn
    at random, so that a re-run of the execution (after its process died) makes the same IDs and
    thereby finds the same calls, instances and streams instead of making duplicates.

    The n-th ID (n = 1, 2, ...) with prefix P is "P-{uuid}", uuid being the first 16 bytes of
    SHA-256("{execution}\n{n}") formatted 8-4-4-4-12 (the same in every Perper SDK). Use from
    one event loop; one object per execution run.
    """

    def __init__(self, execution: str) -> None:
        self.execution = execution
        self._count = 0

    def next(self, prefix: str) -> str:
        self._count += 1
        digest = hashlib.sha256(f"{self.execution}\n{self._count}".encode("utf-8")).digest()
        return f"{prefix}-{uuid.UUID(bytes=digest[:16])}"


@dataclass(frozen=True)
class Context:
    """What a handler runs in: the connection, its instance, its execution, its application.

    `ids` is set for a real execution (one handed out by the Fabric, or a recorded Deploy): the
    IDs its handler makes are derived from the execution's ID. Elsewhere they are random.
    `kept` holds the finished calls that run keeps for a re-run (perper.model.KeptCalls).
    """

    connection: "FabricConnection"
    agent: "Agent"
    execution: str
    application: Optional[Any] = None
    ids: Optional[DerivedIds] = None
    kept: Optional["KeptCalls"] = None


current_context: contextvars.ContextVar[Context] = contextvars.ContextVar("perper_context")

# Used where no context variable is set (a notebook cell, a REPL): set by perper.connect().
_default_context: Optional[Context] = None


def set_default_context(context: Optional[Context]) -> None:
    """Sets the context used by code that runs outside any handler (notebooks, REPLs)."""
    global _default_context
    _default_context = context


def current() -> Context:
    """Returns the context of the running handler, or the default one. Raises PerperError."""
    context = current_context.get(None) or _default_context
    if context is None:
        raise PerperError(
            "no Perper context: call this from a handler run by perper.run(), or after "
            "await perper.connect()")
    return context


def new_id(prefix: str) -> str:
    """Returns a fresh ID "{prefix}-{uuid}" (the upstream convention): derived inside a real
    execution (see DerivedIds), random elsewhere."""
    context = current_context.get(None)
    if context is not None and context.ids is not None:
        return context.ids.next(prefix)
    return f"{prefix}-{uuid.uuid4()}"


def in_execution() -> bool:
    """Tells whether the running code is a real execution's handler (its IDs are derived)."""
    context = current_context.get(None)
    return context is not None and context.ids is not None


def get_connection() -> "FabricConnection":
    """Returns the FabricConnection of the current context."""
    return current().connection
