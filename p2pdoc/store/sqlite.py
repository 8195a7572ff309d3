"""The durable store: one SQLite database per node, in WAL mode, written by group commit.

Goals: nothing acknowledged is lost (a ``write`` returns once its transaction is committed
with the configured ``synchronous`` level); no batch is ever half applied; the trio event loop
never waits on an fsync or on a large read; many small concurrent writes share one commit (and
one fsync); a point read or a small write costs little more CPU than the SQLite call itself.

Non-goals: several processes writing the same database (one node owns its file; a second
writer would only wait on SQLite's lock), shrinking the file after garbage collection (free
pages are reused; ``VACUUM`` offline if needed), encryption at rest.

Where the work runs (``docs/store.md`` has the measured figures behind each choice):

- **Small reads run on the event loop's thread**, on a read connection of their own: a
  primary-key lookup (``get_record``, ``get_document``, ``get_block``), ``has_blocks`` (64
  CIDs per query, a checkpoint between queries), and a range (``list_records``,
  ``list_documents``, ``find_documents``, ``pinned``) while it returns at most 64 rows. The
  query itself checks the size (``length()`` reads the b-tree cell, not the data): data over
  ``SQLiteConfig.loop_read_bytes`` (64 KiB) in all, or record values over 8 KiB in all (they
  are decoded on the spot), are left unread and the call is served by a worker thread
  instead. A thread hand-off costs far more CPU than such a read; the price is that a page in
  neither SQLite's nor the OS's cache is read from disk while the loop waits.
- **Other reads** (larger rows, longer ranges, ``block_count``, ``backup``,
  ``check_integrity``) run in trio worker threads on a small pool of read connections. WAL
  lets every reader read while the writer writes. Every read statement is run to completion
  or reset, so no connection keeps an old snapshot between calls.
- **Writes: statements on the loop, commits in the writer thread.** ``write`` queues its
  batch. When the writing connection is free, the loop takes the queued batches (up to
  ``max_group_batches`` / ``max_group_bytes``), runs ``BEGIN IMMEDIATE`` and their statements
  (the batches' rows merged per table, one ``executemany`` per run of one statement) of the
  leading batches that cost at most ``loop_write_bytes`` (64 KiB) each and 256 KiB in all
  (a batch costs its data bytes plus 512 per row; one with an ``Unpin`` never goes on the
  loop), and hands the open transaction to the **writer thread**, which applies the other
  batches, runs ``COMMIT`` (the fsync) and wakes every caller of the group with one
  ``TrioToken.run_sync_soon``. Batches queued meanwhile form the next group. Any failure on
  the loop (a full disk, a lock held by another process) rolls the transaction back and
  leaves the whole group to the thread. When a statement fails there, the group is applied
  again batch by batch, each inside its own ``SAVEPOINT``: a batch that fails is rolled back
  alone and its caller gets the error, the others commit; when SQLite rolls back the whole
  transaction itself (it does so on ``SQLITE_FULL``), the other batches are applied again in a
  new transaction. Callers wake once the ``COMMIT`` returned. The writer thread needs the GIL
  three times per group whatever its size, instead of once or more per statement.

Cancellation: a cancelled ``write`` (or ``collect_garbage`` step) may or may not be applied,
but never in part: a batch still queued when its caller is cancelled is skipped; one already
applied to the open transaction is committed. Reads in a worker thread run to completion even
if the caller is cancelled (they are short); reads on the loop are synchronous.

Errors: ``sqlite3`` exceptions are translated here and nowhere else: ``SQLITE_FULL`` ->
:class:`~p2pdoc.errors.StorageFull`, ``SQLITE_CORRUPT`` / ``SQLITE_NOTADB`` ->
:class:`~p2pdoc.errors.StoreCorrupt`, anything else -> :class:`~p2pdoc.errors.StoreError`,
always with the original as ``__cause__``.

A store is not bound to one trio run: each call finds its own run's token, so a store opened
in one ``trio.run`` can be used from the next (as the property tests do). If a run ends while
the writer thread commits, that run's queued batches (nobody waits for them) are dropped.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Generic, Literal, TypeVar

import trio

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import (
    ConfigError,
    DecodeError,
    InvalidValue,
    NotFound,
    StorageFull,
    StoreCorrupt,
    StoreError,
)
from p2pdoc.store.base import (
    DeleteRecord,
    DocumentRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    Store,
    Unpin,
    WriteOp,
    check_batch,
    check_limit,
    check_text,
    unverified_size,
    verify_blocks,
)

__all__ = ["SCHEMA_VERSION", "SQLiteConfig", "SQLiteStore", "WriterStats"]

_T = TypeVar("_T")

APPLICATION_ID: Final = 0x70327064
"""``PRAGMA application_id`` of a p2pdoc store ("p2pd")."""

# The schema's history. Entry i (0-based) migrates a database from version i to version i+1;
# a new database runs them all. Never edit an entry once released: append a new one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: content-addressed blocks and the pins that keep them.
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
        # size before data: scans over (cid, size) never read the data's overflow pages.
        "CREATE TABLE blocks (cid BLOB PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL)",
        "CREATE TABLE pins (owner TEXT NOT NULL, cid BLOB NOT NULL, PRIMARY KEY (owner, cid))"
        " WITHOUT ROWID",
        "CREATE INDEX pins_by_cid ON pins (cid)",
    ),
    # 2: documents and the typed record area.
    (
        "CREATE TABLE documents (root BLOB PRIMARY KEY, document_id TEXT NOT NULL,"
        " sender TEXT NOT NULL, created_at INTEGER NOT NULL, manifest BLOB NOT NULL,"
        " signatures BLOB NOT NULL)",
        "CREATE INDEX documents_by_id ON documents (document_id, created_at)",
        # key holds the UTF-8 bytes of the record key, so ordering and prefix ranges are
        # plain bytewise comparisons.
        "CREATE TABLE records (tbl TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    ),
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)
"""The ``PRAGMA user_version`` this code creates and reads."""

_HASH_IN_THREAD_BYTES: Final = 64 * 1024
_MAX_SQL_INT: Final = (1 << 63) - 1
"""The largest integer SQLite binds; a larger ``limit`` is clamped to it (same result)."""
_GC_CHUNK: Final = 256

# Reads on the event loop's thread (see the module docstring and docs/store.md).
_LOOP_ROWS: Final = 64
"""Most rows a range read returns on the loop; a longer range goes to a worker thread."""
_LOOP_DECODE_BYTES: Final = 8 * 1024
"""Most bytes of record values a read decodes on the loop (CBOR decoding is Python code:
about 0.6 us per byte for the densest values, ~7 us for a 160-byte outbox entry)."""
_HAS_CHUNK: Final = 64
"""CIDs per ``has_blocks`` query (a checkpoint between queries)."""
_LOOP_GROUP_BYTES: Final = 256 * 1024
"""Most a group applies on the loop (its batches' costs, see :func:`_steps`); the rest of the
group goes to the writer thread."""
_LOOP_ROW_COST: Final = 512
"""What one written row counts for against the loop's write limits besides its data bytes: a
``Pin`` of 128 CIDs costs as much as 64 KiB of data, and a group applies at most 512 rows on
the loop (~3 us each)."""
_NOT_ON_LOOP: Final = 1 << 62
"""The cost of a batch holding an ``Unpin``: it deletes any number of rows, so the writer
thread applies it."""

_SQL_PUT_BLOCK: Final = "INSERT OR IGNORE INTO blocks (cid, size, data) VALUES (?, ?, ?)"
_SQL_PIN: Final = "INSERT OR IGNORE INTO pins (owner, cid) VALUES (?, ?)"
_SQL_UNPIN: Final = "DELETE FROM pins WHERE owner = ?"
_SQL_PUT_DOCUMENT: Final = (
    "INSERT OR REPLACE INTO documents"
    " (root, document_id, sender, created_at, manifest, signatures) VALUES (?, ?, ?, ?, ?, ?)"
)
_SQL_PUT_RECORD: Final = "INSERT OR REPLACE INTO records (tbl, key, value) VALUES (?, ?, ?)"
_SQL_DELETE_RECORD: Final = "DELETE FROM records WHERE tbl = ? AND key = ?"
_DOCUMENT_COLUMNS: Final = "root, document_id, sender, created_at, manifest, signatures"


_TABLE_OF: Final = {
    _SQL_PUT_BLOCK: 0,
    _SQL_PIN: 1,
    _SQL_UNPIN: 1,
    _SQL_PUT_DOCUMENT: 2,
    _SQL_PUT_RECORD: 3,
    _SQL_DELETE_RECORD: 3,
}
"""The table each write statement touches (merged groups keep the order within a table)."""

_SQL_LOOP_RECORD: Final = (
    "SELECT CASE WHEN length(value) <= ? THEN value END FROM records WHERE tbl = ? AND key = ?"
)
_SQL_LOOP_BLOCK: Final = (
    "SELECT CASE WHEN length(data) <= ? THEN data END FROM blocks WHERE cid = ?"
)
_SQL_DOCUMENTS: Final = f"SELECT {_DOCUMENT_COLUMNS} FROM documents "
_SQL_LOOP_DOCUMENTS: Final = (
    "SELECT root, document_id, sender, created_at,"
    " CASE WHEN length(manifest) + length(signatures) <= ?1 THEN manifest END,"
    " CASE WHEN length(manifest) + length(signatures) <= ?1 THEN signatures END,"
    " length(manifest) + length(signatures) FROM documents "
)
_SQL_LOOP_DOCUMENT: Final = _SQL_LOOP_DOCUMENTS + "WHERE root = ?2"


def _sql_has(count: int) -> str:
    return f"SELECT cid FROM blocks WHERE cid IN ({', '.join('?' * count)})"


# Statement texts for 1, 2, 4 .. 64 CIDs: a chunk is padded to the next size (repeating a
# CID), so at most seven statements sit in the connection's statement cache.
_SQL_HAS: Final = {1 << i: _sql_has(1 << i) for i in range(7)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SQLiteConfig:
    """How a :class:`SQLiteStore` uses its database file."""

    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """``FULL``: every acknowledged write survives a power loss (the WAL is fsynced at each
    commit). ``NORMAL``: acknowledged writes survive a crash of the process but the last
    commits may be lost on power loss or an OS crash (fsync only at checkpoints)."""

    busy_timeout: float = 5.0
    """Seconds the writer thread and worker-thread reads wait for a lock held by another
    connection before failing (the event loop's connections never wait: their work goes to a
    thread instead)."""

    max_database_bytes: int | None = None
    """Quota on the main database file (rounded down to whole pages; the WAL comes on top).
    A batch that would grow the database past it fails with StorageFull and writes nothing.
    None: only the disk limits it."""

    readers: int = 4
    """Read connections of the worker threads, i.e. how many reads run there in parallel (the
    event loop has a read connection of its own besides)."""

    page_size: int = 16384
    """Database page size in bytes (a power of two, 512 .. 65536); applies only when the
    database file is created. 16 KiB measured better than SQLite's 4 KiB default for 256 KiB
    blocks (16 overflow pages a block instead of 64) at no cost to small records."""

    wal_autocheckpoint: int = 1000
    """Pages in the WAL that trigger a checkpoint after a commit (16 MB at the default page
    size). 0 disables checkpoints, which lets the WAL grow until the store is closed."""

    mmap_bytes: int = 0
    """Bytes of the database the read connections map into memory (0: plain reads)."""

    max_group_batches: int = 256
    """Most caller batches applied in one transaction."""

    max_group_bytes: int = 32 << 20
    """A transaction stops taking more batches once their block data reaches this size."""

    loop_read_bytes: int = 64 * 1024
    """Most bytes a read returns from the event loop's thread (rows of blocks, documents,
    records; record values are also held to 8 KiB there, since they are decoded on the spot).
    Larger reads go to a worker thread. 0: every read goes to a worker thread."""

    loop_write_bytes: int = 64 * 1024
    """Batches with at most this much data (block data, manifests, signatures, record values)
    have their statements run on the event loop's thread; larger ones are applied by the
    writer thread. 0: the writer thread applies every batch."""

    def __post_init__(self) -> None:
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ConfigError("store.synchronous", "must be 'FULL' or 'NORMAL'")
        if not self.busy_timeout >= 0:
            raise ConfigError("store.busy_timeout", "must be >= 0 seconds")
        if self.max_database_bytes is not None and self.max_database_bytes < self.page_size:
            raise ConfigError("store.max_database_bytes", "must be None or at least one page")
        if not 1 <= self.readers <= 64:
            raise ConfigError("store.readers", "must be 1 .. 64")
        size = self.page_size
        if not 512 <= size <= 65536 or size & (size - 1):
            raise ConfigError("store.page_size", "must be a power of two in 512 .. 65536")
        if self.wal_autocheckpoint < 0:
            raise ConfigError("store.wal_autocheckpoint", "must be >= 0 pages")
        if self.mmap_bytes < 0:
            raise ConfigError("store.mmap_bytes", "must be >= 0")
        if self.max_group_batches < 1:
            raise ConfigError("store.max_group_batches", "must be >= 1")
        if self.max_group_bytes < 1:
            raise ConfigError("store.max_group_bytes", "must be >= 1")
        if not 0 <= self.loop_read_bytes <= 1 << 24:
            raise ConfigError("store.loop_read_bytes", "must be 0 .. 16 MiB")
        if not 0 <= self.loop_write_bytes <= 1 << 24:
            raise ConfigError("store.loop_write_bytes", "must be 0 .. 16 MiB")


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the writer thread since the store was opened.

    Attributes:
        transactions: transactions committed.
        batches: caller batches committed (``batches / transactions`` is the mean group).
    """

    transactions: int
    batches: int


