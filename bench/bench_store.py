"""SQLiteStore throughput against plain files and raw sqlite3, measured in the same run.

Usage::

    python bench/bench_store.py [--total-mb 400] [--block-kib 256] [--runs 3]
                                [--synchronous FULL|NORMAL] [--records 3000] [--writers 50]
                                [--dir /tmp]

**Blocks** (``--total-mb`` of distinct ``--block-kib`` blocks, the same bytes for every
method, each written to its own fresh database or directory):

- store put, 1 writer: one block per ``write``, each durable before the next;
- store put, 16 writers: the same from 16 concurrent tasks (group commit);
- files put (the baseline): one file per block, ``write`` + ``fsync(file)`` + ``fsync(dir)``
  with ``FULL`` (no fsync with ``NORMAL``, which is what SQLite's NORMAL promises too), from a
  plain loop without an event loop;
- store get (1 reader, then 4 concurrent readers) against ``open().read()`` of the files, in
  one shuffled order. Both read from the OS page cache (the data fits in memory).

The store verifies every block against its CID (SHA-256, about 0.2 ms per 256 KiB) as it does
for blocks from the network; the files do not.

**Small records** (``--records`` writes of one ~200-byte outbox-like record each): batches of
one from a single task, the same from ``--writers`` concurrent tasks (group commit), and the
baseline, a raw ``sqlite3`` loop with the same pragmas doing one ``INSERT`` + ``COMMIT`` per
record.

The methods run interleaved, a chunk each in turn (16 blocks, 100 records), so that a burst
of load from elsewhere on the machine hits all of them alike; ratios are computed within each
run and their median is reported with the median figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.store import PutBlock, PutRecord, SQLiteConfig, SQLiteStore

PUTTERS = 16
READERS = 4
BLOCK_CHUNK = 16
RECORD_CHUNK = 100


class Blocks:
    """The run's blocks: distinct bytes (a counter over random data), built on demand."""

    def __init__(self, count: int, size: int, seed: int) -> None:
        rng = random.Random(seed)
        self._bases = [rng.randbytes(size) for _ in range(8)]
        self.count = count
        self.size = size
        self.cids = [Cid.of(Multicodec.RAW, self.data(i)) for i in range(count)]

    def data(self, i: int) -> bytes:
        return i.to_bytes(8, "big") + self._bases[i % 8][8:]


