"""The node's wall clock, derived from trio's clock so that a virtual clock drives both."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Protocol

import trio

__all__ = ["Clock", "TrioWallClock"]


class Clock(Protocol):
    """Wall-clock time for signed records and durable schedules."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class TrioWallClock:
    """Wall time = an epoch fixed at the first reading + trio's elapsed time.

    Under ``trio.testing.MockClock`` the wall clock moves with virtual time, so timeouts,
    retries and the timestamps in receipts stay consistent in simulations.

    Args:
        epoch_ms: the wall time at trio time 0 of the first reading; ``None`` reads the system
            clock once.
    """

    def __init__(self, epoch_ms: int | None = None) -> None:
        self._epoch_ms = epoch_ms
        self._offset: float | None = None

    def now_ms(self) -> int:
        now = trio.current_time()
        if self._offset is None:
            start = self._epoch_ms if self._epoch_ms is not None else time.time() * 1000
            self._offset = start - now * 1000
        return int(self._offset + now * 1000)

    def now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.now_ms() / 1000, _dt.UTC)


def to_datetime(ms: int) -> _dt.datetime:
    """A UTC datetime from epoch milliseconds."""
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)
