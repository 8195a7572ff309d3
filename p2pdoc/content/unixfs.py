"""UnixFS files: a streaming importer, a sans-IO DAG walker, and async helpers over a store.

Goals:
- A file's root CID is the one ``ipfs add --cid-version=1`` (and the JavaScript
  ``ipfs-unixfs-importer`` with raw leaves, CIDv1, fixed 262,144-byte chunks, balanced layout,
  174 links per node, single leaf reduced to itself) computes for the same bytes.
- Memory stays bounded whatever the file size: the importer keeps at most one partial chunk
  and one pending link list per tree level; the walker keeps the links still to fetch.
- Every block read is verified against its CID and every declared size against what is
  actually below it, so a hostile DAG cannot make a reader return wrong bytes or exhaust
  memory; it can only fail with a typed error.

Non-goals: directories, HAMT shards, symlinks, metadata (mode, mtime) on import; CIDv0,
other hash functions and inline (identity) CIDs; other chunkers or the trickle layout on
import (trickle DAGs and other fan-outs are accepted on read).

The layout is specified in ``docs/content-addressing.md``. :class:`FileImporter` and
:class:`DagWalker` do no I/O; :func:`import_file`, :func:`read_file` and :func:`list_blocks`
are thin trio adapters over them.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, Final, TypeAlias

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.dagpb import (
    DEFAULT_MAX_BLOCK_SIZE,
    DEFAULT_MAX_LINKS,
    PBLink,
    PBNode,
    UnixFsData,
    UnixFsType,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)
from p2pdoc.errors import (
    ContentMismatch,
    DecodeError,
    InvalidValue,
    LimitExceeded,
    LocalProtocolError,
)
from p2pdoc.store.base import Pin, PutBlock, Store, WriteOp

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_BATCH_BYTES",
    "MAX_LINKS",
    "Block",
    "DagLimits",
    "DagWalker",
    "FileImporter",
    "GetBlock",
    "ImportResult",
    "ImportSource",
    "import_file",
    "list_blocks",
    "read_file",
]

CHUNK_SIZE: Final = 262144
"""Bytes per leaf (256 KiB), the IPFS default fixed-size chunker."""

MAX_LINKS: Final = 174
"""Links per internal node, the IPFS default for the balanced layout."""

DEFAULT_BATCH_BYTES: Final = 4 * 1024 * 1024
"""Block bytes :func:`import_file` gathers before each ``Store.write``."""

_MAX_CHUNK_SIZE: Final = 1024 * 1024

# A pending link: (target CID, Tsize of the target's DAG, file bytes below it).
_Link: TypeAlias = tuple[Cid, int, int]


@dataclass(frozen=True, slots=True)
class Block:
    """A content-addressed block: ``data`` hashes to ``cid``."""

    cid: Cid
    data: bytes

    def __repr__(self) -> str:
        return f"Block({self.cid!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The outcome of importing one file.

    Attributes:
        root: the file's CID (a raw CID for a file of at most one chunk, else dag-pb).
        size: the file's length in bytes.
        blocks: from :meth:`FileImporter.finish`, the blocks it produced that
            :meth:`FileImporter.write` had not returned yet, ending with the root unless
            ``write`` already returned it (a file that exactly fills a tree); empty in the
            result of :func:`import_file`, which has stored every block.
    """

    root: Cid
    size: int
    blocks: tuple[Block, ...] = ()

    def __repr__(self) -> str:
        return f"ImportResult({self.root!r}, size={self.size}, blocks={len(self.blocks)})"


