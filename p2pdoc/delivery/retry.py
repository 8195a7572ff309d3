"""Retry timing: exponential back-off with seeded jitter (pure)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from p2pdoc.errors import InvalidValue

__all__ = ["MAX_FACTOR", "MAX_WAIT", "RetryPolicy"]

MAX_FACTOR = 1000.0
"""Largest growth factor: beyond it the second wait already exceeds any sensible maximum."""
MAX_WAIT = 10 * 366 * 86400
"""Longest wait between attempts and longest delivery deadline, in seconds (ten years):
millisecond times computed from it stay well inside 64-bit integers."""


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
        values = (self.initial, self.factor, self.maximum, self.jitter)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise InvalidValue("retry policy values must be finite numbers")
        if not (self.initial > 0 and self.maximum >= self.initial):
            raise InvalidValue("retry policy needs initial > 0 and maximum >= initial")
        if not 1 <= self.factor <= MAX_FACTOR:
            raise InvalidValue(f"retry factor must be in [1, {MAX_FACTOR}]")
        if self.maximum > MAX_WAIT:
            raise InvalidValue(f"the longest retry wait is {MAX_WAIT} s (ten years)")
        if not 0 <= self.jitter < 1:
            raise InvalidValue("retry jitter must be in [0, 1)")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise InvalidValue("attempt numbers start at 1")
        # factor <= 1000 and the exponent <= 64 keep this within a float's range
        base = min(self.maximum, self.initial * self.factor ** min(attempt - 1, 64))
        return base * (1 + self.jitter * (2 * rng.random() - 1))

    def retry_at(self, attempt: int, now_ms: int, rng: random.Random) -> int:
        """Wall-clock milliseconds of the next attempt after failed attempt ``attempt``."""
        return now_ms + round(self.delay(attempt, rng) * 1000)
