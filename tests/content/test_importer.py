"""FileImporter: the CIDs of the reference JavaScript importer, streamed in bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content import CHUNK_SIZE, MAX_LINKS, Block, FileImporter, ImportResult
from p2pdoc.content.dagpb import (
    PBLink,
    PBNode,
    UnixFsData,
    UnixFsType,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)
from p2pdoc.errors import InvalidValue, LocalProtocolError
from tests.content.helpers import fixture, vector_bytes

EMPTY_FILE_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def _import(
    data: bytes, pieces: Sequence[int] = (100_003,), **kwargs: int
) -> tuple[ImportResult, list[Block]]:
    """Import ``data`` written in pieces of the given sizes (cycled)."""
    importer = FileImporter(**kwargs)
    blocks: list[Block] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = pieces[i % len(pieces)]
        blocks += importer.write(data[pos : pos + size])
        pos += size
        i += 1
    result = importer.finish()
    return result, blocks + list(result.blocks)


def _distinct(blocks: list[Block]) -> dict[Cid, bytes]:
    return {block.cid: block.data for block in blocks}


# -- the reference vectors --------------------------------------------------------------


def _default_vectors() -> list[dict[str, object]]:
    return list(fixture()["unixfs"]["vectors"])


@pytest.mark.parametrize("vector", _default_vectors(), ids=lambda v: str(v["name"]))
def test_default_settings_match_the_reference_importer(vector: dict[str, object]) -> None:
    settings = fixture()["unixfs"]["settings"]
    assert (settings["chunker"], settings["maxChildrenPerNode"]) == (
        f"fixed {CHUNK_SIZE}",
        MAX_LINKS,
    )
    seed, length = str(vector["seed"]), int(vector["length"])  # type: ignore[call-overload]
    data = vector_bytes(seed, length)
    result, blocks = _import(data)
    distinct = _distinct(blocks)
    assert str(result.root) == vector["root"]
    assert result.size == length
    assert len(distinct) == vector["block_count"]
    assert sum(map(len, distinct.values())) == vector["dag_size"]
    assert blocks[-1].cid == result.root  # the root comes last
    for cid, block in distinct.items():
        cid.verify(block)


def test_empty_file_is_the_empty_raw_block() -> None:
    result, blocks = _import(b"")
    assert str(result.root) == EMPTY_FILE_CID
    assert blocks == [Block(result.root, b"")]
    assert result.size == 0
    assert EMPTY_FILE_CID in {v["root"] for v in _default_vectors() if v["length"] == 0}


@pytest.mark.parametrize(
    "vector", fixture()["unixfs_small"]["vectors"], ids=lambda v: str(v["length"])
)
def test_small_chunks_and_fanout_match_the_reference_importer(vector: dict[str, object]) -> None:
    seed, length = str(vector["seed"]), int(vector["length"])  # type: ignore[call-overload]
    data = vector_bytes(seed, length)
    for pieces in ([1], [7, 16, 33], [length or 1]):
        result, blocks = _import(data, pieces, chunk_size=16, max_links=3)
        distinct = _distinct(blocks)
        assert str(result.root) == vector["root"]
        assert len(distinct) == vector["block_count"]
        assert sum(map(len, distinct.values())) == vector["dag_size"]


# -- structure --------------------------------------------------------------------------


def _reference_root(data: bytes, chunk_size: int, max_links: int) -> Cid:
    """The balanced layout computed level by level over the whole file (not streaming)."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    # (cid, tsize, filesize) per entry of the current level
    level = [(Cid.of(Multicodec.RAW, c), len(c), len(c)) for c in chunks]
    if len(level) == 1:
        return level[0][0]
    while True:
        parents = []
        for i in range(0, len(level), max_links):
            group = level[i : i + max_links]
            unixfs = UnixFsData(
                UnixFsType.FILE,
                filesize=sum(f for _, _, f in group),
                blocksizes=tuple(f for _, _, f in group),
            )
            block = encode_node(
                PBNode(tuple(PBLink(c, "", t) for c, t, _ in group), encode_unixfs(unixfs))
            )
            parents.append(
                (
                    Cid.of(Multicodec.DAG_PB, block),
                    len(block) + sum(t for _, t, _ in group),
                    sum(f for _, _, f in group),
                )
            )
        if len(parents) == 1:
            return parents[0][0]
        level = parents


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=600),
    st.integers(1, 9),
    st.integers(2, 5),
    st.lists(st.integers(1, 50), min_size=1, max_size=5),
)
def test_streaming_equals_the_level_by_level_layout_for_any_split(
    data: bytes, chunk_size: int, max_links: int, pieces: list[int]
) -> None:
    result, blocks = _import(data, pieces, chunk_size=chunk_size, max_links=max_links)
    assert result.root == _reference_root(data, chunk_size, max_links)
    assert result.size == len(data)
    # Every block precedes the node linking to it, and every link resolves.
    seen: set[Cid] = set()
    for block in blocks:
        if block.cid.codec is Multicodec.DAG_PB:
            node = decode_node(block.data)
            unixfs = decode_unixfs(node.data or b"")
            assert unixfs.type is UnixFsType.FILE
            assert len(unixfs.blocksizes) == len(node.links) <= max_links
            assert all(link.hash in seen for link in node.links)
        seen.add(block.cid)


