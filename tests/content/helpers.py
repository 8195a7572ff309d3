"""Shared test helpers: the vector fixture, its input generator, and a recording store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from p2pdoc.codecs.cid import Cid
from p2pdoc.store.base import PutBlock, WriteOp
from p2pdoc.store.memory import MemoryStore

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "unixfs.json"


@cache
def fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text("utf-8"))
    return data


def vector_bytes(seed: str, length: int) -> bytes:
    """The fixture's generator: SHA-256(seed || uint64_be(i)) for i = 0, 1, ..., truncated."""
    prefix = seed.encode("utf-8")
    count = (length + 31) // 32
    return b"".join(hashlib.sha256(prefix + i.to_bytes(8, "big")).digest() for i in range(count))[
        :length
    ]


class RecordingStore(MemoryStore):
    """A :class:`MemoryStore` that also records each ``write`` batch and the blocks put."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[WriteOp]] = []
        self.put_cids: dict[Cid, None] = {}

    async def write(self, ops: Sequence[WriteOp]) -> None:
        await super().write(ops)
        self.batches.append(list(ops))
        self.put_cids.update((op.cid, None) for op in ops if isinstance(op, PutBlock))
