"""import_file: paths, file objects and async streams into a store, in pinned batches."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pdoc.codecs.cid import Cid
from p2pdoc.content import FileImporter, import_file, list_blocks, read_file
from p2pdoc.errors import InvalidValue, StorageFull
from p2pdoc.store.base import Pin, PutBlock, WriteOp
from tests.content.helpers import RecordingStore, vector_bytes

DATA = vector_bytes("import_file", 3 * 1024 * 1024 + 777)  # 13 leaves and a root


def _expected_root(data: bytes) -> Cid:
    importer = FileImporter()
    importer.write(data)
    return importer.finish().root


ROOT = _expected_root(DATA)


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for pos in range(0, len(data), size):
        await trio.lowlevel.checkpoint()
        yield data[pos : pos + size]


async def test_import_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "appendix.pdf"
    path.write_bytes(DATA)
    store = RecordingStore()
    with trio.fail_after(20):
        result = await import_file(path, store)
        assert (result.root, result.size, result.blocks) == (ROOT, len(DATA), ())
        assert b"".join([p async for p in read_file(result.root, store.get_block)]) == DATA
        assert set(await list_blocks(result.root, store.get_block)) == set(store.put_cids)
        root_size = len(await store.get_block(result.root))
        assert await store.block_count() == (14, len(DATA) + root_size)
        assert await import_file(str(path), RecordingStore()) == result
        assert await store.pinned("doc:x") == set()


async def test_import_from_a_file_object_keeps_it_open() -> None:
    file = io.BytesIO(b"skip" + DATA)
    file.read(4)
    store = RecordingStore()
    with trio.fail_after(20):
        result = await import_file(file, store)
    assert result.root == ROOT
    assert not file.closed


async def test_import_from_an_async_stream() -> None:
    store = RecordingStore()
    with trio.fail_after(20):
        result = await import_file(_pieces(DATA, 65_537), store)
    assert result.root == ROOT


async def test_batches_are_bounded_ordered_verified_and_pinned() -> None:
    store = RecordingStore()
    batch_bytes = 1024 * 1024
    with trio.fail_after(20):
        result = await import_file(
            _pieces(DATA, 300_000), store, pin="doc:x", batch_bytes=batch_bytes
        )
    assert len(store.batches) > 2
    written: list[Cid] = []
    for batch in store.batches:
        puts = [op for op in batch if isinstance(op, PutBlock)]
        pins = [op for op in batch if isinstance(op, Pin)]
        assert all(op.verified for op in puts)
        # A batch closes once it reaches batch_bytes: at most one input piece's chunks over.
        assert sum(len(op.data) for op in puts) < batch_bytes + 300_000 + 262_144
        assert pins == [Pin("doc:x", tuple(op.cid for op in puts))]
        written += [op.cid for op in puts]
    assert written[-1] == result.root  # the root is written last
    assert await store.pinned("doc:x") == set(written) == set(store.put_cids)
    assert await store.collect_garbage() == 0


async def test_store_errors_propagate() -> None:
    class FullStore(RecordingStore):
        async def write(self, ops: object) -> None:
            raise StorageFull("disk full")

    with trio.fail_after(20), pytest.raises(StorageFull):
        await import_file(io.BytesIO(DATA), FullStore())


async def test_unreadable_sources_raise(tmp_path: Path) -> None:
    with trio.fail_after(20):
        with pytest.raises(FileNotFoundError):
            await import_file(tmp_path / "missing", RecordingStore())
        with pytest.raises(InvalidValue):
            await import_file(12, RecordingStore())  # type: ignore[arg-type]
        with pytest.raises(InvalidValue):
            await import_file(io.BytesIO(b""), RecordingStore(), batch_bytes=0)


async def test_empty_file_is_stored_too() -> None:
    store = RecordingStore()
    with trio.fail_after(20):
        result = await import_file(io.BytesIO(b""), store, pin="doc:empty")
    assert list(store.put_cids) == [result.root]
    assert await store.get_block(result.root) == b""
    assert await store.pinned("doc:empty") == {result.root}


async def test_cancellation_keeps_the_batches_already_written(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class StallingStore(RecordingStore):
        async def write(self, ops: Sequence[WriteOp]) -> None:
            if len(self.batches) == 2:
                await trio.sleep_forever()
            await super().write(ops)

    store = StallingStore()
    with trio.move_on_after(5) as scope:
        await import_file(_pieces(DATA, 100_000), store, pin="doc:y", batch_bytes=1024 * 1024)
    assert scope.cancelled_caught
    assert len(store.batches) == 2
    assert await store.pinned("doc:y") == set(store.put_cids)
    assert len(store.put_cids) >= 8  # two batches of at least four 256 KiB leaves
