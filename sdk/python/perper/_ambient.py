"""The ambient context of the running code (contextvars), shared by the SDK's modules."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from perper.errors import PerperError

if TYPE_CHECKING:
    from perper.connection import FabricConnection
    from perper.model import Agent


@dataclass(frozen=True)
class Context:
    """What a handler runs in: the connection, its instance, its execution, its application."""

    connection: "FabricConnection"
    agent: "Agent"
    execution: str
    application: Optional[Any] = None


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


def get_connection() -> "FabricConnection":
    """Returns the FabricConnection of the current context."""
    return current().connection
