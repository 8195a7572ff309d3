"""The daemon's activity feed: what happened lately, numbered, for long-polling clients.

Goals: a document-management system, the dashboard or the demo can follow deliveries,
receipts, arrivals and status reports as they happen by asking for the events after the last
number it saw (``GET /api/v1/events?after=N&wait=S``), without polling the store. Memory is
bounded: the newest ``capacity`` events are kept. Non-goals: durability (the feed restarts
empty with a new ``boot`` identifier when the daemon restarts; the store remains the record
of everything, read through the other endpoints).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from typing import Final

import trio

__all__ = ["Activity", "Event"]

Event = dict[str, object]
"""``{"seq": int, "at": ms since the epoch, "kind": str, ...}``; see docs/http-api.md."""

DEFAULT_CAPACITY: Final = 2000


class Activity:
    """A bounded, numbered list of recent events.

    Args:
        now_ms: the wall clock (milliseconds since the epoch) stamping each event.
        capacity: events kept.
    """

    def __init__(self, now_ms: Callable[[], int], capacity: int = DEFAULT_CAPACITY) -> None:
        self._now_ms = now_ms
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._changed = trio.Event()
        self.boot = secrets.token_hex(8)
        """Changes at every start: a client seeing another value starts again from 0."""

    @property
    def last(self) -> int:
        """The number of the newest event (0 before the first)."""
        return self._seq

    def emit(self, kind: str, **fields: object) -> Event:
        """Record an event and wake every waiter."""
        self._seq += 1
        event: Event = {"seq": self._seq, "at": self._now_ms(), "kind": kind, **fields}
        self._events.append(event)
        self._changed.set()
        self._changed = trio.Event()
        return event

    def since(self, after: int, *, limit: int = 500) -> list[Event]:
        """Events numbered above ``after``, oldest first, at most ``limit``."""
        out = [e for e in self._events if int(str(e["seq"])) > after]
        return out[:limit]

    async def wait(self, after: int, seconds: float, *, limit: int = 500) -> list[Event]:
        """Like :meth:`since`, but waits up to ``seconds`` for a first event."""
        with trio.move_on_after(max(0.0, seconds)):
            while self._seq <= after:
                await self._changed.wait()
        return self.since(after, limit=limit)