# -- error translation ---------------------------------------------------------------------


def _translate(exc: BaseException, doing: str) -> StoreError:
    """The project error for a failure while ``doing`` something; ``exc`` becomes its cause."""
    if isinstance(exc, StoreError):
        return exc
    error: StoreError
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL:
        error = StorageFull(f"{doing}: the database or disk is full ({exc})")
    elif primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        error = StoreCorrupt(f"{doing}: {exc}")
    else:
        error = StoreError(f"{doing}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _corrupt(what: str, exc: Exception) -> StoreCorrupt:
    error = StoreCorrupt(f"stored {what} does not decode: {exc}")
    error.__cause__ = exc
    return error


# -- jobs for the writing connection -------------------------------------------------------


class _Job:
    """Something the writing connection does for a waiting trio task."""

    __slots__ = ("abandoned", "done", "error", "token")

    def __init__(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.done = trio.Event()
        self.error: StoreError | None = None
        # Set by the caller when cancelled; read before the job is started.
        self.abandoned = False

    async def wait(self) -> None:
        try:
            await self.done.wait()
        except BaseException:
            self.abandoned = True
            raise
        if self.error is not None:
            # One error may fail a whole group: reset the shared object's traceback.
            raise self.error.with_traceback(None)


_Step = tuple[str, list[tuple[object, ...]]]


class _WriteJob(_Job):
    __slots__ = ("cost", "nbytes", "steps")

    def __init__(self, steps: list[_Step], nbytes: int, cost: int) -> None:
        super().__init__()
        self.steps = steps
        self.nbytes = nbytes
        self.cost = cost


class _CallJob(_Job, Generic[_T]):
    """Run ``fn`` on the writing connection in a transaction of its own (writer thread)."""

    __slots__ = ("doing", "fn", "result")

    def __init__(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> None:
        super().__init__()
        self.doing = doing
        self.fn = fn
        self.result: _T | None = None


class _StopJob(_Job):
    """Close the writing connection and end the writer thread (queued last by ``aclose``)."""

    __slots__ = ()


@dataclass(slots=True)
class _Commit:
    """A group for the writer thread: ``applied`` are in the open transaction (the loop ran
    their statements), ``rest`` are still to apply; then ``COMMIT``."""

    applied: list[_WriteJob]
    rest: list[_WriteJob]


class _Use(enum.Enum):
    WORKER = enum.auto()
    """A read on the loop found more than it may return there: ask a worker thread."""


def _merged(jobs: Sequence[_WriteJob]) -> list[_Step]:
    """The statements of ``jobs`` with their rows merged: per table, every run of one
    statement becomes one ``executemany``, in the batches' order.

    Statements on different tables commute (no triggers, no foreign keys), so the committed
    result is the one of applying the batches one after the other; within a table the order
    is kept (a ``DeleteRecord`` after a ``PutRecord`` of the same key still deletes it).
    """
    if len(jobs) == 1:
        return jobs[0].steps
    tables: tuple[list[_Step], ...] = ([], [], [], [])
    for job in jobs:
        for sql, rows in job.steps:
            runs = tables[_TABLE_OF[sql]]
            if runs and runs[-1][0] == sql:
                runs[-1][1].extend(rows)
            else:
                runs.append((sql, list(rows)))  # a copy: job.steps stay as they were
    return [step for runs in tables for step in runs]


def _steps(ops: Sequence[WriteOp], encoded: list[bytes | None]) -> tuple[list[_Step], int, int]:
    """SQL for a checked batch: runs of one statement become one ``executemany``, in order.

    Returns the steps, the batch's data bytes (block data, manifests, signature sets, record
    values) and its cost against the loop's write limits: the data bytes plus
    ``_LOOP_ROW_COST`` per row, or ``_NOT_ON_LOOP`` if it holds an ``Unpin`` (which deletes
    any number of rows).
    """
    steps: list[_Step] = []
    nbytes = 0
    count = 0
    unpin = False
    for op, value in zip(ops, encoded, strict=True):
        rows: list[tuple[object, ...]]
        if isinstance(op, PutBlock):
            sql, rows = _SQL_PUT_BLOCK, [(op.cid.to_bytes(), len(op.data), op.data)]
            nbytes += len(op.data)
        elif isinstance(op, Pin):
            owner = op.owner
            sql, rows = _SQL_PIN, [(owner, cid.to_bytes()) for cid in op.cids]
        elif isinstance(op, Unpin):
            sql, rows = _SQL_UNPIN, [(op.owner,)]
            unpin = True
        elif isinstance(op, PutDocument):
            r = op.record
            row = (r.root.to_bytes(), r.document_id, r.sender, r.created_at)
            sql, rows = _SQL_PUT_DOCUMENT, [(*row, r.manifest, r.signatures)]
            nbytes += len(r.manifest) + len(r.signatures)
        elif isinstance(op, PutRecord):
            assert value is not None
            sql, rows = _SQL_PUT_RECORD, [(op.table, op.key.encode(), value)]
            nbytes += len(value)
        else:
            assert isinstance(op, DeleteRecord)
            sql, rows = _SQL_DELETE_RECORD, [(op.table, op.key.encode())]
        count += len(rows)
        if steps and steps[-1][0] == sql:
            steps[-1][1].extend(rows)
        else:
            steps.append((sql, rows))
    return steps, nbytes, _NOT_ON_LOOP if unpin else nbytes + _LOOP_ROW_COST * count


# -- opening and migrations ----------------------------------------------------------------


def _connect(path: str, config: SQLiteConfig) -> sqlite3.Connection:
    # isolation_level=None: the sqlite3 module issues no BEGIN/COMMIT of its own.
    return sqlite3.connect(
        path, timeout=config.busy_timeout, isolation_level=None, check_same_thread=False
    )


def _pragma(conn: sqlite3.Connection, name: str) -> object:
    rows = conn.execute(f"PRAGMA {name}").fetchall()
    return rows[0][0] if rows else None


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, one transaction per migration.

    Raises:
        StoreError: the file is another application's database, or its schema is newer
            than this code.
    """
    for target in range(1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _pragma(conn, "user_version")
            assert isinstance(version, int)
            if version == 0:
                objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
                if objects[0][0] != 0:
                    raise StoreError("not a p2pdoc store: it has tables but no schema version")
            elif _pragma(conn, "application_id") != APPLICATION_ID:
                raise StoreError("not a p2pdoc store: its SQLite application id differs")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store has schema version {version}, newer than the {SCHEMA_VERSION} "
                    "this software reads"
                )
            if version < target:
                for statement in _MIGRATIONS[target - 1]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _open_sync(
    path: str, config: SQLiteConfig
) -> tuple[sqlite3.Connection, list[sqlite3.Connection], sqlite3.Connection]:
    """The writing connection, the worker threads' read connections, the loop's."""
    conns: list[sqlite3.Connection] = []
    try:
        writer = _connect(path, config)
        conns.append(writer)
        if _pragma(writer, "page_count") == 0:
            writer.execute(f"PRAGMA page_size = {config.page_size}")
        mode = _pragma(writer, "journal_mode = WAL")
        if not isinstance(mode, str) or mode.lower() != "wal":
            raise StoreError(f"{path}: could not switch to WAL mode (got {mode!r})")
        _migrate(writer)
        writer.execute(f"PRAGMA synchronous = {config.synchronous}")
        writer.execute(f"PRAGMA wal_autocheckpoint = {config.wal_autocheckpoint}")
        writer.execute("PRAGMA journal_size_limit = 67108864")
        if config.max_database_bytes is not None:
            page_size = _pragma(writer, "page_size")
            assert isinstance(page_size, int)
            writer.execute(f"PRAGMA max_page_count = {config.max_database_bytes // page_size}")
        # The loop applies statements on this connection; it must never wait for a lock there.
        # The writer thread waits for one (busy_timeout) when it begins a transaction itself.
        writer.execute("PRAGMA busy_timeout = 0")
        readers = []
        for _ in range(config.readers + 1):
            reader = _connect(path, config)
            conns.append(reader)
            reader.execute("PRAGMA query_only = ON")
            reader.execute(f"PRAGMA mmap_size = {config.mmap_bytes}")
            readers.append(reader)
        # The loop's reader does not wait for locks either (a WAL reader meets one only while
        # another process recovers the file): on SQLITE_BUSY the read goes to a worker.
        loop_reader = readers.pop()
        loop_reader.execute("PRAGMA busy_timeout = 0")
        return writer, readers, loop_reader
    except BaseException as exc:
        for conn in conns:
            conn.close()
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc, f"opening {path}") from exc
        raise


def _range_after(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _row_to_document(row: tuple[object, ...]) -> DocumentRecord:
    root, document_id, sender, created_at, manifest, signatures = row
    try:
        assert isinstance(root, bytes)
        return DocumentRecord(
            root=Cid.from_bytes(root),
            document_id=document_id,  # type: ignore[arg-type]
            sender=sender,  # type: ignore[arg-type]
            manifest=manifest,  # type: ignore[arg-type]
            signatures=signatures,  # type: ignore[arg-type]
            created_at=created_at,  # type: ignore[arg-type]
        )
    except (AssertionError, DecodeError, InvalidValue) as exc:
        raise _corrupt("document", exc) from exc


def _decode_value(value: object) -> Value:
    if not isinstance(value, bytes):
        raise StoreCorrupt(f"stored record value is {type(value).__name__}, not bytes")
    try:
        return cbor.decode(value)
    except DecodeError as exc:
        raise _corrupt("record value", exc) from exc


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _cid_from_row(value: object) -> Cid:
    try:
        assert isinstance(value, bytes)
        return Cid.from_bytes(value)
    except (AssertionError, DecodeError) as exc:
        raise _corrupt("CID", exc) from exc


class SQLiteStore(Store):
    """A :class:`~p2pdoc.store.base.Store` in one SQLite database file (WAL mode).

    Open with ``store = await SQLiteStore.open(path)`` or
    ``async with await SQLiteStore.open(path) as store: ...``.
    """

    def __init__(
        self,
        path: str,
        config: SQLiteConfig,
        writer: sqlite3.Connection,
        readers: list[sqlite3.Connection],
        loop_reader: sqlite3.Connection,
    ) -> None:
        """Internal: use :meth:`open`."""
        self._path = path
        self._config = config
        self._writer = writer
        self._loop_reader = loop_reader
        self._loop_bytes = config.loop_read_bytes
        self._loop_decode_bytes = min(config.loop_read_bytes, _LOOP_DECODE_BYTES)
        # Work for the writer thread: a group to commit, a call, or the stop.
        self._queue: queue.SimpleQueue[_Commit | _CallJob[object] | _StopJob] = queue.SimpleQueue()
        # Jobs waiting for the writing connection, in call order. Invariant: ``_busy`` is True
        # while the writer thread owns the writing connection; only then may jobs wait here
        # with nobody dispatching them (the thread hands back and dispatches when done).
        # Both are guarded by ``_lock`` (the loop and the writer thread both touch them).
        self._pending: deque[_Job] = deque()
        self._busy = False
        self._lock = threading.Lock()
        # The pool of read connections; None is the "closed" marker each taker puts back.
        self._readers: queue.SimpleQueue[sqlite3.Connection | None] = queue.SimpleQueue()
        for reader in readers:
            self._readers.put(reader)
        self._reader_count = len(readers)
        self._read_limiter = trio.CapacityLimiter(len(readers))
        self._closed = False
        self._closed_done = threading.Event()
        self._transactions = 0
        self._batches = 0
        self._thread = threading.Thread(
            target=self._writer_main, name=f"p2pdoc-store-writer:{path}", daemon=True
        )
        self._thread.start()

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, config: SQLiteConfig | None = None
    ) -> SQLiteStore:
        """Open (creating or migrating if needed) the store at ``path``.

        Raises:
            StoreCorrupt: the file is not a SQLite database or is damaged.
            StoreError: the file belongs to another application, has a newer schema, or
                cannot be opened.
        """
        config = config or SQLiteConfig()
        text = os.fspath(path)
        if text == ":memory:" or text.startswith("file:"):
            raise InvalidValue("SQLiteStore needs a file path (it opens several connections)")
        writer, readers, loop_reader = await trio.to_thread.run_sync(_open_sync, text, config)
        return cls(text, config, writer, readers, loop_reader)

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def config(self) -> SQLiteConfig:
        return self._config

    @property
    def stats(self) -> WriterStats:
        """The writer's counters so far (a snapshot)."""
        return WriterStats(self._transactions, self._batches)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    # -- the writing connection: dispatch on the loop ----------------------------------------

    def _submit(self, job: _Job) -> None:
        """Queue ``job``; if the writing connection is free, start on the queue at once."""
        with self._lock:
            self._pending.append(job)
            if not self._busy:
                self._dispatch()

    def _dispatch(self) -> None:
        """Hand the next piece of queued work to the writer thread (loop thread, lock held,
        connection free).

        A call (or the stop) goes as it is. Write batches go as one group: the loop first runs
        the statements of its small batches in an open transaction (:meth:`_apply_on_loop`),
        then the thread applies the others and commits.
        """
        pending, config = self._pending, self._config
        while pending:
            head = pending[0]
            if head.abandoned:
                pending.popleft()
                continue
            if not isinstance(head, _WriteJob):
                assert isinstance(head, _CallJob | _StopJob)
                pending.popleft()
                self._busy = True
                self._queue.put(head)
                return
            group: list[_WriteJob] = []
            nbytes = 0
            while pending and len(group) < config.max_group_batches:
                job = pending[0]
                if not isinstance(job, _WriteJob) or nbytes >= config.max_group_bytes:
                    break
                pending.popleft()
                if not job.abandoned:
                    group.append(job)
                    nbytes += job.nbytes
            if not group:
                continue
            self._busy = True
            applied: list[_WriteJob] = []
            try:
                applied = self._apply_on_loop(group)
            finally:
                self._queue.put(_Commit(applied, group[len(applied) :]))
            return

    def _apply_on_loop(self, group: list[_WriteJob]) -> list[_WriteJob]:
        """Begin a transaction and run the statements of ``group``'s leading small batches.

        Returns those batches (their rows are in the open transaction), or an empty list
        with no transaction open: after any failure (a lock held elsewhere, a full disk, a
        bug) the writer thread applies the whole group, batch by batch.
        """
        limit, budget = self._config.loop_write_bytes, _LOOP_GROUP_BYTES
        take = 0
        for job in group:
            if job.cost > limit or job.cost > budget:
                break
            budget -= job.cost
            take += 1
        if not take:
            return []
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")  # busy_timeout 0: fails at once if locked
            for sql, rows in _merged(group[:take]):
                conn.executemany(sql, rows)
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, Exception):
                return []
            raise
        return group[:take]

    def _wake(self, jobs: list[_Job], dispatch: bool) -> None:
        """Wake ``jobs``' callers; then dispatch queued work if asked (loop thread)."""
        for job in jobs:
            job.done.set()
        if dispatch:
            with self._lock:
                if not self._busy and self._pending:
                    self._dispatch()

    # -- the writing connection: the writer thread ---------------------------------------------

    def _writer_main(self) -> None:
        """Run what the loop hands over until the stop; hand the connection back each time."""
        while True:
            item = self._queue.get()
            if isinstance(item, _StopJob):
                with contextlib.suppress(sqlite3.Error):
                    self._writer.execute("PRAGMA optimize")
                self._writer.close()
                self._hand_back([item])
                return
            if isinstance(item, _Commit):
                self._hand_back(self._commit(item))
            else:
                self._run_call(item)
                self._hand_back([item])

    def _hand_back(self, done: Sequence[_Job]) -> None:
        """Free the writing connection and wake ``done``'s callers (writer thread).

        One ``run_sync_soon`` per trio run involved; the one to the run of the first queued
        job also dispatches the queue on that run's loop. A run that has finished has nobody
        waiting: its queued jobs are dropped.
        """
        wake: dict[trio.lowlevel.TrioToken, list[_Job]] = {}
        for job in done:
            wake.setdefault(job.token, []).append(job)
        with self._lock:
            self._busy = False
            kick = self._pending[0].token if self._pending else None
        while kick is not None:
            try:
                kick.run_sync_soon(self._wake, wake.pop(kick, []), True)
                break
            except trio.RunFinishedError:
                dead = kick
                with self._lock:
                    self._pending = deque(job for job in self._pending if job.token is not dead)
                    kick = self._pending[0].token if self._pending and not self._busy else None
        for token, jobs in wake.items():
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._wake, jobs, False)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE`` in the writer thread, waiting up to ``busy_timeout`` for a lock
        another connection holds."""
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or self._config.busy_timeout == 0:
                raise
        conn.execute(f"PRAGMA busy_timeout = {int(self._config.busy_timeout * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _commit(self, group: _Commit) -> list[_WriteJob]:
        """Apply ``group.rest`` in the open transaction (or a new one) and commit.

        Every job returned is finished: committed, or with ``error`` set. If a statement
        fails, the whole group is applied again batch by batch (:meth:`_try_group`).
        """
        jobs = [*group.applied, *group.rest]
        conn = self._writer
        try:
            if group.rest:
                if not group.applied:
                    try:
                        self._begin()
                    except sqlite3.Error as exc:
                        error = _translate(exc, "starting a transaction")
                        for job in jobs:
                            job.error = error
                        return jobs
                try:
                    for sql, rows in _merged(group.rest):
                        conn.executemany(sql, rows)
                except sqlite3.Error:
                    self._rollback()
                    pending = [job for job in jobs if not job.abandoned]
                    while pending:
                        pending = self._try_group(pending)
                    return jobs
            self._commit_open(jobs)
        except BaseException as exc:  # a bug or a broken connection: no caller may hang
            self._rollback()
            error = _translate(exc, "writing")
            for job in jobs:
                if job.error is None:
                    job.error = error
        return jobs

    def _try_group(self, jobs: list[_WriteJob]) -> list[_WriteJob]:
        """One attempt at committing ``jobs``, each in a savepoint; returns the jobs to try
        again (maybe none).

        Every job not returned is finished: committed, or with ``error`` set.
        """
        conn = self._writer
        try:
            self._begin()
        except sqlite3.Error as exc:
            for job in jobs:
                job.error = _translate(exc, "starting a transaction")
            return []
        applied: list[_WriteJob] = []
        for index, job in enumerate(jobs):
            try:
                conn.execute("SAVEPOINT batch")
                for sql, rows in job.steps:
                    conn.executemany(sql, rows)
                conn.execute("RELEASE batch")
                applied.append(job)
            except Exception as exc:
                job.error = _translate(exc, "writing a batch")
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK TO batch")
                        conn.execute("RELEASE batch")
                        continue
                    except sqlite3.Error:
                        self._rollback()
                # SQLite rolled back the whole transaction (as it does on SQLITE_FULL):
                # the batches applied so far and those not yet tried go again.
                return applied + jobs[index + 1 :]
        if not applied:
            self._rollback()
            return []
        self._commit_open(applied)
        return []

    def _commit_open(self, jobs: Sequence[_WriteJob]) -> None:
        """``COMMIT`` the open transaction holding ``jobs`` (writer thread).

        On failure the transaction is rolled back and every job gets the error, except on
        SQLITE_FULL with several jobs: then each is retried in a transaction of its own, so
        only the batches that really do not fit fail. Every job is finished on return.
        """
        try:
            self._writer.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            error = _translate(exc, "committing")
            if isinstance(error, StorageFull) and len(jobs) > 1:
                for job in jobs:
                    self._commit_alone(job)
            else:
                for job in jobs:
                    job.error = error
            return
        self._transactions += 1
        self._batches += len(jobs)

    def _commit_alone(self, job: _WriteJob) -> None:
        pending = [job]
        while pending:
            pending = self._try_group(pending)

    def _run_call(self, job: _CallJob[object]) -> None:
        if job.abandoned:
            return
        try:
            self._begin()
            job.result = job.fn(self._writer)
            self._writer.execute("COMMIT")
            self._transactions += 1
        except BaseException as exc:
            job.error = _translate(exc, job.doing)
            self._rollback()

    async def _call(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in the writer thread inside a transaction of its own."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        job: _CallJob[_T] = _CallJob(doing, fn)
        self._submit(job)
        await job.wait()
        return job.result  # type: ignore[return-value]

    # -- writes ---------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """See :meth:`Store.write`.

        Blocks are hashed in a worker thread when the batch holds more than 64 KiB of
        unverified data. The batch then joins the queue for the writing connection and is
        committed with whatever other batches queued up meanwhile; it returns when that commit
        is durable. If the connection is free, a batch of at most ``loop_write_bytes`` has
        its statements run right away, on the loop, and only the ``COMMIT`` waits for the
        writer thread.

        Cancellation: a batch still queued is dropped; one already applied to the open
        transaction is committed. Either way the caller cannot tell which, and the batch is
        never half applied.
        """
        # In a scope that is already cancelled, nothing is queued.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        encoded = check_batch(ops)
        if not ops:
            await trio.lowlevel.checkpoint()
            return
        if unverified_size(ops) > _HASH_IN_THREAD_BYTES:
            await trio.to_thread.run_sync(verify_blocks, ops)
        else:
            verify_blocks(ops)
        steps, nbytes, cost = _steps(ops, encoded)
        self._check_open()
        job = _WriteJob(steps, nbytes, cost)
        self._submit(job)
        await job.wait()

    # -- reads ----------------------------------------------------------------------------

    def _on_loop(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> _T | _Use:
        """``fn`` on the loop's read connection; ``_Use.WORKER`` if it met a lock."""
        try:
            return fn(self._loop_reader)
        except sqlite3.Error as exc:
            if _is_busy(exc):
                return _Use.WORKER
            raise _translate(exc, doing) from exc

    def _loop_row(
        self, doing: str, sql: str, params: tuple[object, ...]
    ) -> tuple[object, ...] | _Use | None:
        """The first row of a primary-key lookup on the loop's read connection (None: no
        row); ``_Use.WORKER`` if it met a lock."""
        try:
            rows = self._loop_reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if _is_busy(exc):
                return _Use.WORKER
            raise _translate(exc, doing) from exc
        return rows[0] if rows else None

    async def _read(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        self._check_open()
        return await trio.to_thread.run_sync(self._read_sync, doing, fn, limiter=self._read_limiter)

    def _read_sync(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._readers.get()
        if conn is None:
            self._readers.put(None)
            raise StoreError("the store is closed")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise _translate(exc, doing) from exc
        finally:
            self._readers.put(conn)

    def _loop_range(
        self, sql: str, params: Sequence[object], budget: int
    ) -> Callable[[sqlite3.Connection], list[tuple[object, ...]] | _Use]:
        """A loop read of at most ``_LOOP_ROWS`` rows whose last column is the row's size;
        ``_Use.WORKER`` once the rows or their sizes exceed the limits (or a size is NULL:
        a damaged row, which the worker's read reports)."""

        def read(conn: sqlite3.Connection) -> list[tuple[object, ...]] | _Use:
            cursor = conn.execute(sql, params)
            try:
                rows: list[tuple[object, ...]] = []
                total = 0
                for row in cursor:
                    size = row[-1]
                    if not isinstance(size, int) or len(rows) == _LOOP_ROWS:
                        return _Use.WORKER
                    total += size
                    if total > budget:
                        return _Use.WORKER
                    rows.append(row)
                return rows
            finally:
                cursor.close()  # resets the statement: no snapshot is kept

        return read

    async def get_block(self, cid: Cid) -> bytes:
        key = cid.to_bytes()
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._loop_bytes:
            row = self._loop_row("reading a block", _SQL_LOOP_BLOCK, (self._loop_bytes, key))
            if row is None:
                raise NotFound(f"no block {cid}")
            if not isinstance(row, _Use) and isinstance(row[0], bytes):
                return row[0]
        return await self._read("reading a block", partial(_read_block, cid))

    async def has_blocks(self, cids: Sequence[Cid]) -> list[bool]:
        """See :meth:`Store.has_blocks`. On the loop, one query per 64 CIDs, with a
        checkpoint between two queries."""
        keys = [cid.to_bytes() for cid in cids]
        await trio.lowlevel.checkpoint()
        self._check_open()
        if not self._loop_bytes:
            return await self._read("looking up blocks", partial(_has_sync, keys))
        found: set[bytes] = set()
        for start in range(0, len(keys), _HAS_CHUNK):
            if start:
                await trio.lowlevel.checkpoint()
                self._check_open()
            chunk = keys[start : start + _HAS_CHUNK]
            present = self._on_loop("looking up blocks", partial(_present, chunk))
            if present is _Use.WORKER:
                return await self._read("looking up blocks", partial(_has_sync, keys))
            found |= present
        return [key in found for key in keys]

    async def block_count(self) -> tuple[int, int]:
        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            sql = "SELECT count(*), coalesce(sum(size), 0) FROM blocks"
            count, size = conn.execute(sql).fetchall()[0]
            return int(count), int(size)

        return await self._read("counting blocks", read)

    async def pinned(self, owner: str) -> set[Cid]:
        def read(conn: sqlite3.Connection) -> set[Cid]:
            rows = conn.execute("SELECT cid FROM pins WHERE owner = ?", (owner,)).fetchall()
            return {_cid_from_row(row[0]) for row in rows}

        check_text("pin owner", owner)
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._loop_bytes:
            sql = "SELECT cid, length(cid) FROM pins WHERE owner = ?"
            rows = self._on_loop("reading pins", self._loop_range(sql, (owner,), self._loop_bytes))
            if not isinstance(rows, _Use):
                return {_cid_from_row(row[0]) for row in rows}
        return await self._read("reading pins", read)

    async def collect_garbage(self) -> int:
        """See :meth:`Store.collect_garbage`.

        Works through the blocks in CID order, 256 at a time, each step a transaction of
        its own in the writer thread, queued behind the writes already waiting, so a large
        collection does not hold up writes. A block is deleted only if no pin names it at the
        instant of its step.
        """
        deleted = 0
        cursor = b""
        while True:
            count, last = await self._call(
                "collecting garbage", partial(_collect_step, cursor, _GC_CHUNK)
            )
            deleted += count
            if last is None:
                return deleted
            cursor = last

    # -- documents ------------------------------------------------------------------------

    async def _documents(
        self, doing: str, where: str, params: tuple[object, ...]
    ) -> list[DocumentRecord]:
        """The documents ``SELECT ... FROM documents <where>`` selects; ``where`` numbers its
        parameters from ``?2`` (``?1`` is the loop's size limit)."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._loop_bytes:
            budget = self._loop_bytes
            found = self._on_loop(
                doing, self._loop_range(_SQL_LOOP_DOCUMENTS + where, (budget, *params), budget)
            )
            if not isinstance(found, _Use):
                return [_row_to_document(row[:6]) for row in found]
        return await self._read(doing, partial(_read_documents, where, params))

    async def get_document(self, root: Cid) -> DocumentRecord:
        where, params = "WHERE root = ?2", (root.to_bytes(),)
        await trio.lowlevel.checkpoint()
        self._check_open()
        found: list[DocumentRecord] | None = None
        if self._loop_bytes:
            budget = self._loop_bytes
            row = self._loop_row("reading a document", _SQL_LOOP_DOCUMENT, (budget, *params))
            if row is None:
                found = []
            elif not isinstance(row, _Use) and isinstance(row[6], int) and row[6] <= budget:
                found = [_row_to_document(row[:6])]
        if found is None:
            found = await self._read("reading a document", partial(_read_documents, where, params))
        if not found:
            raise NotFound(f"no document {root}")
        return found[0]

    async def find_documents(self, document_id: str) -> list[DocumentRecord]:
        check_text("document id", document_id)
        return await self._documents(
            "finding documents", "WHERE document_id = ?2 ORDER BY created_at, root", (document_id,)
        )

    async def list_documents(
        self, *, limit: int = 100, after: Cid | None = None
    ) -> list[DocumentRecord]:
        check_limit(limit)
        start = b"" if after is None else after.to_bytes()
        return await self._documents(
            "listing documents",
            "WHERE root > ?2 ORDER BY root LIMIT ?3",
            (start, min(limit, _MAX_SQL_INT)),
        )

    # -- records --------------------------------------------------------------------------

    async def get_record(self, table: str, key: str) -> Value:
        check_text("table", table)
        check_text("record key", key)
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._loop_bytes:
            params = (self._loop_decode_bytes, table, key.encode())
            row = self._loop_row("reading a record", _SQL_LOOP_RECORD, params)
            if row is None:
                raise NotFound(f"no record {table}/{key}")
            if not isinstance(row, _Use) and row[0] is not None:
                return _decode_value(row[0])
        return await self._read("reading a record", partial(_read_record, table, key))

    async def list_records(
        self, table: str, *, prefix: str = "", after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, Value]]:
        def decoded(rows: Iterable[Sequence[Any]]) -> list[tuple[str, Value]]:
            out = []
            for key, value, *_ in rows:
                try:
                    text = key.decode()
                except (AttributeError, UnicodeDecodeError) as exc:
                    raise _corrupt("record key", exc) from exc
                out.append((text, _decode_value(value)))
            return out

        def read(conn: sqlite3.Connection) -> list[tuple[str, Value]]:
            sql = f"SELECT key, value FROM records WHERE {where} ORDER BY key LIMIT ?"
            return decoded(conn.execute(sql, params).fetchall())

        check_text("table", table)
        check_text("key prefix", prefix)
        if after is not None:
            check_text("key after", after)
        check_limit(limit)
        lower = prefix.encode()
        if after is not None:
            lower = max(lower, after.encode() + b"\x00")  # keys > after == keys >= after+NUL
        where = "tbl = ? AND key >= ?"
        params: list[object] = [table, lower]
        upper = _range_after(prefix.encode())
        if upper is not None:
            where += " AND key < ?"
            params.append(upper)
        params.append(min(limit, _MAX_SQL_INT))
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._loop_bytes:
            budget = self._loop_decode_bytes
            sql = (
                "SELECT key, CASE WHEN length(value) <= ? THEN value END, length(value)"
                f" FROM records WHERE {where} ORDER BY key LIMIT ?"
            )
            rows = self._on_loop(
                "listing records", self._loop_range(sql, [budget, *params], budget)
            )
            if not isinstance(rows, _Use):
                return decoded(rows)
        return await self._read("listing records", read)

    # -- maintenance ----------------------------------------------------------------------

    async def backup(self, dest_path: str | os.PathLike[str]) -> None:
        """Copy a consistent snapshot of the store to ``dest_path`` while it stays in use.

        Uses SQLite's online backup API from a read connection in one step, so the copy is
        the state after some commit (never half a batch) and writers are not held up (WAL).
        The copy is written to ``dest_path + ".partial"``, fsynced, switched to rollback
        journal mode (a single self-contained file) and renamed over ``dest_path``
        atomically. The copy opens with :meth:`open` like any store.

        Raises:
            InvalidValue: ``dest_path`` is this store's own file.
            StorageFull: the destination disk is full (no file is left at ``dest_path``).
            StoreError: the copy failed; ``dest_path`` is unchanged.
        On cancellation the copy runs to completion in its thread.
        """
        dest = os.fspath(dest_path)
        await self._read("backing up", partial(_backup_sync, self._path, dest))

    async def check_integrity(self) -> None:
        """Run SQLite's ``PRAGMA integrity_check`` on the whole file.

        Raises:
            StoreCorrupt: with the first problems SQLite reports.
        """

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
            return [line for row in rows for line in str(row[0]).splitlines()]

        problems = await self._read("checking integrity", read)
        if problems != ["ok"]:
            raise StoreCorrupt("integrity check failed: " + "; ".join(problems[:5]))

    # -- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish every write already queued, then close all connections. Idempotent.

        Waits for in-flight reads too. Not interrupted by cancellation (it only waits for
        work that is already bounded).
        """
        if self._closed:
            await trio.to_thread.run_sync(self._closed_done.wait)
            return
        self._closed = True
        try:
            self._submit(_StopJob())  # after every job queued so far
            await trio.to_thread.run_sync(self._thread.join)
            await trio.to_thread.run_sync(self._close_readers)
        finally:
            self._closed_done.set()

    def _close_readers(self) -> None:
        for _ in range(self._reader_count):
            conn = self._readers.get()
            if conn is not None:
                conn.close()
        self._readers.put(None)
        self._loop_reader.close()


# -- reads in a worker thread (the whole row, whatever its size) ------------------------------


def _read_block(cid: Cid, conn: sqlite3.Connection) -> bytes:
    rows = conn.execute("SELECT data FROM blocks WHERE cid = ?", (cid.to_bytes(),)).fetchall()
    if not rows:
        raise NotFound(f"no block {cid}")
    data = rows[0][0]
    if not isinstance(data, bytes):
        raise StoreCorrupt(f"block {cid} is stored as {type(data).__name__}")
    return data


def _read_record(table: str, key: str, conn: sqlite3.Connection) -> Value:
    sql = "SELECT value FROM records WHERE tbl = ? AND key = ?"
    rows = conn.execute(sql, (table, key.encode())).fetchall()
    if not rows:
        raise NotFound(f"no record {table}/{key}")
    return _decode_value(rows[0][0])


def _read_documents(
    where: str, params: tuple[object, ...], conn: sqlite3.Connection
) -> list[DocumentRecord]:
    rows = conn.execute(_SQL_DOCUMENTS + where, (None, *params)).fetchall()
    return [_row_to_document(row) for row in rows]


def _present(keys: list[bytes], conn: sqlite3.Connection) -> set[bytes]:
    """Which of at most 64 block CIDs (bytes) are stored: one query."""
    size = 1 << (len(keys) - 1).bit_length()
    rows = conn.execute(_SQL_HAS[size], keys + keys[-1:] * (size - len(keys))).fetchall()
    return {row[0] for row in rows}


def _has_sync(keys: list[bytes], conn: sqlite3.Connection) -> list[bool]:
    found: set[bytes] = set()
    for start in range(0, len(keys), _HAS_CHUNK):
        found |= _present(keys[start : start + _HAS_CHUNK], conn)
    return [key in found for key in keys]


def _collect_step(cursor: bytes, limit: int, conn: sqlite3.Connection) -> tuple[int, bytes | None]:
    """Delete the unpinned blocks among the next ``limit`` blocks after ``cursor``.

    Returns (blocks deleted, the cursor for the next step or None when done).
    """
    sql = "SELECT cid FROM blocks WHERE cid > ? ORDER BY cid LIMIT ?"
    rows = conn.execute(sql, (cursor, limit)).fetchall()
    if not rows:
        return 0, None
    last = rows[-1][0]
    deleted = conn.execute(
        "DELETE FROM blocks WHERE cid > ? AND cid <= ?"
        " AND NOT EXISTS (SELECT 1 FROM pins WHERE pins.cid = blocks.cid)",
        (cursor, last),
    ).rowcount
    return deleted, (last if len(rows) == limit else None)


def _backup_sync(source_path: str, dest: str, source: sqlite3.Connection) -> None:
    if os.path.realpath(dest) == os.path.realpath(source_path):
        raise InvalidValue("cannot back a store up onto its own file")
    partial_path = dest + ".partial"
    with contextlib.suppress(FileNotFoundError):
        os.remove(partial_path)
    try:
        target = sqlite3.connect(partial_path, isolation_level=None)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode = DELETE").fetchall()
        finally:
            target.close()
        fd = os.open(partial_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial_path, dest)
        directory = os.open(os.path.dirname(os.path.abspath(dest)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(partial_path)
        if isinstance(exc, OSError):
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"backup to {dest}: {exc}") from exc
            raise StoreError(f"backup to {dest}: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc, f"backup to {dest}") from exc
        raise