def test_tsize_is_the_cumulative_size_of_the_target_dag() -> None:
    data = vector_bytes("tsize", 16 * 10)
    result, blocks = _import(data, chunk_size=16, max_links=3)
    by_cid = _distinct(blocks)

    def total(cid: Cid) -> int:
        block = by_cid[cid]
        if cid.codec is Multicodec.RAW:
            return len(block)
        node = decode_node(block)
        for link in node.links:
            assert link.tsize == total(link.hash)
            assert link.name == ""
        return len(block) + sum(total(link.hash) for link in node.links)

    assert total(result.root) == sum(map(len, by_cid.values()))


def test_a_second_level_file_has_the_expected_shape() -> None:
    # 175 leaves: a full node of 174 leaves, a node of one leaf, and a root over both.
    data = vector_bytes("shape", 174 * 64 + 1)
    result, blocks = _import(data, chunk_size=64, max_links=174)
    assert blocks[-1].cid == result.root
    root = decode_node(blocks[-1].data)
    assert [decode_unixfs(root.data or b"").blocksizes] == [(174 * 64, 1)]
    second = decode_node(_distinct(blocks)[root.links[1].hash])
    assert len(second.links) == 1
    assert second.links[0].hash.codec is Multicodec.RAW


# -- streaming behaviour ----------------------------------------------------------------


def test_write_returns_leaves_as_soon_as_chunks_complete() -> None:
    importer = FileImporter(chunk_size=4, max_links=3)
    assert importer.write(b"abc") == []
    first = importer.write(b"defgh")
    assert [b.data for b in first] == [b"abcd", b"efgh"]
    third = importer.write(b"ijkl")
    assert [b.cid.codec for b in third] == [Multicodec.RAW, Multicodec.DAG_PB]
    assert importer.write(b"") == []
    assert importer.size == 12
    result = importer.finish()
    # Three leaves filled the only node, which write() already returned: it is the root.
    assert (result.root, result.size, result.blocks) == (third[-1].cid, 12, ())


def test_mutable_buffers_may_be_reused_after_write() -> None:
    data = vector_bytes("reuse", 1000)
    expected, _ = _import(data, chunk_size=64, max_links=4)
    importer = FileImporter(chunk_size=64, max_links=4)
    buffer = bytearray(37)
    view = memoryview(buffer)
    for pos in range(0, len(data), 37):
        piece = data[pos : pos + 37]
        buffer[: len(piece)] = piece
        importer.write(view[: len(piece)])
        buffer[:] = b"\xee" * 37  # scribble over it: the importer must have copied
    assert importer.finish().root == expected.root


def test_memoryview_of_non_bytes_items_is_accepted() -> None:
    import array

    data = array.array("I", range(100))
    expected, _ = _import(data.tobytes(), chunk_size=64)
    importer = FileImporter(chunk_size=64)
    importer.write(memoryview(data))
    assert importer.finish().root == expected.root


def test_misuse_is_a_local_protocol_error() -> None:
    importer = FileImporter()
    importer.finish()
    with pytest.raises(LocalProtocolError):
        importer.write(b"x")
    with pytest.raises(LocalProtocolError):
        importer.finish()


@pytest.mark.parametrize(
    "kwargs",
    [{"chunk_size": 0}, {"chunk_size": 2**20 + 1}, {"max_links": 1}, {"max_links": 4096}],
)
def test_parameters_are_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidValue):
        FileImporter(**kwargs)


def _stream(count: int, size: int) -> Iterator[bytes]:
    tail = (bytes(range(256)) * (size // 256 + 1))[: size - 8]
    for i in range(count):
        yield i.to_bytes(8, "big") + tail


def test_memory_stays_bounded_for_a_large_stream() -> None:
    piece_size = (1 << 20) + 4099  # chunks straddle pieces: the pending buffer is exercised
    importer = FileImporter()
    tracemalloc.start()
    try:
        for piece in _stream(64, piece_size):  # 64 MiB in all
            for block in importer.write(piece):
                assert len(block.data) <= CHUNK_SIZE  # dropped at once, as a store would
        result = importer.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == 64 * piece_size
    # The generator's 1 MiB tail, the current and the previous input piece, the chunks
    # copied out of one piece, and the pending link lists: a few MiB, not 64.
    assert peak < 4 * 1024 * 1024
