"""An in-memory store with the same semantics as the SQLite store.

Goals: the reference implementation for tests and the simulator; deterministic (no threads, no
wall clock); every ``write`` atomic under trio. A simulated node "crash" drops the node but
keeps its :class:`MemoryStore` (or a handle from :meth:`MemoryStore.reopen`), so every
acknowledged write survives by construction.

Non-goals: persistence, speed on large data sets (listings copy and sort what they return).

Atomicity: a batch is checked completely first (types, record encodings, manifest and block
hashes, quota), then applied by plain dict operations with no ``await`` in between, so no other
task observes half a batch and a failure leaves nothing behind. Record values are kept as their
canonical CBOR bytes and decoded on every read, as the SQLite store does, so callers never
share mutable state with the store.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

import trio

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import InvalidValue, NotFound, StorageFull, StoreError
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
    verify_blocks,
)

__all__ = ["MemoryStore"]


def _document_size(record: DocumentRecord | None) -> int:
    if record is None:
        return 0
    return len(record.manifest) + len(record.signatures)


class _State:
    """The data one or more :class:`MemoryStore` handles share (the "disk")."""

    __slots__ = (
        "block_bytes",
        "blocks",
        "doc_roots",
        "documents",
        "pin_counts",
        "pins",
        "record_keys",
        "records",
        "usage",
    )

    def __init__(self) -> None:
        self.blocks: dict[Cid, bytes] = {}
        self.block_bytes = 0
        self.pins: dict[str, set[Cid]] = {}
        # Invariant: pin_counts[cid] == number of owners whose pin set holds cid (> 0).
        self.pin_counts: Counter[Cid] = Counter()
        self.documents: dict[Cid, DocumentRecord] = {}
        # Invariant: doc_roots is the sorted list of bytes(root) for every stored document.
        self.doc_roots: list[bytes] = []
        self.records: dict[str, dict[str, bytes]] = {}
        # Invariant: record_keys[t] is the sorted key list of records[t] (str order is code
        # point order, which equals UTF-8 byte order).
        self.record_keys: dict[str, list[str]] = {}
        # Bytes held: block data, manifests and signature sets, encoded record values.
        self.usage = 0


class MemoryStore(Store):
    """A :class:`~p2pdoc.store.base.Store` held in dicts.

    Args:
        max_bytes: optional quota on the bytes held (block data, manifests and signature
            sets, encoded record values). A batch that would raise the total above it fails
            with :class:`~p2pdoc.errors.StorageFull` and writes nothing; a batch that does not
            grow the total always succeeds. None means no quota.
    """

    def __init__(self, *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
            raise InvalidValue("max_bytes must be None or an int >= 0")
        self._state = _State()
        self._max_bytes = max_bytes
        self._closed = False

    def reopen(self) -> MemoryStore:
        """A new open handle on the same data, as if the node restarted on the same disk.

        The handle keeps this store's quota. This handle may be open or closed.
        """
        other = MemoryStore(max_bytes=self._max_bytes)
        other._state = self._state
        return other

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    # -- writes -------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """See :meth:`Store.write`. Checks everything, then applies with no await between."""
        self._check_open()
        encoded = check_batch(ops)
        verify_blocks(ops)
        await trio.lowlevel.checkpoint()
        # Cancellation can only have happened above: from here on nothing awaits.
        self._check_open()
        state = self._state
        new_usage = self._usage_after(ops, encoded)
        if self._max_bytes is not None and new_usage > max(self._max_bytes, state.usage):
            raise StorageFull(
                f"batch needs {new_usage - state.usage} more bytes; quota {self._max_bytes}, "
                f"used {state.usage}"
            )
        for op, value in zip(ops, encoded, strict=True):
            self._apply(op, value)
        state.usage = new_usage

    def _usage_after(self, ops: Sequence[WriteOp], encoded: list[bytes | None]) -> int:
        """The quota usage once ``ops`` are applied (computed without changing anything)."""
        state = self._state
        usage = state.usage
        new_blocks: set[Cid] = set()
        documents: dict[Cid, DocumentRecord] = {}
        records: dict[tuple[str, str], bytes | None] = {}
        for op, value in zip(ops, encoded, strict=True):
            if isinstance(op, PutBlock):
                if op.cid not in state.blocks and op.cid not in new_blocks:
                    new_blocks.add(op.cid)
                    usage += len(op.data)
            elif isinstance(op, PutDocument):
                root = op.record.root
                old = documents[root] if root in documents else state.documents.get(root)
                usage += _document_size(op.record) - _document_size(old)
                documents[root] = op.record
            elif isinstance(op, (PutRecord, DeleteRecord)):
                where = (op.table, op.key)
                old_value = (
                    records[where]
                    if where in records
                    else state.records.get(op.table, {}).get(op.key)
                )
                usage -= 0 if old_value is None else len(old_value)
                usage += 0 if value is None else len(value)
                records[where] = value
        return usage

    def _apply(self, op: WriteOp, value: bytes | None) -> None:
        state = self._state
        if isinstance(op, PutBlock):
            if op.cid not in state.blocks:
                state.blocks[op.cid] = op.data
                state.block_bytes += len(op.data)
        elif isinstance(op, Pin):
            owned = state.pins.setdefault(op.owner, set())
            for cid in op.cids:
                if cid not in owned:
                    owned.add(cid)
                    state.pin_counts[cid] += 1
        elif isinstance(op, Unpin):
            for cid in state.pins.pop(op.owner, set()):
                state.pin_counts[cid] -= 1
                if state.pin_counts[cid] == 0:
                    del state.pin_counts[cid]
        elif isinstance(op, PutDocument):
            root = op.record.root
            if root not in state.documents:
                bisect.insort(state.doc_roots, root.to_bytes())
            state.documents[root] = op.record
        elif isinstance(op, PutRecord):
            assert value is not None
            table = state.records.setdefault(op.table, {})
            if op.key not in table:
                bisect.insort(state.record_keys.setdefault(op.table, []), op.key)
            table[op.key] = value
        else:
            table = state.records.get(op.table, {})
            if op.key in table:
                del table[op.key]
                keys = state.record_keys[op.table]
                del keys[bisect.bisect_left(keys, op.key)]

    # -- block reads --------------------------------------------------------------------

    async def get_block(self, cid: Cid) -> bytes:
        await trio.lowlevel.checkpoint()
        self._check_open()
        try:
            return self._state.blocks[cid]
        except KeyError:
            raise NotFound(f"no block {cid}") from None

    async def has_blocks(self, cids: Sequence[Cid]) -> list[bool]:
        await trio.lowlevel.checkpoint()
        self._check_open()
        blocks = self._state.blocks
        return [cid in blocks for cid in cids]

    async def block_count(self) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        self._check_open()
        return len(self._state.blocks), self._state.block_bytes

    async def pinned(self, owner: str) -> set[Cid]:
        check_text("pin owner", owner)
        await trio.lowlevel.checkpoint()
        self._check_open()
        return set(self._state.pins.get(owner, ()))

    async def collect_garbage(self) -> int:
        """See :meth:`Store.collect_garbage`; runs in one step, so it is atomic here."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        state = self._state
        garbage = [cid for cid in state.blocks if cid not in state.pin_counts]
        for cid in garbage:
            size = len(state.blocks.pop(cid))
            state.block_bytes -= size
            state.usage -= size
        return len(garbage)

    # -- documents ----------------------------------------------------------------------

    async def get_document(self, root: Cid) -> DocumentRecord:
        await trio.lowlevel.checkpoint()
        self._check_open()
        try:
            return self._state.documents[root]
        except KeyError:
            raise NotFound(f"no document {root}") from None

    async def find_documents(self, document_id: str) -> list[DocumentRecord]:
        check_text("document id", document_id)
        await trio.lowlevel.checkpoint()
        self._check_open()
        found = [d for d in self._state.documents.values() if d.document_id == document_id]
        found.sort(key=lambda d: (d.created_at, d.root.to_bytes()))
        return found

    async def list_documents(
        self, *, limit: int = 100, after: Cid | None = None
    ) -> list[DocumentRecord]:
        check_limit(limit)
        await trio.lowlevel.checkpoint()
        self._check_open()
        state = self._state
        start = 0 if after is None else bisect.bisect_right(state.doc_roots, after.to_bytes())
        roots = state.doc_roots[start : start + limit]
        return [state.documents[Cid.from_bytes(root)] for root in roots]

    # -- records ------------------------------------------------------------------------

    async def get_record(self, table: str, key: str) -> Value:
        check_text("table", table)
        check_text("record key", key)
        await trio.lowlevel.checkpoint()
        self._check_open()
        try:
            value = self._state.records[table][key]
        except KeyError:
            raise NotFound(f"no record {table}/{key}") from None
        return cbor.decode(value)

    async def list_records(
        self, table: str, *, prefix: str = "", after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, Value]]:
        check_text("table", table)
        check_text("key prefix", prefix)
        if after is not None:
            check_text("key after", after)
        check_limit(limit)
        await trio.lowlevel.checkpoint()
        self._check_open()
        keys = self._state.record_keys.get(table, [])
        values = self._state.records.get(table, {})
        start = bisect.bisect_left(keys, prefix)
        if after is not None:
            start = max(start, bisect.bisect_right(keys, after))
        out: list[tuple[str, Value]] = []
        for key in keys[start:]:
            if len(out) >= limit or not key.startswith(prefix):
                break
            out.append((key, cbor.decode(values[key])))
        return out

    # -- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close this handle; the data stays for :meth:`reopen`. Idempotent."""
        self._closed = True
        await trio.lowlevel.checkpoint()
