"""SQLiteStore: CPU per call and throughput, against raw sqlite3 and plain files in the same run.

Usage::

    python bench/bench_store.py [--only calls|throughput] [--runs 3] [--dir /tmp]
                                [--calls 2048] [--concurrency 64]
                                [--total-mb 400] [--block-kib 256] [--synchronous FULL|NORMAL]
                                [--records 3000] [--writers 50]

**Calls** (``--only calls``): the CPU time (``time.process_time``, every thread of this
process, kernel time included) and the wall time of one store call, for point reads
(``get_record`` of a ~200-byte record, ``get_document`` of a ~600-byte manifest,
``has_blocks`` of 1 and of 16 present CIDs, ``get_block`` of a 10 KiB and of a 256 KiB block)
and small durable writes (one record; one record + one new 10 KiB block + a pin of it), each
``--calls`` times from a single task and from ``--concurrency`` concurrent tasks. The
baseline is the SQL on a plain ``sqlite3`` connection to the same file, from a plain loop:
reads run their statement to completion (one ``IN (...)`` query for the 16 CIDs); writes run
``BEGIN IMMEDIATE``, the statements and ``COMMIT`` per batch, and for the concurrent case
``--concurrency`` batches (each in a ``SAVEPOINT``) per transaction, the best group commit
could do. Blocks written are marked ``verified`` (the baseline does not hash either); record
values are CBOR-encoded and decoded by the store, pre-encoded and left undecoded by the
baseline. The methods run interleaved in rounds so that load from elsewhere hits them alike.
``--loop-read-bytes`` / ``--loop-write-bytes`` set the store's limits (0: everything in
threads), ``--page-size`` its page size.

**Throughput** (``--only throughput``):

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
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.store import (
    DocumentRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    SQLiteConfig,
    SQLiteStore,
    WriteOp,
)

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


def store_config(args: argparse.Namespace) -> SQLiteConfig:
    defaults = SQLiteConfig()
    return SQLiteConfig(
        synchronous=args.synchronous,
        page_size=args.page_size or defaults.page_size,
        loop_read_bytes=defaults.loop_read_bytes
        if args.loop_read_bytes is None
        else args.loop_read_bytes,
        loop_write_bytes=defaults.loop_write_bytes
        if args.loop_write_bytes is None
        else args.loop_write_bytes,
    )


# -- CPU per call ---------------------------------------------------------------------------

CALL_RECORDS = 1000
CALL_DOCUMENTS = 200
CALL_ROUNDS = 4


def document_record(i: int) -> DocumentRecord:
    """A document record with a ~600-byte manifest and a 200-byte signature set."""
    manifest = cbor.encode(
        {
            "v": 1,
            "document": f"000.00.00.G22,2024/05/06,{i}/VPCP",
            "files": [{"name": "van-ban.pdf", "size": 10240, "digest": bytes(32)}],
            "pad": i.to_bytes(8, "big") * 60,
        }
    )
    return DocumentRecord(
        root=Cid.of(Multicodec.DAG_CBOR, manifest),
        document_id=f"000.00.00.G22,2024/05/06,{i}/VPCP",
        sender="000.00.00.G22",
        manifest=manifest,
        signatures=bytes(200),
        created_at=1_700_000_000_000 + i,
    )


class CallData:
    """What the per-call measurements read (stored once) and write (new keys every call)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.record_keys = [f"{i:016d}" for i in range(CALL_RECORDS)]
        self.documents = [document_record(i) for i in range(CALL_DOCUMENTS)]
        self.small = Blocks(200, 10 * 1024, seed)
        self.large = Blocks(50, 256 * 1024, seed + 1)
        self._new = Blocks(0, 10 * 1024, seed + 2)
        self._written = 0

    def new_block(self) -> tuple[Cid, bytes]:
        """A 10 KiB block not written before in this run."""
        self._written += 1
        data = self._new.data(self._written)
        return Cid.of(Multicodec.RAW, data), data

    def next_key(self) -> str:
        self._written += 1
        return f"w{self._written:015d}"

    async def fill(self, store: SQLiteStore) -> None:
        ops: list[WriteOp] = [
            PutRecord("outbox", key, record_value(i)) for i, key in enumerate(self.record_keys)
        ]
        ops += [PutDocument(d) for d in self.documents]
        for blocks in (self.small, self.large):
            ops += [
                PutBlock(cid, blocks.data(i), verified=True) for i, cid in enumerate(blocks.cids)
            ]
        await store.write(ops)


