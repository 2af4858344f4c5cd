"""Counters of the protocol messages the SDK sends and receives (read by the tests; not API).

Process-wide and not thread-safe: the SDK runs on one event loop. Tests call COUNTERS.reset()
before the part they measure.
"""

from __future__ import annotations


class Counters:
    """What the SDK's readers received and how its executions were completed."""

    __slots__ = ("listen_responses", "listen_items", "unary_completes",
                 "reservation_completions", "reservation_messages")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # Stream reading: response messages of ListenItems / ListenItemsAndMove, and the items
        # they carried.
        self.listen_responses = 0
        self.listen_items = 0
        # Execution completions: unary FabricExecutions.Complete calls, completions sent on a
        # ListenAndReserve call, and the messages (after the first) written on those calls.
        self.unary_completes = 0
        self.reservation_completions = 0
        self.reservation_messages = 0


COUNTERS = Counters()
