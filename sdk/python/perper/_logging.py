"""The SDK's log lines, in the C++ SDK's format and at the level of PERPER_LOG_LEVEL:

    2026-11-27T02:07:58.961 I sdk: [agent=Hello] serving from 127.0.0.1:40400 (concurrency 64, ...

(local time, the level's letter T D I W E C, the component, then the message, IDs first). The
logger `perper` writes to stderr through its own handler and does not propagate, so that an
application's logging configuration neither repeats nor reformats these lines; to route them
elsewhere, replace its handlers (or clear them and set `propagate`).
"""

from __future__ import annotations

import logging
import os
import sys
import time

LEVEL_VARIABLE = "PERPER_LOG_LEVEL"
TRACE = 5
# The names the C++ SDK (spdlog) accepts; "off" logs nothing.
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR,
          "critical": logging.CRITICAL, "off": logging.CRITICAL + 10}
_LETTERS = {TRACE: "T", logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W",
            logging.ERROR: "E", logging.CRITICAL: "C"}

log = logging.getLogger("perper")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        letter = _LETTERS.get(record.levelno, record.levelname[:1])
        text = f"{when}.{int(record.msecs):03d} {letter} sdk: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _Handler(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (pytest and others replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_Formatter())

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class sets it; sys.stderr is always used
        pass


def level_from_environment() -> int:
    """The level PERPER_LOG_LEVEL names (default info); ValueError for another value, worded as
    in the C++ SDK."""
    value = os.environ.get(LEVEL_VARIABLE, "")
    if not value:
        return logging.INFO
    if value not in LEVELS:
        raise ValueError(f"{LEVEL_VARIABLE} must be trace, debug, info, warn, error or off, "
                         f"got '{value}'")
    return LEVELS[value]


def apply_environment() -> None:
    """Sets the level from PERPER_LOG_LEVEL; raises ValueError for a value it does not know."""
    log.setLevel(level_from_environment())


def configure() -> None:
    """Installs the handler (once) and the level; an unknown level is left to
    apply_environment(), which an Application calls, to report."""
    if not any(isinstance(handler, _Handler) for handler in log.handlers):
        log.addHandler(_Handler())
    log.propagate = False
    try:
        apply_environment()
    except ValueError:
        log.setLevel(logging.INFO)
