"""What only the SQLite store has: its file, schema migrations, group commit, backups."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from p2pdoc.errors import ConfigError, InvalidValue, StorageFull, StoreCorrupt, StoreError
from p2pdoc.store import (
    DeleteRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    SQLiteConfig,
    SQLiteStore,
    Unpin,
    WriteOp,
)
from p2pdoc.store.sqlite import SCHEMA_VERSION, WriterStats, _Commit, _WriteJob
from tests.store.helpers import block, document, put

_T = TypeVar("_T")

# The schema as version 1 of this code wrote it, frozen here on purpose: the migration test
# must keep opening databases written by that version even if the code's history is edited.
V1_SCHEMA = [
    f"PRAGMA application_id = {0x70327064}",
    "CREATE TABLE blocks (cid BLOB PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE pins (owner TEXT NOT NULL, cid BLOB NOT NULL, PRIMARY KEY (owner, cid))"
    " WITHOUT ROWID",
    "CREATE INDEX pins_by_cid ON pins (cid)",
    "PRAGMA user_version = 1",
]


def _pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchall()[0][0]
    finally:
        conn.close()


class WriteLock:
    """Another connection holding the database's write lock, so the store's writer waits."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


# -- the file and its schema -----------------------------------------------------------------


async def test_new_store_is_a_versioned_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with await SQLiteStore.open(path) as store:
        await store.write([put("x")])
        assert store.path == str(path)
        assert _pragma(path, "journal_mode") == "wal"
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert _pragma(path, "application_id") == 0x70327064


async def test_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    cid, data = block("from-version-1")
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO blocks VALUES (?, ?, ?)", (bytes(cid), len(data), data))
    conn.execute("INSERT INTO pins VALUES (?, ?)", ("doc:old", bytes(cid)))
    conn.close()

    async with await SQLiteStore.open(path) as store:
        assert await store.get_block(cid) == data
        assert await store.pinned("doc:old") == {cid}
        await store.write([PutRecord("outbox", "1", "works")])
        assert await store.get_record("outbox", "1") == "works"
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    async with await SQLiteStore.open(path) as store:  # opening a current store is a no-op
        assert await store.get_record("outbox", "1") == "works"


async def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with await SQLiteStore.open(path) as store:
        await store.write([PutRecord("t", "k", 1)])
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SQLiteStore.open(path)
    assert _pragma(path, "user_version") == SCHEMA_VERSION + 1


async def test_other_applications_database_is_refused(tmp_path: Path) -> None:
    unversioned = tmp_path / "unversioned.db"
    conn = sqlite3.connect(unversioned)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a p2pdoc store"):
        await SQLiteStore.open(unversioned)

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("PRAGMA application_id = 42")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with pytest.raises(StoreError, match="application id"):
        await SQLiteStore.open(foreign)


