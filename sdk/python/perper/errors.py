"""Exceptions raised by the Perper SDK."""

from __future__ import annotations

# The Fabric's limit on an error text (an execution's or a stream's), in UTF-8 bytes.
MAX_ERROR_BYTES = 64 * 1024


def bounded_error_text(text: str) -> str:
    """`text` cut to what the Fabric accepts as an error message, with a note of its length, so
    that a handler's long exception still fails its execution or stream instead of the completion
    being refused."""
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_ERROR_BYTES:
        return text
    note = f" …[cut: {len(data)} bytes in all]"
    kept = data[:MAX_ERROR_BYTES - len(note.encode("utf-8"))].decode("utf-8", "ignore")
    return kept + note


class PerperError(Exception):
    """Base class of every error the SDK raises."""


class PerperTypeError(PerperError, TypeError):
    """A value could not be packed, or a stored value is not of the type the reader asked for."""


class PerperValueError(PerperError, ValueError):
    """A value of a packable type that cannot travel exactly (an int beyond 2**53 inside a
    Struct); the message names the key path."""


class ExecutionFailedError(PerperError):
    """The called delegate failed; `message` is the error it completed its execution with."""

    def __init__(self, execution: str, message: str) -> None:
        super().__init__(f"execution {execution} failed: {message}")
        self.execution = execution
        self.message = message


class ExecutionCancelledError(PerperError):
    """The execution was deleted (cancelled) before it finished."""

    def __init__(self, execution: str) -> None:
        super().__init__(f"execution {execution} was deleted before it finished")
        self.execution = execution


class StreamFailedError(PerperError):
    """The stream was completed with an error, or deleted, while it was being enumerated."""

    def __init__(self, stream: str, message: str) -> None:
        super().__init__(message)
        self.stream = stream
        self.message = message


class ReservationRefusedError(PerperError):
    """The Fabric refused the process's reservation call (ListenAndReserve) for good, e.g.
    INVALID_ARGUMENT for a workgroup over its ID limit: the process cannot serve its agent."""

    def __init__(self, agent: str, code: str, details: str) -> None:
        super().__init__(f"the Fabric refused the reservation call of agent {agent}: "
                         f"{code}: {details}")
        self.agent = agent
        self.code = code
        self.details = details
