"""Exceptions raised by the Perper SDK."""

from __future__ import annotations


class PerperError(Exception):
    """Base class of every error the SDK raises."""


class PerperTypeError(PerperError, TypeError):
    """A value could not be packed, or a stored value is not of the type the reader asked for."""


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
