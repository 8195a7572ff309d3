"""What only the memory store has: handles sharing one "disk", and its byte quota."""

from __future__ import annotations

import pytest

import p2pdoc.store
from p2pdoc.errors import InvalidValue, StorageFull, StoreError
from p2pdoc.store import DeleteRecord, MemoryStore, Pin, PutRecord, Unpin
from tests.store.helpers import put


async def test_a_crashed_node_keeps_its_acknowledged_writes() -> None:
    disk = MemoryStore()
    b = put("survives")
    await disk.write([b, Pin("doc:s", (b.cid,)), PutRecord("t", "k", 1)])
    # The node "crashes" without closing; the next incarnation opens the same data.
    restarted = disk.reopen()
    assert await restarted.get_block(b.cid) == b.data
    assert await restarted.pinned("doc:s") == {b.cid}
    # A clean shutdown closes only that handle.
    await disk.aclose()
    with pytest.raises(StoreError):
        await disk.get_record("t", "k")
    assert await restarted.get_record("t", "k") == 1
    await restarted.write([PutRecord("t", "k", 2)])
    assert await disk.reopen().get_record("t", "k") == 2


async def test_quota_counts_block_record_and_document_bytes() -> None:
    store = MemoryStore(max_bytes=1000)
    await store.write([put("a", 600)])
    await store.write([PutRecord("t", "k", b"x" * 300)])  # 300 + 3 header bytes
    with pytest.raises(StorageFull):
        await store.write([put("b", 100)])
    await store.write([put("a", 600)])  # already stored: costs nothing
    # Shrinking or replacing within the quota works; so does freeing space.
    await store.write([PutRecord("t", "k", b"x" * 10)])
    await store.write([put("b", 100)])
    await store.write([DeleteRecord("t", "k"), Unpin("none")])
    assert await store.collect_garbage() == 2
    await store.write([put("c", 990)])


def test_quota_must_be_a_size() -> None:
    with pytest.raises(InvalidValue):
        MemoryStore(max_bytes=-1)


def test_public_names_are_exported() -> None:
    for name in p2pdoc.store.__all__:
        assert hasattr(p2pdoc.store, name), name
    assert set(p2pdoc.store.__all__) >= {"MemoryStore", "SQLiteStore", "SQLiteConfig", "Store"}
