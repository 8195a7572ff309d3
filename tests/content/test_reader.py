"""Reading and walking UnixFS DAGs: verified, size-checked, bounded, foreign DAGs accepted."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content import (
    Block,
    DagLimits,
    DagWalker,
    FileImporter,
    ImportResult,
    list_blocks,
    read_file,
)
from p2pdoc.content.dagpb import PBLink, PBNode, UnixFsData, UnixFsType, encode_node, encode_unixfs
from p2pdoc.errors import (
    ContentMismatch,
    DecodeError,
    InvalidValue,
    LimitExceeded,
    LocalProtocolError,
    NotFound,
)
from tests.content.helpers import fixture, vector_bytes


class Blocks(dict[Cid, bytes]):
    """A dict of blocks with an async ``fetch`` that counts fetches."""

    fetches = 0

    async def fetch(self, cid: Cid) -> bytes:
        self.fetches += 1
        try:
            return self[cid]
        except KeyError:
            raise NotFound(str(cid)) from None


def _import(data: bytes, **kwargs: int) -> tuple[ImportResult, Blocks]:
    importer = FileImporter(**kwargs)
    blocks = Blocks()
    for block in importer.write(data):
        blocks[block.cid] = block.data
    result = importer.finish()
    for block in result.blocks:
        blocks[block.cid] = block.data
    return result, blocks


async def _read(root: Cid, get: Callable[[Cid], object], **kwargs: object) -> bytes:
    with trio.fail_after(10):
        return b"".join([piece async for piece in read_file(root, get, **kwargs)])  # type: ignore[arg-type]


def _node(
    links: list[tuple[Cid, int]], *, data: bytes | None = None, filesize: int | None = -1
) -> Block:
    """A UnixFS file node over (cid, blocksize) links; filesize -1 means 'computed'."""
    sizes = tuple(size for _, size in links)
    if filesize == -1:
        filesize = sum(sizes) + len(data or b"")
    unixfs = encode_unixfs(UnixFsData(UnixFsType.FILE, data, filesize, sizes))
    encoded = encode_node(PBNode(tuple(PBLink(cid, "", size) for cid, size in links), unixfs))
    return Block(Cid.of(Multicodec.DAG_PB, encoded), encoded)


def _raw(data: bytes) -> Block:
    return Block(Cid.of(Multicodec.RAW, data), data)


def _pb(links: tuple[PBLink, ...], unixfs: UnixFsData | None) -> Block:
    data = encode_node(PBNode(links, None if unixfs is None else encode_unixfs(unixfs)))
    return Block(Cid.of(Multicodec.DAG_PB, data), data)


# -- good DAGs --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 64), st.integers(2, 6))
async def test_read_returns_what_was_imported(data: bytes, chunk: int, links: int) -> None:
    result, blocks = _import(data, chunk_size=chunk, max_links=links)
    assert await _read(result.root, blocks.fetch) == data
    listed = await list_blocks(result.root, blocks.fetch)
    assert set(listed) == set(blocks)
    assert listed[0] == result.root


async def test_read_default_layout_multi_megabyte() -> None:
    vector = fixture()["unixfs"]["vectors"][-1]
    data = vector_bytes(vector["seed"], vector["length"])
    result, blocks = _import(data)
    assert str(result.root) == vector["root"]
    pieces = [piece async for piece in read_file(result.root, blocks.fetch)]
    assert b"".join(pieces) == data
    assert max(map(len, pieces)) == 262144


@pytest.mark.parametrize("vector", fixture()["unixfs_foreign"], ids=lambda v: v["name"])
async def test_dags_of_other_importers_are_read(vector: dict[str, object]) -> None:
    raw_blocks = vector["blocks"]
    assert isinstance(raw_blocks, dict)
    blocks = Blocks({Cid.parse(k): base64.b64decode(v) for k, v in raw_blocks.items()})
    root = Cid.parse(str(vector["root"]))
    data = vector_bytes(str(vector["seed"]), int(vector["length"]))  # type: ignore[call-overload]
    assert await _read(root, blocks.fetch) == data
    assert set(await list_blocks(root, blocks.fetch)) == set(blocks)
    assert len(blocks) == vector["block_count"]


async def test_repeated_chunks_are_read_and_listed_once() -> None:
    data = b"\0" * (16 * 40)
    result, blocks = _import(data, chunk_size=16, max_links=4)
    assert await _read(result.root, blocks.fetch) == data
    listed = await list_blocks(result.root, blocks.fetch)
    assert len(listed) == len(set(listed)) == len(blocks)


async def test_empty_file_and_inline_data() -> None:
    empty = _raw(b"")
    assert await _read(empty.cid, Blocks({empty.cid: b""}).fetch) == b""
    # A node holding bytes itself and below it: its own data comes first.
    leaf = _raw(b"world")
    node = _node([(leaf.cid, 5)], data=b"hello ")
    blocks = Blocks({leaf.cid: leaf.data, node.cid: node.data})
    assert await _read(node.cid, blocks.fetch) == b"hello world"


# -- the walker -------------------------------------------------------------------------


def test_walker_hands_out_a_window_and_finishes() -> None:
    data = vector_bytes("walker", 16 * 20)
    result, blocks = _import(data, chunk_size=16, max_links=4)
    walker = DagWalker(result.root)
    assert walker.next_wanted(10) == [result.root]
    assert walker.next_wanted(10) == []  # nothing more until the root arrives
    assert walker.outstanding == 1
    walker.receive(result.root, blocks[result.root])
    assert walker.file_size == len(data)
    received = 1
    out = b""
    while not walker.done:
        batch = walker.next_wanted(3)
        assert 0 < len(batch) <= 3
        for cid in batch:
            out += walker.receive(cid, blocks[cid])
            received += 1
    assert received == walker.blocks_received == len(blocks)
    # With windows larger than one, blocks complete out of file order, so only the length
    # and the content of the leaves can be compared.
    assert sorted(out) == sorted(data)


def test_walker_rejects_misuse() -> None:
    leaf = _raw(b"x")
    walker = DagWalker(leaf.cid)
    with pytest.raises(LocalProtocolError):
        walker.receive(leaf.cid, leaf.data)  # not handed out yet
    with pytest.raises(InvalidValue):
        walker.next_wanted(0)
    with pytest.raises(InvalidValue):
        DagWalker("bafk...")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        DagLimits(max_depth=0)
    assert walker.next_wanted() == [leaf.cid]
    assert walker.receive(leaf.cid, leaf.data) == b"x"
    assert walker.done


# -- hostile or broken DAGs -------------------------------------------------------------


async def test_a_corrupted_block_names_its_cid() -> None:
    data = vector_bytes("corrupt", 16 * 10)
    result, blocks = _import(data, chunk_size=16, max_links=3)
    for victim in list(blocks):
        broken = Blocks(blocks)
        broken[victim] = blocks[victim][:-1] + bytes([blocks[victim][-1] ^ 1])
        with pytest.raises(ContentMismatch) as info:
            await _read(result.root, broken.fetch)
        assert info.value.cid == str(victim)


async def test_a_missing_block_propagates_the_fetch_error() -> None:
    result, blocks = _import(vector_bytes("missing", 100), chunk_size=16)
    del blocks[next(cid for cid in blocks if cid != result.root)]
    with pytest.raises(NotFound):
        await _read(result.root, blocks.fetch)


async def test_blocksize_that_lies_about_a_child_is_a_mismatch() -> None:
    leaf = _raw(b"abc")
    node = _node([(leaf.cid, 4)])  # declares 4 bytes below a 3-byte leaf
    blocks = Blocks({leaf.cid: leaf.data, node.cid: node.data})
    with pytest.raises(ContentMismatch, match="parent declares 4") as info:
        await _read(node.cid, blocks.fetch)
    assert info.value.cid == str(leaf.cid)
    inner = _node([(leaf.cid, 3)])
    outer = _node([(inner.cid, 2)])
    blocks.update({inner.cid: inner.data, outer.cid: outer.data})
    with pytest.raises(ContentMismatch) as info:
        await _read(outer.cid, blocks.fetch)
    assert info.value.cid == str(inner.cid)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda leaf: _node([(leaf.cid, 3)], filesize=5), "filesize 5 differs"),
        (lambda leaf: _pb((PBLink(leaf.cid, "", 3),), None), "without UnixFS Data"),
        (
            lambda leaf: _pb((PBLink(leaf.cid, "", 3),), UnixFsData(UnixFsType.FILE, filesize=3)),
            "1 links but 0 blocksizes",
        ),
        (
            lambda leaf: _pb((PBLink(leaf.cid, "a.txt"),), UnixFsData(UnixFsType.DIRECTORY)),
            "DIRECTORY node, not a file",
        ),
        (
            lambda leaf: _pb((PBLink(leaf.cid, "", 3),), UnixFsData(UnixFsType.RAW, b"", 3, (3,))),
            "Raw node with links",
        ),
        (lambda leaf: _node([(Cid.of(Multicodec.DAG_CBOR, b"{}"), 3)]), "dag_cbor block"),
        (lambda leaf: Block(leaf.cid, leaf.data + b"\x12\x00"), "does not match"),
    ],
)
async def test_malformed_nodes_are_rejected(make: Callable[[Block], Block], message: str) -> None:
    leaf = _raw(b"abc")
    bad = make(leaf)
    blocks = Blocks({leaf.cid: leaf.data, bad.cid: bad.data})
    with pytest.raises((DecodeError, ContentMismatch), match=message):
        await _read(bad.cid, blocks.fetch)


async def test_a_dag_cbor_root_is_not_a_file() -> None:
    data = cbor.encode({"a": 1})
    cid = Cid.of(Multicodec.DAG_CBOR, data)
    with pytest.raises(DecodeError, match="not part of a UnixFS file"):
        await _read(cid, Blocks({cid: data}).fetch)


async def test_depth_is_bounded() -> None:
    leaf = _raw(b"deep")
    blocks = Blocks({leaf.cid: leaf.data})
    top = leaf
    for _ in range(10):  # a chain of ten single-link nodes
        top = _node([(top.cid, 4)])
        blocks[top.cid] = top.data
    assert await _read(top.cid, blocks.fetch, limits=DagLimits(max_depth=10)) == b"deep"
    with pytest.raises(LimitExceeded) as info:
        await _read(top.cid, blocks.fetch, limits=DagLimits(max_depth=9))
    assert info.value.what == "UnixFS DAG depth"


async def test_block_size_link_count_and_file_size_are_bounded() -> None:
    data = vector_bytes("bounds", 16 * 8)
    result, blocks = _import(data, chunk_size=16, max_links=8)
    assert await _read(result.root, blocks.fetch, limits=DagLimits(max_links=8)) == data
    with pytest.raises(LimitExceeded, match="links"):
        await _read(result.root, blocks.fetch, limits=DagLimits(max_links=7))
    with pytest.raises(LimitExceeded, match="block"):
        await _read(result.root, blocks.fetch, limits=DagLimits(max_block_size=15))
    with pytest.raises(LimitExceeded, match="file size"):
        await _read(result.root, blocks.fetch, limits=DagLimits(max_file_size=16 * 8 - 1))


async def test_a_shared_subtree_bomb_stops_at_the_file_size_limit() -> None:
    # Each level links the level below 4 times: 30 levels declare 4**30 * 4 bytes while the
    # whole DAG is 31 small blocks. The declared size is refused before anything is streamed.
    top = _raw(b"boom")
    blocks = Blocks({top.cid: top.data})
    size = 4
    for _ in range(30):
        top = _node([(top.cid, size)] * 4)
        size *= 4
        blocks[top.cid] = top.data
    with pytest.raises(LimitExceeded, match="file size"):
        await _read(top.cid, blocks.fetch)
    assert blocks.fetches == 1


async def test_a_block_linked_many_times_keeps_the_queue_bounded() -> None:
    # Root -> 150 x the same node Y -> 150 x the same 1-byte leaf: 22,500 leaf occurrences
    # from three blocks. Occurrences merged into one fetch still count against the window,
    # and the queue of links stays under max_queued whatever the window.
    leaf = _raw(b"z")
    middle = _node([(leaf.cid, 1)] * 150)
    root = _node([(middle.cid, 150)] * 150)
    blocks = Blocks({b.cid: b.data for b in (leaf, middle, root)})
    tight = DagLimits(max_queued=1000)
    assert await _read(root.cid, blocks.fetch, limits=tight) == b"z" * 22_500
    with pytest.raises(LimitExceeded, match="queued UnixFS links"):
        await list_blocks(root.cid, blocks.fetch, limits=tight)  # a window of 64
    assert await list_blocks(root.cid, blocks.fetch) == [root.cid, middle.cid, leaf.cid]

    walker = DagWalker(root.cid)
    assert walker.next_wanted() == [root.cid]
    walker.receive(root.cid, root.data)
    assert walker.next_wanted(10) == [middle.cid]  # ten occurrences, one fetch
    assert walker.next_wanted(10) == []
    walker.receive(middle.cid, middle.data)
    assert walker.next_wanted(5) == [leaf.cid]


async def test_links_to_empty_subtrees_are_refused() -> None:
    # Each level links the level below 4 times, declaring 0 bytes: 40 levels would be 4**40
    # block occurrences of a 0-byte file from 41 tiny blocks, a walk that never ends and that
    # the file size limit cannot stop. The first empty link is refused instead.
    top = _raw(b"")
    blocks = Blocks({top.cid: top.data})
    for _ in range(40):
        top = _node([(top.cid, 0)] * 4)
        blocks[top.cid] = top.data

    async def fetch(cid: Cid) -> bytes:
        if blocks.fetches >= 1000:
            raise AssertionError("the walk did not stop")
        return await blocks.fetch(cid)

    with pytest.raises(DecodeError, match="empty subtree"):
        await _read(top.cid, fetch)
    assert blocks.fetches == 1