class Method:
    """One kind of call: ``store(i)`` makes it through the store, ``raw(i)`` with sqlite3."""

    def __init__(
        self,
        name: str,
        store: Callable[[int], Awaitable[object]],
        raw: Callable[[int], object],
        raw_group: Callable[[list[int]], object] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.raw = raw
        # Writes: the concurrent case's baseline, the batches of one group in one transaction.
        self.raw_group = raw_group


def call_methods(store: SQLiteStore, raw: sqlite3.Connection, data: CallData) -> list[Method]:
    """The measured calls, each with its raw sqlite3 equivalent."""
    rng = data.rng
    keys, docs, small, large = data.record_keys, data.documents, data.small, data.large

    def pick(n: int) -> int:
        return rng.randrange(n)

    def raw_one(sql: str, params: tuple[object, ...]) -> list[object]:
        return raw.execute(sql, params).fetchall()

    sql_record = "SELECT value FROM records WHERE tbl = ? AND key = ?"
    sql_document = (
        "SELECT root, document_id, sender, created_at, manifest, signatures FROM documents"
        " WHERE root = ?"
    )
    sql_has = "SELECT 1 FROM blocks WHERE cid = ?"
    sql_block = "SELECT data FROM blocks WHERE cid = ?"
    sql_put_record = "INSERT OR REPLACE INTO records (tbl, key, value) VALUES (?, ?, ?)"
    sql_put_block = "INSERT OR IGNORE INTO blocks (cid, size, data) VALUES (?, ?, ?)"
    sql_pin = "INSERT OR IGNORE INTO pins (owner, cid) VALUES (?, ?)"
    sixteen = [[small.cids[(j + k) % small.count] for k in range(16)] for j in range(small.count)]
    value = record_value(7)
    encoded = cbor.encode(value)

    sql_has16 = f"SELECT cid FROM blocks WHERE cid IN ({', '.join('?' * 16)})"

    def raw_has16(i: int) -> object:
        return raw_one(sql_has16, tuple(cid.to_bytes() for cid in sixteen[pick(small.count)]))

    def raw_record_batch(key: str) -> None:
        raw.execute(sql_put_record, ("bench", key.encode(), encoded))

    def raw_mixed_batch(key: str) -> None:
        cid, block = data.new_block()
        raw.execute(sql_put_record, ("bench", key.encode(), encoded))
        raw.execute(sql_put_block, (cid.to_bytes(), len(block), block))
        raw.execute(sql_pin, ("doc:" + key, cid.to_bytes()))

    def raw_transaction(batch: Callable[[str], None]) -> Callable[[int], None]:
        def run(i: int) -> None:
            raw.execute("BEGIN IMMEDIATE")
            batch(data.next_key())
            raw.execute("COMMIT")

        return run

    def raw_group(batch: Callable[[str], None]) -> Callable[[list[int]], None]:
        def run(indexes: list[int]) -> None:
            raw.execute("BEGIN IMMEDIATE")
            for _ in indexes:
                raw.execute("SAVEPOINT batch")
                batch(data.next_key())
                raw.execute("RELEASE batch")
            raw.execute("COMMIT")

        return run

    async def write_record(i: int) -> None:
        await store.write([PutRecord("bench", data.next_key(), value)])

    async def write_mixed(i: int) -> None:
        key = data.next_key()
        cid, block = data.new_block()
        await store.write(
            [
                PutRecord("bench", key, value),
                PutBlock(cid, block, verified=True),
                Pin("doc:" + key, (cid,)),
            ]
        )

    return [
        Method(
            "get_record",
            lambda i: store.get_record("outbox", keys[pick(len(keys))]),
            lambda i: raw_one(sql_record, ("outbox", keys[pick(len(keys))].encode())),
        ),
        Method(
            "get_document",
            lambda i: store.get_document(docs[pick(len(docs))].root),
            lambda i: raw_one(sql_document, (docs[pick(len(docs))].root.to_bytes(),)),
        ),
        Method(
            "has_blocks, 1 CID",
            lambda i: store.has_blocks([small.cids[pick(small.count)]]),
            lambda i: raw_one(sql_has, (small.cids[pick(small.count)].to_bytes(),)),
        ),
        Method(
            "has_blocks, 16 CIDs",
            lambda i: store.has_blocks(sixteen[pick(small.count)]),
            raw_has16,
        ),
        Method(
            "get_block, 10 KiB",
            lambda i: store.get_block(small.cids[pick(small.count)]),
            lambda i: raw_one(sql_block, (small.cids[pick(small.count)].to_bytes(),)),
        ),
        Method(
            "get_block, 256 KiB",
            lambda i: store.get_block(large.cids[pick(large.count)]),
            lambda i: raw_one(sql_block, (large.cids[pick(large.count)].to_bytes(),)),
        ),
        Method(
            "write, 1 record",
            write_record,
            raw_transaction(raw_record_batch),
            raw_group(raw_record_batch),
        ),
        Method(
            "write, record + 10 KiB block + pin",
            write_mixed,
            raw_transaction(raw_mixed_batch),
            raw_group(raw_mixed_batch),
        ),
    ]


class Clock:
    """CPU and wall seconds accumulated per (method, mode)."""

    def __init__(self) -> None:
        self.cpu: dict[tuple[str, str], float] = {}
        self.wall: dict[tuple[str, str], float] = {}
        self.calls: dict[tuple[str, str], int] = {}

    @contextmanager
    def measure(self, name: str, mode: str, calls: int) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        key = (name, mode)
        self.cpu[key] = self.cpu.get(key, 0.0) + time.process_time() - cpu
        self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - wall
        self.calls[key] = self.calls.get(key, 0) + calls

    def per_call(self, name: str, mode: str) -> tuple[float, float]:
        """(CPU, wall) microseconds per call."""
        key = (name, mode)
        return 1e6 * self.cpu[key] / self.calls[key], 1e6 * self.wall[key] / self.calls[key]


async def run_concurrently(method: Method, calls: int, tasks: int) -> None:
    per_task = calls // tasks

    async def caller() -> None:
        for i in range(per_task):
            await method.store(i)

    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(caller)


async def bench_calls(
    scratch: Path, config: SQLiteConfig, calls: int, tasks: int, seed: int
) -> Clock:
    data = CallData(seed)
    clock = Clock()
    path = scratch / "calls.db"
    store = await SQLiteStore.open(path, config=config)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute(f"PRAGMA synchronous = {config.synchronous}")
    try:
        await data.fill(store)
        methods = call_methods(store, raw, data)
        for method in methods:  # warm up: page caches, statement caches, thread pools
            for i in range(32):
                await method.store(i)
                method.raw(i)
        per_round = calls // CALL_ROUNDS
        for _ in range(CALL_ROUNDS):
            for method in methods:
                with clock.measure(method.name, "raw", per_round):
                    for i in range(per_round):
                        method.raw(i)
                if method.raw_group is not None:
                    with clock.measure(method.name, "raw group", per_round):
                        for start in range(0, per_round, tasks):
                            method.raw_group(list(range(start, min(per_round, start + tasks))))
                with clock.measure(method.name, "store 1", per_round):
                    for i in range(per_round):
                        await method.store(i)
                with clock.measure(method.name, "store n", per_round // tasks * tasks):
                    await run_concurrently(method, per_round, tasks)
    finally:
        raw.close()
        await store.aclose()
    return clock


def calls_run(args: argparse.Namespace, run: int) -> dict[str, float]:
    config = store_config(args)
    scratch = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        clock = trio.run(bench_calls, scratch, config, args.calls, args.concurrency, run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures: dict[str, float] = {}
    n = args.concurrency
    for name in dict.fromkeys(key[0] for key in clock.cpu):
        raw_cpu, raw_wall = clock.per_call(name, "raw")
        one_cpu, one_wall = clock.per_call(name, "store 1")
        many_cpu, many_wall = clock.per_call(name, "store n")
        group_cpu = (
            clock.per_call(name, "raw group")[0] if (name, "raw group") in clock.cpu else raw_cpu
        )
        figures[f"{name}: raw CPU"] = raw_cpu
        figures[f"{name}: 1 caller CPU"] = one_cpu
        figures[f"{name}: {n} callers CPU"] = many_cpu
        figures[f"{name}: raw wall"] = raw_wall
        figures[f"{name}: 1 caller wall"] = one_wall
        figures[f"{name}: {n} callers wall"] = many_wall
        figures[f"{name}: raw group CPU"] = group_cpu
        figures[f"{name}: ratio 1 caller / raw"] = one_cpu / raw_cpu
        figures[f"{name}: ratio {n} callers / raw"] = many_cpu / group_cpu
    print(f"run {run + 1}: calls measured", flush=True)
    return figures


def print_calls(runs: list[dict[str, float]], args: argparse.Namespace) -> None:
    n = args.concurrency
    m = {key: statistics.median(r[key] for r in runs) for key in runs[0]}

    def cell(name: str, kind: str) -> str:
        return f"{m[f'{name}: {kind} CPU']:6.0f} ({m[f'{name}: {kind} wall']:5.0f})"

    print(
        f"\nCPU per call in microseconds (wall in brackets), medians of {len(runs)} runs; "
        "ratio = store CPU / raw sqlite3 CPU of the same run"
    )
    print(
        f"  {'call':36s} {'raw sqlite3':>14s} {'store, 1 caller':>15s} {'ratio':>6s}"
        f" {f'raw, {n}/txn':>11s} {f'store, {n} callers':>16s} {'ratio':>6s}"
    )
    for name in dict.fromkeys(key.split(": ")[0] for key in m):
        one = m[f"{name}: ratio 1 caller / raw"]
        many = m[f"{name}: ratio {n} callers / raw"]
        print(
            f"  {name:36s} {cell(name, 'raw'):>14s} {cell(name, '1 caller'):>15s} {one:6.1f}"
            f" {m[f'{name}: raw group CPU']:11.0f} {cell(name, f'{n} callers'):>16s} {many:6.1f}"
        )


# -- driver ---------------------------------------------------------------------------------


def throughput_run(args: argparse.Namespace, run: int) -> dict[str, float]:
    size = args.block_kib * 1024
    count = max(BLOCK_CHUNK, args.total_mb * 1024 * 1024 // size)
    blocks = Blocks(count, size, seed=run)
    config = store_config(args)
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
    parser.add_argument("--only", choices=["calls", "throughput"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--page-size", type=int, default=None, help="SQLiteConfig.page_size")
    parser.add_argument("--loop-read-bytes", type=int, default=None)
    parser.add_argument("--loop-write-bytes", type=int, default=None)
    parser.add_argument("--calls", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--total-mb", type=int, default=400)
    parser.add_argument("--block-kib", type=int, default=256)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--writers", type=int, default=50)
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be 1 .. 20")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be 1 .. 256")
    if not args.concurrency * CALL_ROUNDS <= args.calls <= 1_000_000:
        parser.error(f"--calls must be {CALL_ROUNDS} x --concurrency .. 1000000")
    if not 1 <= args.block_kib <= 4096 or not 1 <= args.total_mb <= 100_000:
        parser.error("--block-kib must be 1 .. 4096 and --total-mb 1 .. 100000")
    if not 1 <= args.writers <= 1000 or not args.writers <= args.records <= 10_000_000:
        parser.error("--writers must be 1 .. 1000 and --records at least --writers")

    one, five, _ = os.getloadavg()
    print(
        f"SQLiteStore, synchronous={args.synchronous}, {args.runs} runs; SQLite "
        f"{sqlite3.sqlite_version}, Python {sys.version.split()[0]}; load average {one:.2f} "
        f"(1 min) {five:.2f} (5 min)"
    )
    if args.only in (None, "calls"):
        print(f"calls: {args.calls} of each kind, 1 caller and {args.concurrency} callers")
        print_calls([calls_run(args, run) for run in range(args.runs)], args)
    if args.only in (None, "throughput"):
        print(
            f"throughput: {args.total_mb} MB of {args.block_kib} KiB blocks and {args.records} "
            "small records per method"
        )
        runs = [throughput_run(args, run) for run in range(args.runs)]
        size_mb = args.block_kib * 1024 / 1e6
        print(f"\nmedians of {args.runs} runs:")
        for key in runs[0]:
            value = statistics.median(r[key] for r in runs)
            extra = f"  ({value / size_mb:,.0f} blocks/s)" if key.endswith("(MB/s)") else ""
            print(f"  {key:48s} {value:10,.2f}{extra}")
    one, five, _ = os.getloadavg()
    print(f"load average at the end: {one:.2f} (1 min) {five:.2f} (5 min)")


if __name__ == "__main__":
    main()
