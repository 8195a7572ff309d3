"""Batch signing of evidence: records that arrive within a few milliseconds share a signature."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from p2pdoc.delivery.evidence import EvidenceSigner, sign_batch
from p2pdoc.node.clock import Clock
from p2pdoc.node.config import EvidenceConfig

__all__ = ["EvidenceBatcher"]


class _Request:
    __slots__ = ("bodies", "done", "result")

    def __init__(self, bodies: Sequence[bytes]) -> None:
        self.bodies = bodies
        self.done = trio.Event()
        self.result: list[bytes] = []


class EvidenceBatcher:
    """Collects record bodies and signs them in batches (see :mod:`p2pdoc.delivery.evidence`).

    Run :meth:`run` in a nursery; call :meth:`sign` from any task. A batch is signed when it
    holds ``max_batch`` records or ``max_delay`` after its first record arrived.
    """

    def __init__(self, signer: EvidenceSigner, clock: Clock, config: EvidenceConfig) -> None:
        self._signer = signer
        self._clock = clock
        self._config = config
        self._queue: list[_Request] = []
        self._queued = 0
        self._wakeup = trio.Event()
        self.batches = 0
        self.records = 0

    async def sign(self, bodies: Sequence[bytes]) -> list[bytes]:
        """Encoded evidence for each body, in order, once its batch is signed."""
        request = _Request(bodies)
        self._queue.append(request)
        self._queued += len(bodies)
        self._wakeup.set()
        await request.done.wait()
        return request.result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            if self._queued < self._config.max_batch:
                with trio.move_on_after(self._config.max_delay):
                    while self._queued < self._config.max_batch:
                        await self._wakeup.wait()
                        self._wakeup = trio.Event()
            self._flush()

    def _flush(self) -> None:
        while self._queue:
            taken: list[_Request] = []
            count = 0
            while self._queue and (
                not taken or count + len(self._queue[0].bodies) <= self._config.max_batch
            ):
                request = self._queue.pop(0)
                taken.append(request)
                count += len(request.bodies)
            self._queued -= count
            bodies = [body for request in taken for body in request.bodies]
            evidence = sign_batch(bodies, self._signer, self._clock.now_ms())
            self.batches += 1
            self.records += len(bodies)
            start = 0
            for request in taken:
                request.result = evidence[start : start + len(request.bodies)]
                start += len(request.bodies)
                request.done.set()
