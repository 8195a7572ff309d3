"""Retry timing: exponential back-off with seeded jitter (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from p2pdoc.errors import InvalidValue

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When to try a failed delivery again.

    The n-th retry waits ``min(maximum, initial * factor ** (n - 1))`` seconds, spread by
    ``±jitter`` (a fraction) so that many senders recovering from one outage do not retry in
    step. With the defaults: about 2 s, 6 s, 18 s, 54 s, 2.7 min, 8 min, then every 20 min.
    """

    initial: float = 2.0
    """Seconds before the first retry."""
    factor: float = 3.0
    """Growth of the wait from one retry to the next."""
    maximum: float = 1200.0
    """Longest wait between attempts, in seconds."""
    jitter: float = 0.2
    """Relative spread of each wait: 0.2 means ±20 %."""

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.factor >= 1 and self.maximum >= self.initial):
            raise InvalidValue("retry policy needs initial > 0, factor >= 1, maximum >= initial")
        if not 0 <= self.jitter < 1:
            raise InvalidValue("retry jitter must be in [0, 1)")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise InvalidValue("attempt numbers start at 1")
        base = min(self.maximum, self.initial * self.factor ** min(attempt - 1, 64))
        return base * (1 + self.jitter * (2 * rng.random() - 1))

    def retry_at(self, attempt: int, now_ms: int, rng: random.Random) -> int:
        """Wall-clock milliseconds of the next attempt after failed attempt ``attempt``."""
        return now_ms + round(self.delay(attempt, rng) * 1000)
