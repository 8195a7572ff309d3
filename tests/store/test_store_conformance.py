"""The store contract (p2pdoc/store/base.py), checked against every implementation.

Each test runs once per implementation through the ``store`` fixture in conftest.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import ContentMismatch, InvalidValue, NotFound, StorageFull, StoreError
from p2pdoc.store import (
    MAX_RECORD_SIZE,
    DeleteRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    Store,
    Unpin,
    WriteOp,
)
from tests.store.conftest import Reopen
from tests.store.helpers import block, document, put

# -- blocks ----------------------------------------------------------------------------------


async def test_block_round_trip_and_counts(store: Store) -> None:
    cid_a, data_a = block("a", 100)
    cid_b, data_b = block("b", 300)
    await store.put_block(cid_a, data_a)
    await store.write([PutBlock(cid_b, data_b)])
    assert await store.get_block(cid_a) == data_a
    assert await store.get_block(cid_b) == data_b
    missing, _ = block("missing")
    assert await store.has_blocks([cid_a, missing, cid_b]) == [True, False, True]
    assert await store.has_block(cid_b)
    assert not await store.has_block(missing)
    assert await store.block_count() == (2, 400)


async def test_missing_block_is_not_found(store: Store) -> None:
    missing, _ = block("missing")
    with pytest.raises(NotFound) as info:
        await store.get_block(missing)
    assert isinstance(info.value, LookupError)
    assert await store.block_count() == (0, 0)


async def test_putting_a_block_twice_is_a_no_op(store: Store) -> None:
    cid, data = block("twice", 50)
    await store.write([PutBlock(cid, data), PutBlock(cid, data)])
    await store.put_block(cid, data)
    assert await store.block_count() == (1, 50)
    assert await store.get_block(cid) == data


async def test_batch_with_a_bad_block_writes_nothing(store: Store) -> None:
    good_cid, good = block("good")
    bad_cid, _ = block("claimed")
    doc = document("d")
    batch: list[WriteOp] = [
        PutBlock(good_cid, good),
        PutRecord("t", "k", 1),
        Pin("owner", (good_cid,)),
        PutDocument(doc),
        PutBlock(bad_cid, b"not the claimed bytes"),
    ]
    with pytest.raises(ContentMismatch) as info:
        await store.write(batch)
    assert info.value.cid == str(bad_cid)
    assert not await store.has_block(good_cid)
    assert not await store.has_block(bad_cid)
    assert await store.list_records("t") == []
    assert await store.pinned("owner") == set()
    with pytest.raises(NotFound):
        await store.get_document(doc.root)


async def test_large_bad_block_is_refused(store: Store) -> None:
    # Large enough that an implementation may hash it off the event loop.
    cid, data = block("large", 256 * 1024)
    corrupted = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(ContentMismatch):
        await store.write([PutBlock(cid, corrupted)])
    assert not await store.has_block(cid)
    await store.write([PutBlock(cid, data)])
    assert await store.get_block(cid) == data


async def test_verified_block_is_not_hashed_again(store: Store) -> None:
    # verified=True hands the responsibility to the caller: the bytes are stored as given.
    cid, _ = block("claimed")
    await store.write([PutBlock(cid, b"trusted by the caller", verified=True)])
    assert await store.get_block(cid) == b"trusted by the caller"


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    await store.write([])
    assert await store.block_count() == (0, 0)


async def test_operations_apply_in_batch_order(store: Store) -> None:
    cid, data = block("ordered")
    await store.write([PutRecord("t", "a", 1), PutRecord("t", "a", 2)])
    await store.write([PutRecord("t", "b", 1), DeleteRecord("t", "b")])
    await store.write([DeleteRecord("t", "c"), PutRecord("t", "c", 3)])
    await store.write([Pin("p", (cid,)), Unpin("p")])
    await store.write([Unpin("q"), Pin("q", (cid,)), PutBlock(cid, data)])
    assert await store.list_records("t") == [("a", 2), ("c", 3)]
    assert await store.pinned("p") == set()
    assert await store.pinned("q") == {cid}


# -- pins and garbage collection -------------------------------------------------------------


async def test_pins_accumulate_and_unpin_drops_all(store: Store) -> None:
    a, b, c = (block(x)[0] for x in "abc")
    await store.write([Pin("doc:1", (a, b))])
    await store.write([Pin("doc:1", (b, c)), Pin("doc:2", (a,))])
    assert await store.pinned("doc:1") == {a, b, c}
    assert await store.pinned("doc:2") == {a}
    assert await store.pinned("nobody") == set()
    await store.write([Unpin("doc:1"), Unpin("never-pinned")])
    assert await store.pinned("doc:1") == set()
    assert await store.pinned("doc:2") == {a}


async def test_gc_deletes_only_unpinned_blocks(store: Store) -> None:
    kept, shared, loose = put("kept"), put("shared"), put("loose")
    await store.write([kept, shared, loose])
    await store.write([Pin("one", (kept.cid, shared.cid)), Pin("two", (shared.cid,))])
    assert await store.collect_garbage() == 1
    assert await store.has_blocks([kept.cid, shared.cid, loose.cid]) == [True, True, False]
    await store.write([Unpin("one")])
    assert await store.collect_garbage() == 1
    assert await store.has_blocks([kept.cid, shared.cid]) == [False, True]
    assert await store.collect_garbage() == 0
    assert await store.block_count() == (1, len(shared.data))


async def test_pin_protects_a_block_that_arrives_later(store: Store) -> None:
    early = put("early")
    await store.write([Pin("doc:x", (early.cid,))])
    assert await store.collect_garbage() == 0
    await store.write([early])
    assert await store.collect_garbage() == 0
    assert await store.get_block(early.cid) == early.data


async def test_gc_over_many_blocks(store: Store) -> None:
    blocks = [put(f"many-{i}", 16) for i in range(600)]
    await store.write(blocks)
    pinned = {b.cid for i, b in enumerate(blocks) if i % 3 == 0}
    await store.write([Pin("thirds", tuple(pinned))])
    assert await store.collect_garbage() == 400
    present = await store.has_blocks([b.cid for b in blocks])
    assert {b.cid for b, here in zip(blocks, present, strict=True) if here} == pinned


async def test_gc_concurrent_with_writes_never_deletes_pinned(store: Store) -> None:
    pinned: set[Cid] = set()

    async def writer(w: int) -> None:
        for i in range(15):
            keep, junk = put(f"keep-{w}-{i}"), put(f"junk-{w}-{i}")
            await store.write([keep, Pin(f"w{w}", (keep.cid,)), junk])
            pinned.add(keep.cid)

    async def collector() -> None:
        for _ in range(10):
            await store.collect_garbage()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)
            nursery.start_soon(collector)
    assert all(await store.has_blocks(sorted(pinned)))
    await store.collect_garbage()
    assert await store.block_count() == (len(pinned), 64 * len(pinned))


# -- documents -------------------------------------------------------------------------------


async def test_document_round_trip_and_replace(store: Store) -> None:
    doc = document("one")
    await store.write([PutDocument(doc)])
    assert await store.get_document(doc.root) == doc
    newer = document("one", created_at=5000)
    await store.write([PutDocument(newer)])
    assert await store.get_document(doc.root) == newer
    assert await store.list_documents() == [newer]
    with pytest.raises(NotFound):
        await store.get_document(document("absent").root)


async def test_document_manifest_must_hash_to_root(store: Store) -> None:
    doc = document("real")
    forged = document("forged")
    wrong = type(doc)(
        root=doc.root,
        document_id=doc.document_id,
        sender=doc.sender,
        manifest=forged.manifest,
        signatures=doc.signatures,
        created_at=doc.created_at,
    )
    with pytest.raises(ContentMismatch):
        await store.write([PutRecord("t", "k", 1), PutDocument(wrong)])
    assert await store.list_documents() == []
    assert await store.list_records("t") == []


async def test_find_documents_oldest_first(store: Store) -> None:
    wanted = "000.00.00.H49,2024/05/06,12/UBND"
    versions = [
        document("v3", document_id=wanted, created_at=300),
        document("v1", document_id=wanted, created_at=100),
        document("v2a", document_id=wanted, created_at=200),
        document("v2b", document_id=wanted, created_at=200),
        document("other", created_at=150),
    ]
    await store.write([PutDocument(d) for d in versions])
    found = await store.find_documents(wanted)
    expected = sorted(versions[:4], key=lambda d: (d.created_at, bytes(d.root)))
    assert found == expected
    assert await store.find_documents("000.00.00.G01,2024/01/01,1/X") == []


async def test_list_documents_pages_in_root_order(store: Store) -> None:
    docs = [document(f"page-{i}", created_at=i) for i in range(10)]
    await store.write([PutDocument(d) for d in docs])
    pages = []
    after = None
    for _ in range(10):
        page = await store.list_documents(limit=3, after=after)
        if not page:
            break
        assert len(page) <= 3
        pages.append(page)
        after = page[-1].root
    listed = [d for page in pages for d in page]
    assert listed == sorted(docs, key=lambda d: bytes(d.root))
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert await store.list_documents(limit=0) == []
    assert len(await store.list_documents()) == 10
    with pytest.raises(InvalidValue):
        await store.list_documents(limit=-1)


# -- records ---------------------------------------------------------------------------------


async def test_record_round_trip_overwrite_delete(store: Store) -> None:
    await store.write([PutRecord("outbox", "0001", {"state": "queued"})])
    assert await store.get_record("outbox", "0001") == {"state": "queued"}
    await store.write([PutRecord("outbox", "0001", {"state": "offering"})])
    assert await store.get_record("outbox", "0001") == {"state": "offering"}
    await store.write([DeleteRecord("outbox", "0001"), DeleteRecord("outbox", "missing")])
    with pytest.raises(NotFound):
        await store.get_record("outbox", "0001")
    with pytest.raises(NotFound):
        await store.get_record("no-such-table", "0001")


async def test_record_values_in_the_cbor_data_model_round_trip(store: Store) -> None:
    cid = block("linked")[0]
    value = {
        "none": None,
        "bools": [True, False],
        "ints": [0, -1, 2**64 - 1, -(2**64)],
        "text": "Quảng Ninh",
        "bytes": b"\x00\xff",
        "nested": {"list": [[1], {"a": "b"}]},
        "tuple": (1, 2),
        "cid": cid,
    }
    await store.write([PutRecord("t", "k", value)])
    expected = dict(value, tuple=[1, 2])
    assert await store.get_record("t", "k") == expected
    assert await store.list_records("t") == [("k", expected)]


async def test_record_reads_are_copies(store: Store) -> None:
    value = {"list": [1]}
    await store.write([PutRecord("t", "k", value)])
    value["list"].append(2)
    first = await store.get_record("t", "k")
    first["list"].append(3)
    assert await store.get_record("t", "k") == {"list": [1]}


async def test_invalid_record_value_writes_nothing(store: Store) -> None:
    good = put("before-invalid")
    with pytest.raises(InvalidValue):
        await store.write([good, PutRecord("t", "float", 1.5)])
    with pytest.raises(InvalidValue):
        await store.write([good, PutRecord("t", "huge", b"x" * MAX_RECORD_SIZE)])
    assert not await store.has_block(good.cid)
    assert await store.list_records("t") == []


KEYS = ["b", "a", "ab", "aé", "a0", "中", "\U0001f600", "z", "A", "é", "éa", "ê", "a\x00"]


async def test_records_list_in_utf8_byte_order(store: Store) -> None:
    await store.write([PutRecord("t", key, i) for i, key in enumerate(KEYS)])
    await store.write([PutRecord("other", "a", "elsewhere")])
    expected = sorted(KEYS, key=lambda k: k.encode())
    listed = await store.list_records("t")
    assert [k for k, _ in listed] == expected
    assert [v for _, v in listed] == [KEYS.index(k) for k in expected]
    assert await store.list_records("empty") == []


@pytest.mark.parametrize(
    ("prefix", "after", "limit"),
    [
        ("a", None, 1000),
        ("é", None, 1000),
        ("a", "a0", 1000),
        ("", "ab", 1000),
        ("", None, 3),
        ("a", "a", 2),
        ("", "\U0001f600", 1000),
        ("zz", None, 1000),
        ("b", "a", 1000),
        ("a", "b", 1000),
        ("", None, 0),
    ],
)
async def test_records_prefix_after_limit(
    store: Store, prefix: str, after: str | None, limit: int
) -> None:
    await store.write([PutRecord("t", key, key) for key in KEYS])
    got = await store.list_records("t", prefix=prefix, after=after, limit=limit)
    ordered = sorted(KEYS, key=lambda k: k.encode())
    matching = [
        k
        for k in ordered
        if k.startswith(prefix) and (after is None or k.encode() > after.encode())
    ]
    assert got == [(k, k) for k in matching[:limit]]


async def test_records_negative_limit_is_refused(store: Store) -> None:
    with pytest.raises(InvalidValue):
        await store.list_records("t", limit=-1)


async def test_a_limit_beyond_64_bits_lists_everything(store: Store) -> None:
    await store.write([PutRecord("t", "a", 1), PutDocument(document("huge-limit"))])
    assert await store.list_records("t", limit=1 << 70) == [("a", 1)]
    assert len(await store.list_documents(limit=1 << 70)) == 1


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.get_record("t", "\udc80"),
        lambda s: s.get_record("\ud800", "k"),
        lambda s: s.list_records("\ud800"),
        lambda s: s.list_records("t", prefix="a\udfff"),
        lambda s: s.list_records("t", after="\ud800"),
        lambda s: s.pinned("\ud800"),
        lambda s: s.find_documents("\ud800"),
        lambda s: s.get_record("t", 5),
    ],
)
async def test_read_arguments_that_no_name_can_be_are_invalid(
    store: Store, read: Callable[[Store], Awaitable[object]]
) -> None:
    await store.write([PutRecord("t", "a", 1)])
    with pytest.raises(InvalidValue):
        await read(store)
    assert await store.get_record("t", "a") == 1


async def test_records_page_through_a_table(store: Store) -> None:
    keys = [f"{i:05d}" for i in range(250)]
    await store.write([PutRecord("log", k, i) for i, k in enumerate(keys)])
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = await store.list_records("log", after=after, limit=100)
        if not page:
            break
        seen += [k for k, _ in page]
        after = page[-1][0]
    assert seen == keys


# -- reads of every size ---------------------------------------------------------------------
# SQLiteStore serves small reads on the event loop's thread and the others in worker threads
# (limits: 64 KiB of data, 8 KiB of record values, 64 rows, 64 CIDs per block lookup); these
# tests cross each limit, so both ways must give the same answers.

SIZES = [1, 8 * 1024, 8 * 1024 + 1, 64 * 1024, 64 * 1024 + 1, 300 * 1024]


async def test_blocks_of_every_size_round_trip(store: Store) -> None:
    blocks = [put(f"size-{n}", n) for n in SIZES]
    await store.write(blocks)
    for b in blocks:
        assert await store.get_block(b.cid) == b.data
    assert await store.block_count() == (len(SIZES), sum(SIZES))


async def test_has_blocks_answers_every_cid_in_order(store: Store) -> None:
    stored = [put(f"has-{i}") for i in range(100)]
    await store.write(stored[::2])
    asked = [b.cid for b in stored] + [b.cid for b in stored[:30]]  # 130 CIDs, 30 repeated
    expected = [i % 2 == 0 for i in range(100)] + [i % 2 == 0 for i in range(30)]
    assert await store.has_blocks(asked) == expected
    assert await store.has_blocks(asked[:64]) == expected[:64]
    assert await store.has_blocks(asked[:65]) == expected[:65]
    assert await store.has_blocks([]) == []


async def test_records_of_every_size_round_trip_and_list(store: Store) -> None:
    values = {f"{n:07d}": bytes(n) for n in [0, *SIZES, MAX_RECORD_SIZE - 8]}
    await store.write([PutRecord("sized", k, v) for k, v in values.items()])
    for key, value in values.items():
        assert await store.get_record("sized", key) == value
    assert await store.list_records("sized") == list(values.items())
    keys = list(values)
    for start in range(len(keys)):
        after = keys[start - 1] if start else None
        assert await store.list_records("sized", after=after, limit=2) == [
            (k, values[k]) for k in keys[start : start + 2]
        ]


async def test_long_record_ranges_list_whole(store: Store) -> None:
    await store.write([PutRecord("long", f"{i:03d}", {"i": i}) for i in range(150)])
    everything = [(f"{i:03d}", {"i": i}) for i in range(150)]
    assert await store.list_records("long") == everything
    for limit in (63, 64, 65, 149, 150, 151):
        assert await store.list_records("long", limit=limit) == everything[:limit]
    assert await store.list_records("long", prefix="1") == everything[100:]


async def test_documents_of_every_size_round_trip(store: Store) -> None:
    docs = [document(f"sized-{n}", pad=n, created_at=n) for n in SIZES]
    await store.write([PutDocument(d) for d in docs])
    for d in docs:
        assert await store.get_document(d.root) == d
    assert await store.find_documents(docs[0].document_id) == docs
    assert await store.list_documents(limit=10) == sorted(docs, key=lambda d: d.root.to_bytes())


async def test_pins_of_many_cids(store: Store) -> None:
    cids = [block(f"pin-{i}")[0] for i in range(100)]
    await store.write([Pin("many", tuple(cids))])
    assert await store.pinned("many") == set(cids)
    await store.write([Pin("few", tuple(cids[:64]))])
    assert await store.pinned("few") == set(cids[:64])


# -- lifecycle -------------------------------------------------------------------------------


async def test_acknowledged_writes_survive_reopen(store: Store, reopen: Reopen) -> None:
    doc = document("kept")
    b = put("kept")
    await store.write([b, Pin("doc:kept", (b.cid,)), PutDocument(doc), PutRecord("t", "k", 1)])
    again = await reopen(store)
    async with again:
        assert await again.get_block(b.cid) == b.data
        assert await again.pinned("doc:kept") == {b.cid}
        assert await again.get_document(doc.root) == doc
        assert await again.get_record("t", "k") == 1


CLOSED_CALLS: list[tuple[str, Callable[[Store], Awaitable[object]]]] = [
    ("write", lambda s: s.write([PutRecord("t", "k", 1)])),
    ("empty write", lambda s: s.write([])),
    ("get_block", lambda s: s.get_block(block("x")[0])),
    ("has_blocks", lambda s: s.has_blocks([block("x")[0]])),
    ("block_count", lambda s: s.block_count()),
    ("pinned", lambda s: s.pinned("o")),
    ("collect_garbage", lambda s: s.collect_garbage()),
    ("get_document", lambda s: s.get_document(block("x")[0])),
    ("find_documents", lambda s: s.find_documents("x")),
    ("list_documents", lambda s: s.list_documents()),
    ("get_record", lambda s: s.get_record("t", "k")),
    ("list_records", lambda s: s.list_records("t")),
]


@pytest.mark.parametrize(("name", "call"), CLOSED_CALLS, ids=[n for n, _ in CLOSED_CALLS])
async def test_closed_store_raises_store_error(
    store: Store, name: str, call: Callable[[Store], Awaitable[object]]
) -> None:
    await store.write([PutRecord("t", "k", 1)])
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreError) as info:
        await call(store)
    assert not isinstance(info.value, NotFound)


# -- concurrency and cancellation ------------------------------------------------------------


def _batch(label: str) -> list[WriteOp]:
    b = put(label)
    return [b, PutRecord("batches", label, {"cid": b.cid}), Pin(f"pin:{label}", (b.cid,))]


async def _presence(store: Store, label: str) -> tuple[bool, bool, bool]:
    cid = put(label).cid
    try:
        value = await store.get_record("batches", label)
    except NotFound:
        record = False
    else:
        assert value == {"cid": cid}
        record = True
    return record, await store.has_block(cid), await store.pinned(f"pin:{label}") == {cid}


async def test_many_concurrent_writers_every_ack_is_readable(store: Store) -> None:
    acked: list[str] = []

    async def writer(w: int) -> None:
        for i in range(6):
            label = f"{w:02d}-{i}"
            await store.write(_batch(label))
            acked.append(label)
            # every acknowledged write is visible to the next read
            assert await _presence(store, label) == (True, True, True)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for w in range(50):
                nursery.start_soon(writer, w)
    assert len(acked) == 300
    listed = await store.list_records("batches")
    assert sorted(k for k, _ in listed) == sorted(acked)
    assert await store.block_count() == (300, 300 * 64)


@pytest.mark.parametrize("when", ["before-start", "after-a-checkpoint", "after-all-blocked"])
async def test_cancelled_write_is_all_or_nothing(store: Store, when: str) -> None:
    labels = [f"cancel-{i:02d}" for i in range(40)]
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for label in labels:
                    nursery.start_soon(store.write, _batch(label))
                if when == "after-a-checkpoint":
                    await trio.lowlevel.checkpoint()
                elif when == "after-all-blocked":
                    await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        # Writes are applied in order: once this one returns, every earlier batch is either
        # committed or dropped.
        await store.write([PutRecord("t", "barrier", 0)])
    outcomes = [await _presence(store, label) for label in labels]
    assert all(o in ((True, True, True), (False, False, False)) for o in outcomes), outcomes
    if when == "before-start":
        assert outcomes == [(False, False, False)] * len(labels)


async def test_storage_full_loses_nothing_acknowledged_and_writes_nothing_half(
    open_with_quota: Callable[[int], Awaitable[Store]],
) -> None:
    store = await open_with_quota(1 << 20)
    acked: set[str] = set()
    failed: set[str] = set()

    async def writer(w: int) -> None:
        for i in range(40):
            label = f"full-{w}-{i}"
            b = put(label, 16 * 1024)
            batch: list[WriteOp] = [
                b,
                PutRecord("full", label, {"cid": b.cid}),
                Pin("keep", (b.cid,)),
            ]
            try:
                await store.write(batch)
            except StorageFull:
                failed.add(label)
            else:
                acked.add(label)

    async with store:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(writer, w)
        assert acked
        assert failed
        records = dict(await store.list_records("full", limit=10_000))
        assert set(records) == acked
        pinned = await store.pinned("keep")
        for label in acked | failed:
            b = put(label, 16 * 1024)
            here = label in acked
            assert await store.has_block(b.cid) == here
            assert (b.cid in pinned) == here
        # Freeing space makes room again.
        await store.write([Unpin("keep")])
        assert await store.collect_garbage() == len(acked)
        await store.write(_batch("after-gc"))
        assert await _presence(store, "after-gc") == (True, True, True)


async def test_operations_must_be_store_operations(store: Store) -> None:
    with pytest.raises(InvalidValue):
        await store.write(["not an op"])  # type: ignore[list-item]
    with pytest.raises(InvalidValue):
        PutBlock("bafy", b"")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        Pin("owner", ("bafy",))  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        PutRecord("t", "", 1)
    with pytest.raises(InvalidValue):
        PutRecord("t", "\ud800", 1)
    with pytest.raises(InvalidValue):
        document("x", created_at=-1)
    assert Pin("owner", [block("x")[0]]).cids == (block("x")[0],)  # type: ignore[arg-type]
