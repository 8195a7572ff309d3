"""The durable store: one SQLite database per node, in WAL mode, written by group commit.

Goals: nothing acknowledged is lost (a ``write`` returns once its transaction is committed
with the configured ``synchronous`` level); no batch is ever half applied; the trio event loop
never waits on the disk; many small concurrent writes share one commit (and one fsync).

Non-goals: several processes writing the same database (one node owns its file; a second
writer would only wait on SQLite's lock), shrinking the file after garbage collection (free
pages are reused; ``VACUUM`` offline if needed), encryption at rest.

Threads:
- **One writer thread** owns the only writing connection. Callers put their batch on a queue
  and wait on a :class:`trio.Event`. The writer takes the first waiting batch plus every batch
  that queued up behind it (while the previous commit ran) and applies them in one
  transaction, each inside its own ``SAVEPOINT``: a batch that fails (say ``SQLITE_FULL``) is
  rolled back alone and its caller gets the error, the others commit. When SQLite rolls back
  the whole transaction itself (it does so on ``SQLITE_FULL``), the other batches are applied
  again in a new transaction. Callers wake once the ``COMMIT`` returned.
- **Reads** run in trio worker threads on a small pool of read-only connections; WAL lets them
  read while the writer writes. Every read statement is run to completion (``fetchall``), so
  no connection keeps an old snapshot between calls.

Cancellation: a cancelled ``write`` (or ``collect_garbage`` step) may or may not be applied,
but never in part: a batch still queued when its caller is cancelled is skipped; one already
being committed completes. Reads run to completion in their thread even if the caller is
cancelled (they are short).

Errors: ``sqlite3`` exceptions are translated here and nowhere else: ``SQLITE_FULL`` ->
:class:`~p2pdoc.errors.StorageFull`, ``SQLITE_CORRUPT`` / ``SQLITE_NOTADB`` ->
:class:`~p2pdoc.errors.StoreCorrupt`, anything else -> :class:`~p2pdoc.errors.StoreError`,
always with the original as ``__cause__``.

A store is not bound to one trio run: each call finds its own run's token, so a store opened
in one ``trio.run`` can be used from the next (as the property tests do).
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Generic, Literal, TypeVar

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
_GC_CHUNK: Final = 256

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


@dataclass(frozen=True, slots=True, kw_only=True)
class SQLiteConfig:
    """How a :class:`SQLiteStore` uses its database file."""

    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """``FULL``: every acknowledged write survives a power loss (the WAL is fsynced at each
    commit). ``NORMAL``: acknowledged writes survive a crash of the process but the last
    commits may be lost on power loss or an OS crash (fsync only at checkpoints)."""

    busy_timeout: float = 5.0
    """Seconds a connection waits for a lock held by another connection before failing."""

    max_database_bytes: int | None = None
    """Quota on the main database file (rounded down to whole pages; the WAL comes on top).
    A batch that would grow the database past it fails with StorageFull and writes nothing.
    None: only the disk limits it."""

    readers: int = 4
    """Read connections, i.e. how many reads run in parallel."""

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


# -- jobs for the writer thread ------------------------------------------------------------


class _Job:
    """Something the writer thread does for a waiting trio task."""

    __slots__ = ("abandoned", "done", "error", "token")

    def __init__(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.done = trio.Event()
        self.error: StoreError | None = None
        # Set by the caller when cancelled; read by the writer before starting the job.
        self.abandoned = False

    def finish(self) -> None:
        """Wake the caller (called from the writer thread)."""
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.done.set)

    async def wait(self) -> None:
        try:
            await self.done.wait()
        except BaseException:
            self.abandoned = True
            raise
        if self.error is not None:
            raise self.error


_Step = tuple[str, list[tuple[object, ...]]]


class _WriteJob(_Job):
    __slots__ = ("nbytes", "steps")

    def __init__(self, steps: list[_Step], nbytes: int) -> None:
        super().__init__()
        self.steps = steps
        self.nbytes = nbytes


class _CallJob(_Job, Generic[_T]):
    """Run ``fn`` on the writing connection in a transaction of its own."""

    __slots__ = ("doing", "fn", "result")

    def __init__(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> None:
        super().__init__()
        self.doing = doing
        self.fn = fn
        self.result: _T | None = None


_STOP: Final = object()


def _steps(ops: Sequence[WriteOp], encoded: list[bytes | None]) -> tuple[list[_Step], int]:
    """SQL for a checked batch: runs of one statement become one ``executemany``, in order."""
    steps: list[_Step] = []
    nbytes = 0
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
        if steps and steps[-1][0] == sql:
            steps[-1][1].extend(rows)
        else:
            steps.append((sql, rows))
    return steps, nbytes


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
) -> tuple[sqlite3.Connection, list[sqlite3.Connection]]:
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
        readers = []
        for _ in range(config.readers):
            reader = _connect(path, config)
            conns.append(reader)
            reader.execute("PRAGMA query_only = ON")
            reader.execute(f"PRAGMA mmap_size = {config.mmap_bytes}")
            readers.append(reader)
        return writer, readers
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
    ) -> None:
        """Internal: use :meth:`open`."""
        self._path = path
        self._config = config
        self._writer = writer
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
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
        writer, readers = await trio.to_thread.run_sync(_open_sync, text, config)
        return cls(text, config, writer, readers)

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

    # -- the writer thread ----------------------------------------------------------------

    def _writer_main(self) -> None:
        """Take jobs off the queue until told to stop; group adjacent write jobs."""
        config = self._config
        stop = False
        while not stop:
            job = self._queue.get()
            if job is _STOP:
                break
            group: list[_WriteJob] = []
            after: _CallJob[object] | None = None
            if isinstance(job, _CallJob):
                after = job
            else:
                assert isinstance(job, _WriteJob)
                group.append(job)
                nbytes = job.nbytes
                while len(group) < config.max_group_batches and nbytes < config.max_group_bytes:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    if isinstance(more, _CallJob):
                        after = more
                        break
                    assert isinstance(more, _WriteJob)
                    group.append(more)
                    nbytes += more.nbytes
            if group:
                self._commit_group(group)
            if after is not None:
                self._run_call(after)
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute("PRAGMA optimize")
        self._writer.close()

    def _commit_group(self, group: list[_WriteJob]) -> None:
        """Apply ``group`` in one transaction, each batch in a savepoint; wake every caller."""
        pending = [job for job in group if not job.abandoned]
        try:
            while pending:
                pending = self._try_group(pending)
        except BaseException as exc:  # a bug or a broken connection: no caller may hang
            error = _translate(exc, "writing")
            for job in group:
                if job.error is None:
                    job.error = error
        finally:
            for job in group:
                job.finish()

    def _try_group(self, jobs: list[_WriteJob]) -> list[_WriteJob]:
        """One attempt at committing ``jobs``; returns the jobs to try again (maybe none).

        Every job not returned is finished: committed, or with ``error`` set.
        """
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
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
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                # SQLite rolled back the whole transaction (as it does on SQLITE_FULL):
                # the batches applied so far and those not yet tried go again.
                return applied + jobs[index + 1 :]
        if not applied:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return []
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            error = _translate(exc, "committing")
            if isinstance(error, StorageFull) and len(applied) > 1:
                # Find out which batches fit: retry them one transaction each.
                for job in applied:
                    self._commit_group_alone(job)
                return []
            for job in applied:
                job.error = error
            return []
        self._transactions += 1
        self._batches += len(applied)
        return []

    def _commit_group_alone(self, job: _WriteJob) -> None:
        pending = [job]
        while pending:
            pending = self._try_group(pending)

    def _run_call(self, job: _CallJob[object]) -> None:
        conn = self._writer
        try:
            if job.abandoned:
                return
            conn.execute("BEGIN IMMEDIATE")
            job.result = job.fn(conn)
            conn.execute("COMMIT")
            self._transactions += 1
        except BaseException as exc:
            job.error = _translate(exc, job.doing)
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            job.finish()

    async def _call(self, doing: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in the writer thread inside a transaction of its own."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        job: _CallJob[_T] = _CallJob(doing, fn)
        self._queue.put(job)
        await job.wait()
        return job.result  # type: ignore[return-value]

    # -- writes ---------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """See :meth:`Store.write`.

        Blocks are hashed in a worker thread when the batch holds more than 64 KiB of
        unverified data. The batch then waits in the writer's queue and is committed with
        whatever other batches queued up meanwhile; it returns when that commit is durable.

        Cancellation: a batch still queued is dropped; one being committed completes. Either
        way the caller cannot tell which, and the batch is never half applied.
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
        steps, nbytes = _steps(ops, encoded)
        self._check_open()
        job = _WriteJob(steps, nbytes)
        self._queue.put(job)
        await job.wait()

    # -- reads ----------------------------------------------------------------------------

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

    async def get_block(self, cid: Cid) -> bytes:
        def read(conn: sqlite3.Connection) -> bytes:
            rows = conn.execute("SELECT data FROM blocks WHERE cid = ?", (key,)).fetchall()
            if not rows:
                raise NotFound(f"no block {cid}")
            data = rows[0][0]
            if not isinstance(data, bytes):
                raise StoreCorrupt(f"block {cid} is stored as {type(data).__name__}")
            return data

        key = cid.to_bytes()
        return await self._read("reading a block", read)

    async def has_blocks(self, cids: Sequence[Cid]) -> list[bool]:
        def read(conn: sqlite3.Connection) -> list[bool]:
            sql = "SELECT 1 FROM blocks WHERE cid = ?"
            return [bool(conn.execute(sql, (key,)).fetchall()) for key in keys]

        keys = [cid.to_bytes() for cid in cids]
        return await self._read("looking up blocks", read)

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

        return await self._read("reading pins", read)

    async def collect_garbage(self) -> int:
        """See :meth:`Store.collect_garbage`.

        Works through the blocks in CID order, 256 at a time, each step a transaction of
        its own queued behind the writes already waiting, so a large collection does not hold
        up writes. A block is deleted only if no pin names it at the instant of its step.
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

    async def get_document(self, root: Cid) -> DocumentRecord:
        def read(conn: sqlite3.Connection) -> DocumentRecord:
            sql = f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE root = ?"
            rows = conn.execute(sql, (root.to_bytes(),)).fetchall()
            if not rows:
                raise NotFound(f"no document {root}")
            return _row_to_document(rows[0])

        return await self._read("reading a document", read)

    async def find_documents(self, document_id: str) -> list[DocumentRecord]:
        def read(conn: sqlite3.Connection) -> list[DocumentRecord]:
            sql = (
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE document_id = ?"
                " ORDER BY created_at, root"
            )
            rows = conn.execute(sql, (document_id,)).fetchall()
            return [_row_to_document(row) for row in rows]

        return await self._read("finding documents", read)

    async def list_documents(
        self, *, limit: int = 100, after: Cid | None = None
    ) -> list[DocumentRecord]:
        def read(conn: sqlite3.Connection) -> list[DocumentRecord]:
            sql = f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE root > ? ORDER BY root LIMIT ?"
            rows = conn.execute(sql, (start, limit)).fetchall()
            return [_row_to_document(row) for row in rows]

        check_limit(limit)
        start = b"" if after is None else after.to_bytes()
        return await self._read("listing documents", read)

    # -- records --------------------------------------------------------------------------

    async def get_record(self, table: str, key: str) -> Value:
        def read(conn: sqlite3.Connection) -> Value:
            sql = "SELECT value FROM records WHERE tbl = ? AND key = ?"
            rows = conn.execute(sql, (table, key.encode())).fetchall()
            if not rows:
                raise NotFound(f"no record {table}/{key}")
            return _decode_value(rows[0][0])

        return await self._read("reading a record", read)

    async def list_records(
        self, table: str, *, prefix: str = "", after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, Value]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, Value]]:
            rows = conn.execute(sql, params).fetchall()
            out = []
            for key, value in rows:
                try:
                    text = key.decode()
                except (AttributeError, UnicodeDecodeError) as exc:
                    raise _corrupt("record key", exc) from exc
                out.append((text, _decode_value(value)))
            return out

        check_limit(limit)
        lower = prefix.encode()
        if after is not None:
            lower = max(lower, after.encode() + b"\x00")  # keys > after == keys >= after+NUL
        where = ["tbl = ?", "key >= ?"]
        params: list[object] = [table, lower]
        upper = _range_after(prefix.encode())
        if upper is not None:
            where.append("key < ?")
            params.append(upper)
        sql = f"SELECT key, value FROM records WHERE {' AND '.join(where)} ORDER BY key LIMIT ?"
        params.append(limit)
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
        self._queue.put(_STOP)
        try:
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