class FileImporter:
    """Chunks a byte stream and builds its UnixFS DAG as blocks, without I/O.

    Feed the file with :meth:`write` in pieces of any size, then call :meth:`finish` once.
    Each call returns the blocks completed so far, in a valid storage order: every block
    comes before the node that links to it, and the root comes last. The same block may be
    returned more than once when the file repeats a chunk.

    Memory: at most one partial chunk (as references to the written ``bytes`` objects, or
    copies of mutable buffers) plus ``max_links`` pending links per tree level.

    Args:
        chunk_size: bytes per leaf; the IPFS default unless you need another DAG shape.
        max_links: links per internal node (at least 2).

    Raises:
        InvalidValue: a parameter out of range.
    """

    __slots__ = (
        "_chunk_size",
        "_finished",
        "_levels",
        "_max_links",
        "_pending",
        "_pending_len",
        "_size",
    )

    def __init__(self, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> None:
        if not isinstance(chunk_size, int) or not 1 <= chunk_size <= _MAX_CHUNK_SIZE:
            raise InvalidValue(f"chunk_size must be in [1, {_MAX_CHUNK_SIZE}], got {chunk_size}")
        if not isinstance(max_links, int) or not 2 <= max_links <= DEFAULT_MAX_LINKS:
            raise InvalidValue(f"max_links must be in [2, {DEFAULT_MAX_LINKS}], got {max_links}")
        self._chunk_size = chunk_size
        self._max_links = max_links
        # _levels[0] holds leaf links, _levels[k] links to nodes of height k; none is ever
        # longer than max_links - 1 between calls (a full list becomes a node at once).
        self._levels: list[list[_Link]] = [[]]
        self._pending: list[bytes | memoryview] = []
        self._pending_len = 0
        self._size = 0
        self._finished = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def chunk_size(self) -> int:
        """Bytes per leaf. Writing whole ``bytes`` chunks of this size avoids any copy."""
        return self._chunk_size

    def write(self, data: bytes | bytearray | memoryview) -> list[Block]:
        """Add the next bytes of the file.

        Copies: a ``bytes`` object of exactly one chunk, with nothing pending, becomes its leaf
        as is; any other leaf costs one copy of its bytes. The tail of a ``bytes`` input that
        does not fill a chunk is kept by reference until the chunk completes; that of a
        mutable buffer is copied, so the caller may reuse the buffer once this returns.

        Returns:
            The blocks completed by these bytes (leaves, and nodes whose links filled up).

        Raises:
            LocalProtocolError: called after :meth:`finish`.
        """
        if self._finished:
            raise LocalProtocolError("FileImporter.write() after finish()")
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        owned = isinstance(data, bytes)
        total = len(view)
        if not total:
            return []
        self._size += total
        out: list[Block] = []
        chunk = self._chunk_size
        pos = 0
        if self._pending_len:
            take = min(chunk - self._pending_len, total)
            piece = view[:take]
            self._pending.append(piece if owned else bytes(piece))
            self._pending_len += take
            pos = take
            if self._pending_len == chunk:
                self._flush_pending(out)
        while total - pos >= chunk:
            if isinstance(data, bytes) and pos == 0 and total == chunk:
                self._leaf(data, out)  # the caller's bytes object is the chunk: no copy
            else:
                self._leaf(view[pos : pos + chunk].tobytes(), out)
            pos += chunk
        if pos < total:
            piece = view[pos:]
            self._pending.append(piece if owned else bytes(piece))
            self._pending_len += total - pos
        return out

    def finish(self) -> ImportResult:
        """End the file: emit the last leaf and the nodes on the tree's right edge.

        An empty file is one empty raw leaf; a file of one chunk is that raw leaf alone.

        Returns:
            The root CID, the file size and the blocks not returned by :meth:`write` yet.

        Raises:
            LocalProtocolError: called twice.
        """
        if self._finished:
            raise LocalProtocolError("FileImporter.finish() called twice")
        self._finished = True
        out: list[Block] = []
        if self._pending_len or self._size == 0:
            self._flush_pending(out)
        # Reduce bottom-up exactly as the balanced layout does: a level's leftover links
        # become one more node unless they are a single link with nothing above it, which
        # is then the root (for a one-leaf file, the leaf itself).
        levels = self._levels
        height = 0
        while True:
            pending = levels[height]
            above = any(levels[k] for k in range(height + 1, len(levels)))
            if not above and len(pending) == 1:
                root = pending[0][0]
                break
            if pending:
                link = self._node(pending, out)
                levels[height] = []
                if height + 1 == len(levels):
                    levels.append([])
                levels[height + 1].append(link)
            height += 1
        return ImportResult(root, self._size, tuple(out))

    # -- internals ----------------------------------------------------------------------

    def _flush_pending(self, out: list[Block]) -> None:
        pieces = self._pending
        first = pieces[0] if len(pieces) == 1 else None
        chunk = first if isinstance(first, bytes) else b"".join(pieces)
        self._pending = []
        self._pending_len = 0
        self._leaf(chunk, out)

    def _leaf(self, chunk: bytes, out: list[Block]) -> None:
        cid = Cid(Multicodec.RAW, hashlib.sha256(chunk).digest())
        out.append(Block(cid, chunk))
        self._add(0, (cid, len(chunk), len(chunk)), out)

    def _add(self, height: int, link: _Link, out: list[Block]) -> None:
        levels = self._levels
        while True:
            level = levels[height]
            level.append(link)
            if len(level) < self._max_links:
                return
            link = self._node(level, out)
            levels[height] = []
            height += 1
            if height == len(levels):
                levels.append([])

    @staticmethod
    def _node(links: list[_Link], out: list[Block]) -> _Link:
        blocksizes = tuple(filesize for _, _, filesize in links)
        filesize = sum(blocksizes)
        unixfs = UnixFsData(UnixFsType.FILE, filesize=filesize, blocksizes=blocksizes)
        node = PBNode(
            tuple(PBLink(cid, "", tsize) for cid, tsize, _ in links), encode_unixfs(unixfs)
        )
        data = encode_node(node)
        cid = Cid(Multicodec.DAG_PB, hashlib.sha256(data).digest())
        out.append(Block(cid, data))
        return (cid, len(data) + sum(tsize for _, tsize, _ in links), filesize)


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DagLimits:
    """Bounds that a UnixFS file DAG must keep to be read."""

    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE
    """Largest block accepted, raw or dag-pb."""

    max_links: int = DEFAULT_MAX_LINKS
    """Most links in one node."""

    max_depth: int = 64
    """Deepest block below the root (the root is at depth 0)."""

    max_file_size: int = 1 << 40
    """Largest file (the root's declared size); reading never returns more bytes than this."""

    max_queued: int = 1 << 20
    """Most links a walker keeps queued, fetched or not (a walk driven one CID at a time
    queues at most ``max_depth * max_links``; wider windows queue more)."""

    def __post_init__(self) -> None:
        for name in ("max_block_size", "max_links", "max_depth", "max_file_size", "max_queued"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidValue(f"DagLimits.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True, slots=True)
class _Want:
    cid: Cid
    depth: int
    expected: int | None  # file bytes the parent declares below this block; None for the root


class DagWalker:
    """Walks a UnixFS file DAG block by block, without I/O.

    The caller asks :meth:`next_wanted` for CIDs, fetches their blocks from anywhere (a store,
    peers) and hands each to :meth:`receive`, which verifies it against its CID, decodes it,
    checks its sizes against what its parent declared, and queues its children. The walk is
    depth-first in file order, so with a window of one CID at a time the blocks' file bytes
    come out in order (:func:`read_file` does this); with a larger window a block-exchange
    protocol can fetch many blocks at once, e.g. the children of a node as a batch. Memory is
    bounded: at most ``window`` blocks are outstanding, each received node queues at most
    ``max_links`` links, and the queue never exceeds ``limits.max_queued`` links.

    After :meth:`receive` raises, the walk is broken: discard the walker.

    Args:
        root: the file's CID (raw or dag-pb).
        limits: the bounds the DAG must keep.
    """

    __slots__ = ("_blocks", "_file_size", "_limits", "_outstanding", "_stack", "_waiting")

    def __init__(self, root: Cid, *, limits: DagLimits = DagLimits()) -> None:
        if not isinstance(root, Cid):
            raise InvalidValue(f"root must be a Cid, not {type(root).__name__}")
        _check_codec(root)
        self._limits = limits
        self._stack: list[_Want] = [_Want(root, 0, None)]
        self._outstanding: dict[Cid, list[_Want]] = {}
        self._waiting = 0  # occurrences in _outstanding
        self._file_size: int | None = None
        self._blocks = 0

    @property
    def done(self) -> bool:
        """True once every block of the DAG has been received."""
        return not self._stack and not self._outstanding

    @property
    def outstanding(self) -> int:
        """CIDs handed out by :meth:`next_wanted` and not received yet."""
        return len(self._outstanding)

    @property
    def file_size(self) -> int | None:
        """The file's size, known once the root block has been received."""
        return self._file_size

    @property
    def blocks_received(self) -> int:
        """Blocks accepted so far (a block that occurs twice in the DAG counts twice)."""
        return self._blocks

    def next_wanted(self, max_count: int = 1) -> list[Cid]:
        """Hand out CIDs to fetch next, in file order, up to ``max_count`` outstanding.

        ``max_count`` is the window: how many occurrences of blocks may await
        :meth:`receive` at once. A CID the DAG names several times within the window is
        handed out once (its occurrences all count). An empty list means nothing can be asked
        for until an outstanding block is received (or the walk is :attr:`done`).
        """
        if max_count < 1:
            raise InvalidValue(f"max_count must be at least 1, got {max_count}")
        out: list[Cid] = []
        while self._stack and self._waiting < max_count:
            want = self._stack.pop()
            self._waiting += 1
            waiting = self._outstanding.get(want.cid)
            if waiting is None:
                self._outstanding[want.cid] = [want]
                out.append(want.cid)
            else:
                waiting.append(want)
        return out

    def receive(self, cid: Cid, data: bytes, *, verified: bool = False) -> bytes:
        """Accept the block for an outstanding ``cid``.

        Args:
            verified: the caller already checked that ``data`` hashes to ``cid`` (e.g. a
                block exchange that verifies every block on arrival); skip hashing it again.

        Returns:
            The file bytes the block holds itself: all of a raw leaf, the UnixFS ``Data``
            bytes of a dag-pb node (usually empty). When the walk was driven one CID at a
            time, concatenating these in order gives the file.

        Raises:
            LocalProtocolError: ``cid`` was not handed out by :meth:`next_wanted`.
            LimitExceeded: the block, its link count, the depth or the file size is over a
                limit.
            ContentMismatch: the block does not hash to ``cid``, or holds another number of
                file bytes than its parent declares (the message names ``cid``).
            DecodeError: not a UnixFS file node (a directory, a dag-cbor block, inconsistent
                sizes inside the node, malformed bytes).
        """
        wants = self._outstanding.pop(cid, None)
        if wants is None:
            raise LocalProtocolError(f"block {cid} was not asked for")
        self._waiting -= len(wants)
        limits = self._limits
        if len(data) > limits.max_block_size:
            raise LimitExceeded(f"block {cid}", len(data), limits.max_block_size)
        if not verified:
            cid.verify(data)
        children: tuple[PBLink, ...] = ()
        blocksizes: tuple[int, ...] = ()
        if cid.codec is Multicodec.RAW:
            content = data
            size = len(data)
        else:
            content, size, children, blocksizes = _decode_file_node(cid, data, limits)
        for want in wants:
            if want.expected is None:
                if size > limits.max_file_size:
                    raise LimitExceeded("file size", size, limits.max_file_size)
                self._file_size = size
            elif want.expected != size:
                raise ContentMismatch(
                    str(cid),
                    f"block holds {size} file bytes where its parent declares {want.expected}",
                )
            if children:
                depth = want.depth + 1
                if depth > limits.max_depth:
                    raise LimitExceeded("UnixFS DAG depth", depth, limits.max_depth)
                queued = len(self._stack) + len(children)
                if queued > limits.max_queued:
                    raise LimitExceeded("queued UnixFS links", queued, limits.max_queued)
                for link, blocksize in zip(reversed(children), reversed(blocksizes), strict=True):
                    self._stack.append(_Want(link.hash, depth, blocksize))
            self._blocks += 1
        return content


def _check_codec(cid: Cid) -> None:
    if cid.codec not in (Multicodec.RAW, Multicodec.DAG_PB):
        raise DecodeError(f"{cid} is a {cid.codec.name.lower()} block, not part of a UnixFS file")


def _decode_file_node(
    cid: Cid, data: bytes, limits: DagLimits
) -> tuple[bytes, int, tuple[PBLink, ...], tuple[int, ...]]:
    """Decode a dag-pb UnixFS file node: (its own data, file size, links, blocksizes)."""
    node = decode_node(data, max_size=limits.max_block_size, max_links=limits.max_links)
    if node.data is None:
        raise DecodeError(f"{cid}: dag-pb node without UnixFS Data, not a UnixFS file")
    unixfs = decode_unixfs(node.data, max_blocksizes=limits.max_links)
    if unixfs.type not in (UnixFsType.FILE, UnixFsType.RAW):
        raise DecodeError(f"{cid}: a UnixFS {unixfs.type.name} node, not a file")
    if unixfs.type is UnixFsType.RAW and node.links:
        raise DecodeError(f"{cid}: a UnixFS Raw node with links")
    if len(unixfs.blocksizes) != len(node.links):
        raise DecodeError(f"{cid}: {len(node.links)} links but {len(unixfs.blocksizes)} blocksizes")
    for link in node.links:
        _check_codec(link.hash)
    # No importer links an empty subtree (an empty file is a lone empty leaf). Refusing them
    # makes every block occurrence below the root carry at least one file byte, so the work
    # of a walk is bounded by the declared file size: otherwise nodes that each link the
    # same empty node many times would make a few blocks take forever to walk.
    if 0 in unixfs.blocksizes:
        raise DecodeError(f"{cid}: a link to an empty subtree (blocksize 0)")
    content = unixfs.data or b""
    size = len(content) + sum(unixfs.blocksizes)
    if unixfs.filesize is not None and unixfs.filesize != size:
        raise DecodeError(
            f"{cid}: filesize {unixfs.filesize} differs from its data and blocksizes ({size})"
        )
    return content, size, node.links, unixfs.blocksizes


GetBlock: TypeAlias = Callable[[Cid], Awaitable[bytes]]
"""Fetches a block's bytes by CID (e.g. ``Store.get_block``); raises what it likes if absent."""


async def read_file(
    root: Cid, get_block: GetBlock, *, limits: DagLimits = DagLimits()
) -> AsyncIterator[bytes]:
    """Stream a UnixFS file's bytes in order, verifying every block on the way.

    Bytes are yielded block by block as soon as each block is verified, so a consumer may see
    a prefix of the file before a later block fails; treat the file as good only once the
    iteration ends normally. Use ``contextlib.aclosing`` when not consuming to the end.

    Args:
        root: the file's CID.
        get_block: fetches one block; its exceptions propagate unchanged.
        limits: bounds on the DAG.

    Raises:
        ContentMismatch, LimitExceeded, DecodeError: as :meth:`DagWalker.receive` (the
            message names the offending CID).
    """
    walker = DagWalker(root, limits=limits)
    while not walker.done:
        (cid,) = walker.next_wanted(1)
        content = walker.receive(cid, await get_block(cid))
        if content:
            yield content


async def list_blocks(
    root: Cid, get_block: GetBlock, *, limits: DagLimits = DagLimits()
) -> list[Cid]:
    """Every distinct CID of a file's DAG, in the order the walk first meets them.

    Fetches and verifies every block as :func:`read_file` does, so a successful return also
    means the DAG is complete and consistent.

    Raises:
        as :func:`read_file`.
    """
    walker = DagWalker(root, limits=limits)
    seen: dict[Cid, None] = {}
    while not walker.done:
        for cid in walker.next_wanted(64):
            walker.receive(cid, await get_block(cid))
            seen[cid] = None
    return list(seen)


# -- importing into a store -------------------------------------------------------------

ImportSource: TypeAlias = (
    str | os.PathLike[str] | BinaryIO | AsyncIterable[bytes] | bytes | bytearray | memoryview
)
"""What :func:`import_file` reads: a path, a binary file object, an async byte stream, or
bytes already in memory (read without a worker thread, as is an ``io.BytesIO``)."""


async def import_file(
    source: ImportSource,
    store: Store,
    *,
    pin: str | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> ImportResult:
    """Import a file into ``store`` and return its root CID and size.

    Blocks are written with ``store.write`` in batches of about ``batch_bytes``, in order:
    each block in the same batch as, or an earlier batch than, any node linking to it; the
    root last. With ``pin``, each batch also carries ``Pin(pin, <the batch's CIDs>)``, so the
    whole DAG ends up pinned by that owner and no block is ever stored unpinned.

    Reading and hashing the next batch overlap with storing the previous one. For a path or a
    file object they run in a worker thread; an async iterable is consumed on the event loop.
    Memory: about three batches (one being stored, one handed over, one being built).

    Args:
        source: a path, a binary file object opened for reading (read from its current
            position, not closed), an async iterable of byte strings, or bytes.
        store: where the blocks go (``PutBlock(..., verified=True)``: they were just hashed).
        pin: a pin owner name, e.g. ``"doc:<root cid>"``.
        batch_bytes: block bytes per ``store.write`` call.

    Returns:
        The result, with an empty ``blocks`` (every block is in the store).

    Raises:
        InvalidValue: ``source`` is none of the above, or ``batch_bytes`` is not positive.
        OSError: the source could not be opened or read.
        StoreError: from ``store.write`` (the first error, not wrapped in a group).
        On error or cancellation, batches already written stay in the store (with their pin
        when ``pin`` is given; ``Unpin(pin)`` releases them).
    """
    if batch_bytes < 1:
        raise InvalidValue(f"batch_bytes must be positive, got {batch_bytes}")
    if not isinstance(
        source, (str, os.PathLike, AsyncIterable, bytes, bytearray, memoryview)
    ) and not hasattr(source, "read"):
        raise InvalidValue(f"cannot import from a {type(source).__name__}")
    send, receive = trio.open_memory_channel[list[WriteOp]](0)

    async def store_batches() -> None:
        async with receive:
            async for ops in receive:
                await store.write(ops)

    batcher = _Batcher(pin, batch_bytes)

    async def emit(blocks: list[Block] | tuple[Block, ...], *, last: bool = False) -> None:
        ops = batcher.add(blocks, last=last)
        if ops:
            await send.send(ops)

    async def produce() -> ImportResult:
        async with send:
            importer = FileImporter()
            if isinstance(source, (str, os.PathLike)):
                file = await trio.to_thread.run_sync(_open_binary, source)
                try:
                    await _import_from_file(file, importer, batch_bytes, emit)
                finally:
                    await trio.to_thread.run_sync(file.close)
            elif isinstance(source, AsyncIterable):
                async for piece in source:
                    await emit(importer.write(piece))
            elif isinstance(source, (bytes, bytearray, memoryview, io.BytesIO)):
                # Already in memory: no thread (keeps virtual-clock simulations exact).
                view = memoryview(source.getbuffer() if isinstance(source, io.BytesIO) else source)
                start = source.tell() if isinstance(source, io.BytesIO) else 0
                for offset in range(start, len(view), batch_bytes):
                    await emit(importer.write(view[offset : offset + batch_bytes]))
                if isinstance(source, io.BytesIO):
                    source.seek(len(view))
            else:
                await _import_from_file(source, importer, batch_bytes, emit)
            result = importer.finish()
            await emit(result.blocks, last=True)
            return ImportResult(result.root, result.size)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store_batches)
            return await produce()
    except BaseExceptionGroup as group:
        raise _first_error(group) from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended a two-task pipeline: the first one that is not a cancellation."""
    errors = group.subgroup(lambda exc: not isinstance(exc, trio.Cancelled))
    first: BaseException = (errors or group).exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


class _Batcher:
    """Gathers blocks into ``Store.write`` batches of about ``batch_bytes``."""

    __slots__ = ("_batch_bytes", "_blocks", "_pin", "_size")

    def __init__(self, pin: str | None, batch_bytes: int) -> None:
        self._pin = pin
        self._batch_bytes = batch_bytes
        self._blocks: list[Block] = []
        self._size = 0

    def add(self, blocks: list[Block] | tuple[Block, ...], *, last: bool) -> list[WriteOp]:
        """Add blocks; return a full batch's operations, or ``[]`` while it is filling."""
        for block in blocks:
            self._blocks.append(block)
            self._size += len(block.data)
        if not self._blocks or (self._size < self._batch_bytes and not last):
            return []
        batch, self._blocks, self._size = self._blocks, [], 0
        ops: list[WriteOp] = [PutBlock(block.cid, block.data, verified=True) for block in batch]
        if self._pin is not None:
            ops.append(Pin(self._pin, tuple(dict.fromkeys(block.cid for block in batch))))
        return ops


def _open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    return open(path, "rb")  # closed by the caller


async def _import_from_file(
    file: BinaryIO,
    importer: FileImporter,
    hop_bytes: int,
    emit: Callable[[list[Block]], Awaitable[None]],
) -> None:
    """Read and import ``file`` in a worker thread, about ``hop_bytes`` per thread hop.

    Reads are one chunk long, so each ``bytes`` read becomes a leaf without another copy.
    """
    read_size = importer.chunk_size

    def step() -> tuple[list[Block], bool]:
        blocks: list[Block] = []
        read = 0
        while read < hop_bytes:
            data = file.read(read_size)
            if not data:
                return blocks, True
            read += len(data)
            blocks += importer.write(data)
        return blocks, False

    while True:
        blocks, eof = await trio.to_thread.run_sync(step)
        await emit(blocks)
        if eof:
            return