class Timer:
    """Seconds accumulated per method."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, start: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def chunks(indexes: list[int], size: int) -> list[list[int]]:
    return [indexes[i : i + size] for i in range(0, len(indexes), size)]


# -- blocks ---------------------------------------------------------------------------------


def file_put(directory: Path, dir_fd: int, blocks: Blocks, indexes: list[int], sync: bool) -> None:
    for i in indexes:
        fd = os.open(directory / str(blocks.cids[i]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blocks.data(i))
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if sync:
            os.fsync(dir_fd)


def file_get(directory: Path, blocks: Blocks, indexes: list[int]) -> None:
    for i in indexes:
        with (directory / str(blocks.cids[i])).open("rb") as f:
            f.read()


async def put_concurrently(store: SQLiteStore, blocks: Blocks, indexes: list[int]) -> None:
    todo = list(indexes)

    async def putter() -> None:
        while todo:
            i = todo.pop()
            await store.write([PutBlock(blocks.cids[i], blocks.data(i))])

    async with trio.open_nursery() as nursery:
        for _ in range(PUTTERS):
            nursery.start_soon(putter)


async def get_concurrently(store: SQLiteStore, blocks: Blocks, indexes: list[int]) -> None:
    todo = list(indexes)

    async def getter() -> None:
        while todo:
            await store.get_block(blocks.cids[todo.pop()])

    async with trio.open_nursery() as nursery:
        for _ in range(READERS):
            nursery.start_soon(getter)


async def bench_blocks(scratch: Path, config: SQLiteConfig, blocks: Blocks, timer: Timer) -> None:
    sync = config.synchronous == "FULL"
    directory = scratch / "files"
    directory.mkdir()
    dir_fd = os.open(directory, os.O_RDONLY)
    one = await SQLiteStore.open(scratch / "one.db", config=config)
    many = await SQLiteStore.open(scratch / "many.db", config=config)
    try:
        for chunk in chunks(list(range(blocks.count)), BLOCK_CHUNK):
            start = time.perf_counter()
            for i in chunk:
                await one.write([PutBlock(blocks.cids[i], blocks.data(i))])
            timer.add("store put 1", start)
            start = time.perf_counter()
            await put_concurrently(many, blocks, chunk)
            timer.add("store put 16", start)
            start = time.perf_counter()
            file_put(directory, dir_fd, blocks, chunk, sync)
            timer.add("files put", start)
        assert (await one.block_count())[0] == blocks.count
        assert (await many.block_count())[0] == blocks.count

        order = list(range(blocks.count))
        random.Random(1).shuffle(order)
        for chunk in chunks(order, BLOCK_CHUNK):
            start = time.perf_counter()
            for i in chunk:
                await one.get_block(blocks.cids[i])
            timer.add("store get 1", start)
            start = time.perf_counter()
            await get_concurrently(many, blocks, chunk)
            timer.add("store get 4", start)
            start = time.perf_counter()
            file_get(directory, blocks, chunk)
            timer.add("files get", start)
    finally:
        os.close(dir_fd)
        await one.aclose()
        await many.aclose()


# -- small records --------------------------------------------------------------------------


def record_value(i: int) -> dict[str, object]:
    return {
        "state": "awaiting-receipt",
        "document": f"000.00.00.G22,2024/05/06,{i}/VPCP",
        "recipient": "000.00.00.H49",
        "attempts": i % 5,
        "digest": hashlib.sha256(str(i).encode()).digest(),
        "next_at": 1_700_000_000_000 + i,
    }


def open_raw(path: Path, config: SQLiteConfig) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {config.page_size}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {config.synchronous}")
    conn.execute(
        "CREATE TABLE records (tbl TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (tbl, key)) WITHOUT ROWID"
    )
    return conn


async def write_records_concurrently(store: SQLiteStore, indexes: list[int], writers: int) -> None:
    todo = list(indexes)

    async def writer() -> None:
        while todo:
            i = todo.pop()
            await store.write([PutRecord("outbox", f"c{i:08d}", record_value(i))])

    async with trio.open_nursery() as nursery:
        for _ in range(writers):
            nursery.start_soon(writer)


async def bench_records(
    scratch: Path, config: SQLiteConfig, count: int, writers: int, timer: Timer
) -> float:
    raw = open_raw(scratch / "raw.db", config)
    store = await SQLiteStore.open(scratch / "records.db", config=config)
    try:
        before = store.stats
        for chunk in chunks(list(range(count)), RECORD_CHUNK):
            start = time.perf_counter()
            for i in chunk:
                raw.execute("BEGIN IMMEDIATE")
                raw.execute(
                    "INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                    ("outbox", f"a{i:08d}".encode(), cbor.encode(record_value(i))),
                )
                raw.execute("COMMIT")
            timer.add("raw records", start)

            start = time.perf_counter()
            for i in chunk:
                await store.write([PutRecord("outbox", f"b{i:08d}", record_value(i))])
            timer.add("store records 1", start)

            start = time.perf_counter()
            await write_records_concurrently(store, chunk, writers)
            timer.add("store records many", start)
        after = store.stats
        # One transaction per batch in the single-writer phase; the rest are the groups.
        grouped = (after.batches - before.batches) - count
        return grouped / max(1, after.transactions - before.transactions - count)
    finally:
        raw.close()
        await store.aclose()


# -- driver ---------------------------------------------------------------------------------


def one_run(args: argparse.Namespace, run: int) -> dict[str, float]:
    size = args.block_kib * 1024
    count = max(BLOCK_CHUNK, args.total_mb * 1024 * 1024 // size)
    blocks = Blocks(count, size, seed=run)
    config = SQLiteConfig(synchronous=args.synchronous)
    mb = count * size / 1e6
    timer = Timer()
    scratch = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        trio.run(bench_blocks, scratch, config, blocks, timer)
        group = trio.run(bench_records, scratch, config, args.records, args.writers, timer)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    s = timer.seconds
    f = {
        "store put, 1 writer (MB/s)": mb / s["store put 1"],
        f"store put, {PUTTERS} writers (MB/s)": mb / s["store put 16"],
        "files put (MB/s)": mb / s["files put"],
        "store get, 1 reader (MB/s)": mb / s["store get 1"],
        f"store get, {READERS} readers (MB/s)": mb / s["store get 4"],
        "files get (MB/s)": mb / s["files get"],
        "records, batch of 1, 1 writer (/s)": args.records / s["store records 1"],
        f"records, batch of 1, {args.writers} writers (/s)": args.records / s["store records many"],
        "records, mean group size": group,
        "raw sqlite3, 1 commit per record (/s)": args.records / s["raw records"],
        # ratios within this run
        "ratio: put 1 writer / files": s["files put"] / s["store put 1"],
        f"ratio: put {PUTTERS} writers / files": s["files put"] / s["store put 16"],
        "ratio: get 1 reader / files": s["files get"] / s["store get 1"],
        f"ratio: get {READERS} readers / files": s["files get"] / s["store get 4"],
        f"ratio: records {args.writers} writers / 1 writer": s["store records 1"]
        / s["store records many"],
        "ratio: records 1 writer / raw sqlite3": s["raw records"] / s["store records 1"],
        f"ratio: records {args.writers} writers / raw sqlite3": s["raw records"]
        / s["store records many"],
    }
    print(f"run {run + 1}: " + "; ".join(f"{k} {v:,.2f}" for k, v in f.items()), flush=True)
    return f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total-mb", type=int, default=400)
    parser.add_argument("--block-kib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be 1 .. 20")
    if not 1 <= args.block_kib <= 4096 or not 1 <= args.total_mb <= 100_000:
        parser.error("--block-kib must be 1 .. 4096 and --total-mb 1 .. 100000")
    if not 1 <= args.writers <= 1000 or not args.writers <= args.records <= 10_000_000:
        parser.error("--writers must be 1 .. 1000 and --records at least --writers")

    print(
        f"SQLiteStore: {args.total_mb} MB of {args.block_kib} KiB blocks and {args.records} "
        f"small records per method, synchronous={args.synchronous}, {args.runs} runs; "
        f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}"
    )
    runs = [one_run(args, run) for run in range(args.runs)]
    size_mb = args.block_kib * 1024 / 1e6
    print(f"\nmedians of {args.runs} runs:")
    for key in runs[0]:
        value = statistics.median(r[key] for r in runs)
        extra = f"  ({value / size_mb:,.0f} blocks/s)" if key.endswith("(MB/s)") else ""
        print(f"  {key:48s} {value:10,.2f}{extra}")


if __name__ == "__main__":
    main()
