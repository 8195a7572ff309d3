"""Documents as blocks: build a document version from files, verify one from its blocks.

A document version is its manifest block (dag-cbor; see :mod:`p2pdoc.model.manifest`) plus
the UnixFS DAG of each file it lists. :func:`build_document` imports the files into a store and
builds the manifest; :func:`verify_document` checks a document held as blocks (received,
restored from a backup, exported to a directory) from its root CID alone: the manifest hashes
to the root and is well formed, every block of every file hashes to its CID, and every file's
DAG holds exactly the number of bytes the manifest declares.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.unixfs import DagLimits, DagWalker, GetBlock, ImportSource, import_file
from p2pdoc.errors import ContentMismatch, InvalidValue
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.manifest import FileEntry, Manifest
from p2pdoc.store.base import Pin, PutBlock, Store

__all__ = [
    "READ_SIZE",
    "BuiltDocument",
    "FileSource",
    "NamedFile",
    "VerifiedDocument",
    "build_document",
    "check_files",
    "read_source",
    "verify_document",
]


@dataclass(frozen=True, slots=True)
class FileSource:
    """A file to attach: its name, media type and bytes (bytes, a path, a binary file object
    or an async iterable of bytes)."""

    name: str
    media_type: str
    source: ImportSource


READ_SIZE: Final = 1 << 20
"""Bytes read at a time by :func:`read_source`."""


async def read_source(source: ImportSource) -> AsyncIterator[bytes | memoryview]:
    """The bytes of ``source`` as chunks of at most about :data:`READ_SIZE` (an async
    iterable's own chunks pass through). Files are read in a worker thread; bytes already in
    memory are sliced without copying.

    Raises:
        InvalidValue: ``source`` is none of the accepted kinds.
        OSError: the file could not be opened or read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), READ_SIZE):
            yield view[start : start + READ_SIZE]
    elif isinstance(source, io.BytesIO):
        view = source.getbuffer()[source.tell() :]
        source.seek(0, io.SEEK_END)
        for start in range(0, len(view), READ_SIZE):
            yield view[start : start + READ_SIZE]
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield chunk
    elif isinstance(source, (str, os.PathLike)):
        file = await trio.to_thread.run_sync(open, source, "rb")
        try:
            while chunk := await trio.to_thread.run_sync(file.read, READ_SIZE):
                yield chunk
        finally:
            await trio.to_thread.run_sync(file.close)
    elif hasattr(source, "read"):
        while chunk := await trio.to_thread.run_sync(source.read, READ_SIZE):
            yield chunk
    else:
        raise InvalidValue(f"cannot read a {type(source).__name__}")


class NamedFile(Protocol):
    """A file to attach: its name, media type and bytes."""

    @property
    def name(self) -> str: ...

    @property
    def media_type(self) -> str: ...

    @property
    def source(self) -> ImportSource: ...


@dataclass(frozen=True, slots=True)
class BuiltDocument:
    """A document version whose blocks are in the store, pinned by the owner given."""

    manifest: Manifest
    manifest_bytes: bytes
    root: Cid


_NO_CONTENT = Cid.of(Multicodec.RAW, b"")


def check_files(envelope: Envelope, files: Sequence[NamedFile]) -> None:
    """Check what a manifest of ``envelope`` and ``files`` requires of the files before any of
    them is read: names, media types, no name twice, and their count.

    Raises:
        InvalidValue: as :class:`~p2pdoc.model.manifest.Manifest` would for these entries.
    """
    Manifest(
        envelope=envelope,
        files=tuple(
            FileEntry(name=f.name, media_type=f.media_type, size=0, cid=_NO_CONTENT) for f in files
        ),
    )


async def build_document(
    envelope: Envelope, files: Sequence[NamedFile], store: Store, *, pin: str
) -> BuiltDocument:
    """Import ``files`` into ``store`` and store the manifest block, all pinned by ``pin``.

    The document is then one DAG under its root: the manifest block links every file.

    Raises:
        InvalidValue: a file name or media type is invalid, or two files share a name
            (checked before anything is stored).
        StoreError: the store failed; blocks already written stay pinned by ``pin``.
    """
    check_files(envelope, files)
    entries = []
    for file in files:
        result = await import_file(file.source, store, pin=pin)
        entries.append(
            FileEntry(name=file.name, media_type=file.media_type, size=result.size, cid=result.root)
        )
    manifest = Manifest(envelope=envelope, files=tuple(entries))
    data = manifest.encode()
    root = Cid.of(Multicodec.DAG_CBOR, data)
    await store.write([PutBlock(root, data, verified=True), Pin(pin, (root,))])
    return BuiltDocument(manifest, data, root)


@dataclass(frozen=True, slots=True)
class VerifiedDocument:
    """A document whose every block was checked: its manifest and the CIDs of all blocks."""

    manifest: Manifest
    blocks: tuple[Cid, ...]


async def verify_document(
    root: Cid, get_block: GetBlock, *, limits: DagLimits = DagLimits()
) -> VerifiedDocument:
    """Verify a document version held as blocks, from its root CID.

    Args:
        root: the manifest's CID.
        get_block: fetches a block by CID (the manifest block included); its errors, such as
            :class:`~p2pdoc.errors.NotFound` for a missing block, propagate.

    Raises:
        ContentMismatch: a block does not hash to its CID, or a file holds another number of
            bytes than the manifest says (the message names the CID).
        DecodeError: the manifest or a file node is malformed.
        LimitExceeded: a file DAG is over ``limits``.
    """
    manifest = Manifest.decode(await get_block(root), expected=root)
    seen: dict[Cid, None] = {root: None}
    for entry in manifest.files:
        walker = DagWalker(entry.cid, limits=limits)
        while not walker.done:
            for cid in walker.next_wanted(64):
                walker.receive(cid, await get_block(cid))
                seen[cid] = None
        if walker.file_size != entry.size:
            raise ContentMismatch(
                str(entry.cid),
                f"file {entry.name!r} holds {walker.file_size} bytes; the manifest says "
                f"{entry.size}",
            )
    return VerifiedDocument(manifest, tuple(seen))
