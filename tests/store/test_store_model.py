"""SQLiteStore against a plain model, driven by hypothesis through random operation sequences.

Each step runs in its own ``trio.run`` (the store is not bound to one run); after every step
the whole observable state is compared with the model.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import ContentMismatch, NotFound
from p2pdoc.store import (
    DeleteRecord,
    DocumentRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    SQLiteStore,
    Unpin,
    WriteOp,
)
from tests.store.helpers import block, document

_T = TypeVar("_T")

BLOCKS = [PutBlock(*block(f"model-{i}", size)) for i, size in enumerate([0, 1, 64, 5000, 100_000])]
CIDS = [b.cid for b in BLOCKS] + [block("never-stored")[0]]
DOC_IDS = ["000.00.00.G22,2024/01/02,1/VPCP", "000.00.00.H49,2024/03/04,77/UBND"]
DOCS = [
    document("d0", document_id=DOC_IDS[0], created_at=10),
    document("d0", document_id=DOC_IDS[0], created_at=30),  # same root, replaces
    document("d1", document_id=DOC_IDS[0], created_at=20),
    document("d2", document_id=DOC_IDS[1], created_at=20),
    document("d3", document_id=DOC_IDS[1], created_at=20),
]
OWNERS = ["doc:a", "doc:b", "outbox"]
TABLES = ["inbox", "outbox"]

keys = st.text(alphabet="ab0é中\x00", min_size=1, max_size=3)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
ops: st.SearchStrategy[WriteOp] = st.one_of(
    st.sampled_from(BLOCKS),
    st.builds(Pin, st.sampled_from(OWNERS), st.lists(st.sampled_from(CIDS), max_size=3).map(tuple)),
    st.builds(Unpin, st.sampled_from(OWNERS)),
    st.sampled_from(DOCS).map(PutDocument),
    st.builds(PutRecord, st.sampled_from(TABLES), keys, values),
    st.builds(DeleteRecord, st.sampled_from(TABLES), keys),
)


class Model:
    """What the store should hold, kept with plain dicts."""

    def __init__(self) -> None:
        self.blocks: dict[Cid, bytes] = {}
        self.pins: dict[str, set[Cid]] = {}
        self.documents: dict[Cid, DocumentRecord] = {}
        self.records: dict[str, dict[str, Value]] = {t: {} for t in TABLES}

    def apply(self, op: WriteOp) -> None:
        if isinstance(op, PutBlock):
            self.blocks.setdefault(op.cid, op.data)
        elif isinstance(op, Pin):
            self.pins.setdefault(op.owner, set()).update(op.cids)
        elif isinstance(op, Unpin):
            self.pins.pop(op.owner, None)
        elif isinstance(op, PutDocument):
            self.documents[op.record.root] = op.record
        elif isinstance(op, PutRecord):
            self.records[op.table][op.key] = op.value
        else:
            self.records[op.table].pop(op.key, None)

    def collect_garbage(self) -> int:
        kept = set().union(*self.pins.values())
        garbage = [cid for cid in self.blocks if cid not in kept]
        for cid in garbage:
            del self.blocks[cid]
        return len(garbage)


def _normal(value: Value) -> Value:
    """A value as a store read returns it (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


class SQLiteStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="p2pdoc-store-model-"))
        self.path = self.directory / "node.db"
        self.store = self.run(SQLiteStore.open, self.path)
        self.model = Model()

    @staticmethod
    def run(fn: Callable[..., Awaitable[_T]], *args: object) -> _T:
        async def with_deadline() -> _T:
            with trio.fail_after(20):
                return await fn(*args)

        return trio.run(with_deadline)

    def teardown(self) -> None:
        try:
            self.run(self.store.aclose)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @rule(batch=st.lists(ops, max_size=6))
    def write(self, batch: list[WriteOp]) -> None:
        self.run(self.store.write, batch)
        for op in batch:
            self.model.apply(op)

    @rule(batch=st.lists(ops, max_size=6), where=st.integers(0, 6), big=st.booleans())
    def write_with_a_bad_block(self, batch: list[WriteOp], where: int, big: bool) -> None:
        cid = BLOCKS[4].cid if big else BLOCKS[2].cid
        bad = PutBlock(cid, b"\x00" * (100_000 if big else 64))
        batch.insert(min(where, len(batch)), bad)
        with pytest.raises(ContentMismatch):
            self.run(self.store.write, batch)

    @rule()
    def collect_garbage(self) -> None:
        assert self.run(self.store.collect_garbage) == self.model.collect_garbage()

    @rule()
    def reopen(self) -> None:
        self.run(self.store.aclose)
        self.store = self.run(SQLiteStore.open, self.path)

    @precondition(lambda self: any(self.model.records.values()))
    @rule(
        table=st.sampled_from(TABLES),
        prefix=st.text(alphabet="ab0é中\x00", max_size=2),
        after=st.none() | keys,
        limit=st.integers(0, 4),
    )
    def list_records_slice(self, table: str, prefix: str, after: str | None, limit: int) -> None:
        got = self.run(
            lambda: self.store.list_records(table, prefix=prefix, after=after, limit=limit)
        )
        expected = sorted(
            (k, _normal(v))
            for k, v in self.model.records[table].items()
            if k.startswith(prefix) and (after is None or k.encode() > after.encode())
        )
        assert got == expected[:limit]

    @invariant()
    def same_state(self) -> None:
        self.run(self._compare)

    async def _compare(self) -> None:
        store, model = self.store, self.model
        assert await store.has_blocks(CIDS) == [cid in model.blocks for cid in CIDS]
        assert await store.block_count() == (
            len(model.blocks),
            sum(len(d) for d in model.blocks.values()),
        )
        for cid, data in model.blocks.items():
            assert await store.get_block(cid) == data
        for owner in OWNERS:
            assert await store.pinned(owner) == model.pins.get(owner, set())
        docs = sorted(model.documents.values(), key=lambda d: bytes(d.root))
        assert await store.list_documents() == docs
        for document_id in DOC_IDS:
            found = [d for d in docs if d.document_id == document_id]
            found.sort(key=lambda d: (d.created_at, bytes(d.root)))
            assert await store.find_documents(document_id) == found
        for table in TABLES:
            expected = sorted((k, _normal(v)) for k, v in model.records[table].items())
            assert await store.list_records(table) == expected
            for key, value in expected[:2]:
                assert await store.get_record(table, key) == value
        with pytest.raises(NotFound):
            await store.get_block(CIDS[-1])


SQLiteStoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
test_sqlite_store_matches_the_model = SQLiteStoreMachine.TestCase