async def test_a_file_that_is_not_a_database_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"certainly not SQLite " * 500)
    with pytest.raises(StoreCorrupt) as info:
        await SQLiteStore.open(path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        await SQLiteStore.open(tmp_path / "no-such-directory" / "node.db")
    assert isinstance(info.value.__cause__, sqlite3.Error)
    with pytest.raises(InvalidValue):
        await SQLiteStore.open(":memory:")


async def test_damaged_pages_fail_the_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    async with await SQLiteStore.open(path) as store:
        await store.write([PutRecord("t", f"{i:04d}", "v" * 200) for i in range(1000)])
        await store.check_integrity()
    size = path.stat().st_size
    with path.open("r+b") as f:
        for page in range(2, size // 4096, 3):
            f.seek(page * 4096 + 100)
            f.write(b"\xde\xad" * 200)
    async with await SQLiteStore.open(path) as store:
        with pytest.raises(StoreCorrupt, match="integrity check failed"):
            await store.check_integrity()


async def test_undecodable_record_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with await SQLiteStore.open(path) as store:
        await store.write([PutRecord("t", "k", 1)])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE records SET value = x'ff'")
    conn.commit()
    conn.close()
    async with await SQLiteStore.open(path) as store:
        with pytest.raises(StoreCorrupt):
            await store.get_record("t", "k")
        with pytest.raises(StoreCorrupt):
            await store.list_records("t")


def test_config_is_frozen_keyword_only_and_checked() -> None:
    config = SQLiteConfig()
    assert config.synchronous == "FULL"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.readers = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        SQLiteConfig("NORMAL")  # type: ignore[call-arg]
    bad: list[dict[str, object]] = [
        {"synchronous": "OFF"},
        {"busy_timeout": -1},
        {"readers": 0},
        {"page_size": 3000},
        {"max_database_bytes": 10},
        {"wal_autocheckpoint": -1},
        {"mmap_bytes": -1},
        {"max_group_batches": 0},
        {"max_group_bytes": 0},
        {"loop_read_bytes": -1},
        {"loop_write_bytes": (1 << 24) + 1},
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError) as info:
            SQLiteConfig(**kwargs)  # type: ignore[arg-type]
        assert info.value.key == f"store.{next(iter(kwargs))}"


async def test_other_settings_open_and_work(tmp_path: Path) -> None:
    config = SQLiteConfig(
        synchronous="NORMAL", page_size=16384, readers=1, mmap_bytes=1 << 20, wal_autocheckpoint=0
    )
    path = tmp_path / "normal.db"
    async with await SQLiteStore.open(path, config=config) as store:
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(store.write, [put(f"n{i}")])
        assert await store.block_count() == (10, 640)
    assert _pragma(path, "page_size") == 16384


# -- where the work runs -----------------------------------------------------------------------


async def test_small_reads_run_on_the_loop_and_large_ones_in_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, large = put("small", 1000), put("large", 100 * 1024)
    doc, big_doc = document("small", created_at=1), document("big", pad=100 * 1024, created_at=2)
    async with await SQLiteStore.open(tmp_path / "node.db") as store:
        await store.write(
            [small, large, PutDocument(doc), PutDocument(big_doc), Pin("o", (small.cid,))]
        )
        await store.write([PutRecord("t", "small", "v"), PutRecord("t", "large", bytes(9000))])
        await store.write([PutRecord("many", f"{i:03d}", i) for i in range(65)])

        handed_over: list[str] = []
        read_in_worker = store._read

        async def spy(doing: str, fn: Callable[[sqlite3.Connection], object]) -> object:
            handed_over.append(doing)
            return await read_in_worker(doing, fn)

        monkeypatch.setattr(store, "_read", spy)
        assert await store.get_block(small.cid) == small.data
        assert await store.has_blocks([small.cid, large.cid] * 40) == [True] * 80
        assert await store.get_document(doc.root) == doc
        assert await store.list_documents(after=doc.root, limit=0) == []
        assert await store.get_record("t", "small") == "v"
        assert await store.list_records("t", prefix="s") == [("small", "v")]
        assert await store.list_records("many", limit=64) == [(f"{i:03d}", i) for i in range(64)]
        assert await store.pinned("o") == {small.cid}
        assert handed_over == []

        assert await store.get_block(large.cid) == large.data
        assert await store.get_document(big_doc.root) == big_doc
        assert await store.find_documents(doc.document_id) == [doc, big_doc]
        assert await store.get_record("t", "large") == bytes(9000)
        assert len(await store.list_records("many")) == 65
        assert handed_over == [
            "reading a block",
            "reading a document",
            "finding documents",
            "reading a record",
            "listing records",
        ]


async def test_reads_all_go_to_workers_when_loop_read_bytes_is_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SQLiteConfig(loop_read_bytes=0)
    async with await SQLiteStore.open(tmp_path / "node.db", config=config) as store:
        await store.write([PutRecord("t", "k", 1)])
        handed_over: list[str] = []
        read_in_worker = store._read

        async def spy(doing: str, fn: Callable[[sqlite3.Connection], object]) -> object:
            handed_over.append(doing)
            return await read_in_worker(doing, fn)

        monkeypatch.setattr(store, "_read", spy)
        assert await store.get_record("t", "k") == 1
        assert await store.has_blocks([block("x")[0]]) == [False]
        assert handed_over == ["reading a record", "looking up blocks"]


@pytest.mark.parametrize(
    ("loop_write_bytes", "expected"),
    [(64 * 1024, [(1, 0), (0, 1), (0, 1), (0, 1)]), (0, [(0, 1)] * 4)],
)
async def test_small_batches_are_applied_on_the_loop(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loop_write_bytes: int,
    expected: list[tuple[int, int]],
) -> None:
    config = SQLiteConfig(loop_write_bytes=loop_write_bytes)
    async with await SQLiteStore.open(tmp_path / "node.db", config=config) as store:
        groups: list[tuple[int, int]] = []  # (batches applied on the loop, by the thread)
        commit = store._commit

        def spy(group: _Commit) -> list[_WriteJob]:
            groups.append((len(group.applied), len(group.rest)))
            return commit(group)

        monkeypatch.setattr(store, "_commit", spy)
        small, big = put("small", 1000), put("big", 100 * 1024)
        await store.write([small, PutRecord("t", "k", 1)])
        await store.write([big, PutRecord("t", "k", 2)])
        many = [block(f"many-{i}")[0] for i in range(200)]
        await store.write([Pin("many", tuple(many))])  # 200 rows: the thread's
        await store.write([Unpin("many")])  # deletes any number of rows: the thread's
        assert groups == expected
        assert await store.get_record("t", "k") == 2
        assert await store.has_blocks([small.cid, big.cid]) == [True, True]


@pytest.mark.parametrize("loop_write_bytes", [0, 1024, 64 * 1024])
async def test_one_group_keeps_the_order_of_its_batches(
    tmp_path: Path, loop_write_bytes: int
) -> None:
    path = tmp_path / "order.db"
    first, second = block("first")[0], block("second")[0]
    big = PutBlock(*block("big", 100 * 1024), verified=True)  # queued at once: no hashing
    # The loop applies the first four (merged per table) with the default limit, the first
    # two with 1024 bytes (a row counts 512), none with 0; the writer thread the others.
    # Each order matters for the result.
    batches: list[list[WriteOp]] = [
        [PutRecord("t", "k", "one")],
        [DeleteRecord("t", "k")],
        [PutRecord("t", "k", "three"), Pin("o", (first,))],
        [PutRecord("t", "j", 1), PutRecord("t", "i", bytes(100))],
        [Unpin("o")],  # always the writer thread's
        [PutRecord("t", "j", "big"), big],
        [Pin("o", (second,)), DeleteRecord("t", "j"), DeleteRecord("t", "i")],
        [PutRecord("t", "j", 2)],
    ]
    config = SQLiteConfig(busy_timeout=30, loop_write_bytes=loop_write_bytes)
    async with await SQLiteStore.open(path, config=config) as store:
        lock = WriteLock(path)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.write, [PutRecord("t", "waits", 0)])
                await trio.testing.wait_all_tasks_blocked()
                for batch in batches:  # queued in this order
                    nursery.start_soon(store.write, batch)
                    await trio.testing.wait_all_tasks_blocked()
                lock.release()
        assert store.stats == WriterStats(transactions=2, batches=9)
        assert await store.list_records("t") == [("j", 2), ("k", "three"), ("waits", 0)]
        assert await store.pinned("o") == {second}


def test_a_store_outlives_a_run_that_ended_during_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    config = SQLiteConfig(busy_timeout=30)
    store = trio_run_with_deadline(functools.partial(SQLiteStore.open, path, config=config))
    lock = WriteLock(path)

    async def cancelled_writes() -> None:
        # The first batch reaches the writer thread, which waits for the lock; the others
        # queue behind it; all callers are cancelled and the run ends.
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(store.write, [PutRecord("t", f"{i}", i)])
                    await trio.testing.wait_all_tasks_blocked()
                scope.cancel()

    trio_run_with_deadline(cancelled_writes)
    lock.release()  # the thread commits the first batch; its run is over

    async def next_run() -> list[tuple[str, object]]:
        await store.write([PutRecord("t", "next", 1)])
        listed = await store.list_records("t")
        await store.aclose()
        return listed

    listed = trio_run_with_deadline(next_run)
    assert listed[-1] == ("next", 1)
    assert [k for k, _ in listed[:-1]] in ([], ["0"])


def trio_run_with_deadline(fn: Callable[..., Awaitable[_T]], *args: object) -> _T:
    async def with_deadline() -> _T:
        with trio.fail_after(30):
            return await fn(*args)

    return trio.run(with_deadline)


async def test_a_block_stored_as_text_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    b = put("as-text")
    async with await SQLiteStore.open(path) as store:
        await store.write([b])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE blocks SET data = 'text'")
    conn.commit()
    conn.close()
    for config in (SQLiteConfig(), SQLiteConfig(loop_read_bytes=0)):
        async with await SQLiteStore.open(path, config=config) as store:
            with pytest.raises(StoreCorrupt):
                await store.get_block(b.cid)


# -- group commit ----------------------------------------------------------------------------


async def test_batches_queued_during_a_commit_share_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "group.db"
    async with await SQLiteStore.open(path, config=SQLiteConfig(busy_timeout=30)) as store:
        lock = WriteLock(path)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(30):
                    nursery.start_soon(store.write, [PutRecord("t", f"{i:02d}", i)])
                await trio.testing.wait_all_tasks_blocked()
                lock.release()
        # The writer may have taken the first batch alone before it met the lock; everything
        # that queued up while it waited goes in the next transaction.
        assert store.stats.batches == 30
        assert store.stats.transactions <= 2
        assert len(await store.list_records("t")) == 30


async def test_a_batch_that_does_not_fit_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    config = SQLiteConfig(busy_timeout=30, max_database_bytes=512 * 1024)
    too_big = put("too-big", 1024 * 1024)
    outcomes: dict[str, BaseException | None] = {}

    async def write(name: str, batch: list[PutBlock | PutRecord]) -> None:
        try:
            await store.write(batch)
        except StorageFull as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None

    async with await SQLiteStore.open(path, config=config) as store:
        lock = WriteLock(path)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(write, f"small-{i}", [PutRecord("t", f"{i}", i)])
                nursery.start_soon(write, "big", [PutRecord("t", "big", 1), too_big])
                await trio.testing.wait_all_tasks_blocked()
                lock.release()
        big = outcomes.pop("big")
        assert isinstance(big, StorageFull)
        assert isinstance(big.__cause__, sqlite3.OperationalError)
        assert outcomes == {f"small-{i}": None for i in range(10)}
        assert [k for k, _ in await store.list_records("t")] == [str(i) for i in range(10)]
        assert not await store.has_block(too_big.cid)
        assert store.stats.transactions <= 2


async def test_cancelled_queued_writes_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cancel.db"
    config = SQLiteConfig(busy_timeout=30, max_group_batches=1)
    async with await SQLiteStore.open(path, config=config) as store:
        lock = WriteLock(path)
        with trio.fail_after(30):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    for i in range(20):
                        nursery.start_soon(store.write, [PutRecord("t", f"{i:02d}", i)])
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
            lock.release()
            await store.write([PutRecord("barrier", "b", 0)])
        # At most the batch the writer had already taken (waiting for the lock) went in.
        assert len(await store.list_records("t")) <= 1
        assert store.stats.batches <= 2


async def test_aclose_finishes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "drain.db"
    results: list[int] = []

    async def write(i: int) -> None:
        await store.write([PutRecord("t", f"{i:02d}", i)])
        results.append(i)

    store = await SQLiteStore.open(path, config=SQLiteConfig(busy_timeout=30))
    lock = WriteLock(path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(write, i)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(store.aclose)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(StoreError, match="closed"):
                await store.write([PutRecord("t", "late", 0)])
            lock.release()
    assert sorted(results) == list(range(20))
    async with await SQLiteStore.open(path) as again:
        assert len(await again.list_records("t")) == 20


# -- backup ----------------------------------------------------------------------------------


async def test_backup_is_a_consistent_snapshot_taken_during_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    copy = tmp_path / "backup.db"

    async def writer(w: int) -> None:
        for i in range(30):
            b = put(f"{w}-{i}", 2000)
            await store.write([b, PutRecord("t", f"{w}-{i:02d}", {"cid": b.cid})])

    async with await SQLiteStore.open(path) as store:
        await store.write([PutRecord("t", "first", 0)])
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for w in range(4):
                    nursery.start_soon(writer, w)
                await trio.testing.wait_all_tasks_blocked()
                await store.backup(copy)
        await store.backup(copy)  # replaces the earlier copy
        assert not Path(f"{copy}.partial").exists()  # noqa: ASYNC240
        final = await store.list_records("t")

    assert not Path(f"{copy}-wal").exists()  # noqa: ASYNC240
    assert _pragma(copy, "journal_mode") == "delete"
    async with await SQLiteStore.open(copy) as restored:
        await restored.check_integrity()
        assert await restored.list_records("t") == final
        count, _ = await restored.block_count()
        assert count == 120


async def test_backup_snapshot_holds_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    copies = [tmp_path / f"copy-{n}.db" for n in range(3)]

    async def writer(w: int) -> None:
        for i in range(40):
            b = put(f"{w}-{i}", 4000)
            await store.write([b, PutRecord("t", f"{w}-{i:02d}", {"cid": b.cid})])

    async with await SQLiteStore.open(path) as store:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for w in range(4):
                    nursery.start_soon(writer, w)
                for copy in copies:
                    await store.backup(copy)
    for copy in copies:
        async with await SQLiteStore.open(copy) as restored:
            records = await restored.list_records("t", limit=10_000)
            cids = [value["cid"] for _, value in records]
            assert all(await restored.has_blocks(cids))
            assert await restored.block_count() == (len(records), 4000 * len(records))


async def test_backup_refuses_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "self.db"
    async with await SQLiteStore.open(path) as store:
        with pytest.raises(InvalidValue):
            await store.backup(path)
        with pytest.raises(StoreError):
            await store.backup(tmp_path / "missing-dir" / "copy.db")
