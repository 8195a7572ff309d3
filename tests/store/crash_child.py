"""Child process for the crash-safety test: write as fast as possible, report every ack.

Usage: ``python crash_child.py DB_PATH RUN_LABEL WRITERS``

Prints ``ready`` once the store is open, then ``<key>`` on its own line (flushed) right after
each ``write`` of that key's batch returned. Each batch is a block (size derived from the key),
a record naming it, and a pin. The parent kills this process with SIGKILL at a random moment.
Bounded: every writer stops after 100,000 batches.
"""

from __future__ import annotations

import hashlib
import sys

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.store import Pin, PutBlock, PutRecord, SQLiteStore

MAX_BATCHES = 100_000


def block_for(key: str) -> tuple[Cid, bytes]:
    """The block a key's batch writes: 1 byte .. 256 KiB, bytes derived from the key."""
    digest = hashlib.sha256(key.encode()).digest()
    size = 1 + int.from_bytes(digest[:4], "big") % (256 * 1024)
    data = (digest * (size // 32 + 1))[:size]
    return Cid.of(Multicodec.RAW, data), data


async def writer(store: SQLiteStore, label: str, index: int) -> None:
    for i in range(MAX_BATCHES):
        key = f"{label}-{index}-{i:06d}"
        cid, data = block_for(key)
        await store.write(
            [PutBlock(cid, data), PutRecord("acked", key, {"cid": cid}), Pin(key, (cid,))]
        )
        sys.stdout.write(key + "\n")
        sys.stdout.flush()


async def main(path: str, label: str, writers: int) -> None:
    store = await SQLiteStore.open(path)
    print("ready", flush=True)
    async with trio.open_nursery() as nursery:
        for index in range(writers):
            nursery.start_soon(writer, store, label, index)
    await store.aclose()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
