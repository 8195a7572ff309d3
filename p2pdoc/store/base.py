"""The store interface: blocks, documents and a small typed record area.

Every implementation (:class:`~p2pdoc.store.memory.MemoryStore`,
:class:`~p2pdoc.store.sqlite.SQLiteStore`) passes the shared conformance suite in
``tests/store/``.

Contract:
- **Writes are batches.** :meth:`Store.write` applies a sequence of operations atomically
  (all or nothing), in order, and returns only once they are durable. A batch that fails (a
  full disk, a block that does not match its CID) leaves the store as it was. A cancelled
  ``write`` may or may not have been applied, but never in part.
- **Blocks are content-addressed.** ``PutBlock`` verifies the bytes against the CID unless the
  caller already did (``verified=True``); a mismatch raises
  :class:`~p2pdoc.errors.ContentMismatch` and writes nothing. Putting a block twice is a no-op.
- **Pins keep blocks.** A pin is a named owner (e.g. ``"doc:<root cid>"``) of a set of CIDs. A
  block is garbage once no pin names it; :meth:`Store.collect_garbage` deletes garbage blocks.
  Pinning a CID whose block is not (yet) present is allowed: the pin protects it on arrival.
  A block put without a pin may be collected by the next garbage collection, so pin first
  (or in the same batch) whatever must be kept.
- **Documents** are stored whole (manifest bytes and signature set) under their root CID; the
  manifest must hash to the root (checked like a block, :class:`ContentMismatch` otherwise).
- **Records** are small CBOR values under ``(table, key)``; tables are created on first use.
  Keys sort bytewise (UTF-8), so callers encode ordered keys as zero-padded text. A value must
  be in the canonical CBOR data model and encode to at most :data:`MAX_RECORD_SIZE` bytes;
  reads return a fresh decoded copy (tuples come back as lists).
- **Nothing blocks the event loop for long.** Implementations may do work that is small by
  construction on the loop's thread (a primary-key lookup of a small row, a short range, the
  statements of a small batch) and offload the rest (fsyncs, large rows, long ranges). Every
  read and write is a trio checkpoint. A read that starts after a ``write`` returned sees
  that write. Batches apply in the order their ``write`` calls queue them, after their checks
  (one task's writes in call order).
- Every failure is a :class:`~p2pdoc.errors.StoreError` (or :class:`ContentMismatch`), except
  malformed arguments (a programming error), which raise
  :class:`~p2pdoc.errors.InvalidValue` before anything is written or read: a negative
  ``limit``, or a table, key, prefix, owner or document id given to a read that is not a
  ``str`` encodable as UTF-8 (no stored name can be such a string).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self, TypeAlias

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import ContentMismatch, InvalidValue

__all__ = [
    "MAX_RECORD_SIZE",
    "DeleteRecord",
    "DocumentRecord",
    "Pin",
    "PutBlock",
    "PutDocument",
    "PutRecord",
    "Store",
    "Unpin",
    "WriteOp",
    "check_batch",
    "check_limit",
    "check_text",
    "pins_for",
    "unverified_size",
    "verify_blocks",
]

_MAX_NAME: Final = 200
_MAX_INT64: Final = (1 << 63) - 1

MAX_RECORD_SIZE: Final = cbor.DEFAULT_MAX_SIZE
"""Largest canonical CBOR encoding of one record value, in bytes (what a read can decode)."""


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise InvalidValue(f"{what} must be a non-empty str of at most {_MAX_NAME} characters")
    check_text(what, name)


def _check_bytes(what: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise InvalidValue(f"{what} must be bytes, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class PutBlock:
    """Store ``data`` under ``cid``. ``verified=True`` skips re-hashing bytes already checked."""

    cid: Cid
    data: bytes
    verified: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cid, Cid):
            raise InvalidValue(f"block CID must be a Cid, not {type(self.cid).__name__}")
        _check_bytes("block data", self.data)

    def __repr__(self) -> str:
        flag = ", verified=True" if self.verified else ""
        return f"PutBlock({self.cid!r}, <{len(self.data)} bytes>{flag})"


@dataclass(frozen=True, slots=True)
class Pin:
    """Make ``owner`` keep every CID in ``cids`` (added to what it already keeps)."""

    owner: str
    cids: tuple[Cid, ...]

    def __post_init__(self) -> None:
        _check_name("pin owner", self.owner)
        cids = tuple(self.cids)
        if not all(isinstance(cid, Cid) for cid in cids):
            raise InvalidValue("pinned CIDs must be Cid values")
        object.__setattr__(self, "cids", cids)


@dataclass(frozen=True, slots=True)
class Unpin:
    """Drop every CID ``owner`` keeps. Unpinning an unknown owner is a no-op."""

    owner: str

    def __post_init__(self) -> None:
        _check_name("pin owner", self.owner)


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A document version known to this node.

    Attributes:
        root: the manifest's dag-cbor CID; identifies the version.
        document_id: the edXML document id text.
        sender: the sending agency code text.
        manifest: the canonical-CBOR manifest bytes (they hash to ``root``; the store checks).
        signatures: the encoded signature set travelling with the document.
        created_at: when this node first stored it (milliseconds since the Unix epoch,
            0 .. 2**63 - 1).
    """

    root: Cid
    document_id: str
    sender: str
    manifest: bytes
    signatures: bytes
    created_at: int

    def __post_init__(self) -> None:
        if not isinstance(self.root, Cid):
            raise InvalidValue(f"document root must be a Cid, not {type(self.root).__name__}")
        _check_name("document id", self.document_id)
        _check_name("sender", self.sender)
        _check_bytes("manifest", self.manifest)
        _check_bytes("signatures", self.signatures)
        created = self.created_at
        if not isinstance(created, int) or isinstance(created, bool):
            raise InvalidValue(f"created_at must be int, not {type(created).__name__}")
        if not 0 <= created <= _MAX_INT64:
            raise InvalidValue(f"created_at {created} outside 0 .. 2**63 - 1")


@dataclass(frozen=True, slots=True)
class PutDocument:
    """Store a document record (replacing one with the same root)."""

    record: DocumentRecord


@dataclass(frozen=True, slots=True)
class PutRecord:
    """Set ``table[key] = value``; ``value`` must be in the canonical CBOR data model."""

    table: str
    key: str
    value: Value = field(hash=False)

    def __post_init__(self) -> None:
        _check_name("table", self.table)
        _check_name("record key", self.key)


@dataclass(frozen=True, slots=True)
class DeleteRecord:
    """Remove ``table[key]``; removing a missing record is a no-op."""

    table: str
    key: str

    def __post_init__(self) -> None:
        _check_name("table", self.table)
        _check_name("record key", self.key)


WriteOp: TypeAlias = PutBlock | Pin | Unpin | PutDocument | PutRecord | DeleteRecord

_OP_TYPES: Final = (PutBlock, Pin, Unpin, PutDocument, PutRecord, DeleteRecord)


# -- helpers every implementation uses to enforce the contract -----------------------------


def check_batch(ops: Sequence[WriteOp]) -> list[bytes | None]:
    """Check a batch against the contract, except block hashes (see :func:`verify_blocks`).

    Cheap enough for the event loop: manifests are hashed, record values encoded.

    Returns:
        For each op, the canonical CBOR encoding of its value if it is a :class:`PutRecord`,
        else None.

    Raises:
        InvalidValue: an op of an unknown type, or a record value outside the canonical CBOR
            data model or larger than :data:`MAX_RECORD_SIZE` once encoded.
        ContentMismatch: a document whose manifest does not hash to its root.
    """
    encoded: list[bytes | None] = []
    for op in ops:
        if not isinstance(op, _OP_TYPES):
            raise InvalidValue(f"{type(op).__name__} is not a store write operation")
        if isinstance(op, PutRecord):
            value = cbor.encode(op.value)
            if len(value) > MAX_RECORD_SIZE:
                raise InvalidValue(
                    f"record {op.table}/{op.key[:40]}: value of {len(value)} bytes exceeds "
                    f"the limit of {MAX_RECORD_SIZE}"
                )
            encoded.append(value)
            continue
        if isinstance(op, PutDocument):
            if not isinstance(op.record, DocumentRecord):
                raise InvalidValue("PutDocument needs a DocumentRecord")
            root = op.record.root
            if hashlib.sha256(op.record.manifest).digest() != root.digest:
                raise ContentMismatch(str(root), "document manifest does not hash to its root")
        encoded.append(None)
    return encoded


def unverified_size(ops: Sequence[WriteOp]) -> int:
    """Bytes of block data in ``ops`` that :func:`verify_blocks` would hash."""
    return sum(len(op.data) for op in ops if isinstance(op, PutBlock) and not op.verified)


def verify_blocks(ops: Sequence[WriteOp]) -> None:
    """Hash every ``PutBlock`` not marked ``verified`` against its CID.

    Safe to call from a worker thread (``hashlib`` releases the GIL on large inputs).

    Raises:
        ContentMismatch: naming the first block whose data does not match its CID.
    """
    for op in ops:
        if isinstance(op, PutBlock) and not op.verified:
            op.cid.verify(op.data)


class Store(abc.ABC):
    """Persistent state of one node. Use as an async context manager or call :meth:`aclose`."""

    # -- writes -------------------------------------------------------------------------

    @abc.abstractmethod
    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically, in order; durable when this returns.

        An empty batch is a no-op.

        Raises:
            ContentMismatch: a ``PutBlock`` whose data does not hash to its CID, or a
                ``PutDocument`` whose manifest does not hash to its root; nothing was written.
            InvalidValue: a malformed op (see :func:`check_batch`); nothing was written.
            StorageFull: no space; nothing was written.
            StoreError: any other failure (also: the store is closed); nothing was written.
        On cancellation the batch is either wholly applied or not at all.
        """

    async def put_block(self, cid: Cid, data: bytes) -> None:
        """Shorthand for ``write([PutBlock(cid, data)])``."""
        await self.write([PutBlock(cid, data)])

    # -- block reads --------------------------------------------------------------------

    @abc.abstractmethod
    async def get_block(self, cid: Cid) -> bytes:
        """The block's bytes.

        Raises:
            NotFound: no such block.
        """

    @abc.abstractmethod
    async def has_blocks(self, cids: Sequence[Cid]) -> list[bool]:
        """For each CID, whether its block is present."""

    async def has_block(self, cid: Cid) -> bool:
        return (await self.has_blocks([cid]))[0]

    @abc.abstractmethod
    async def block_count(self) -> tuple[int, int]:
        """``(number of blocks, total bytes)`` currently stored."""

    @abc.abstractmethod
    async def pinned(self, owner: str) -> set[Cid]:
        """The CIDs ``owner`` keeps (empty for an unknown owner).

        Raises:
            InvalidValue: ``owner`` is not text encodable as UTF-8 (see :func:`check_text`).
        """

    @abc.abstractmethod
    async def collect_garbage(self) -> int:
        """Delete every block no pin keeps. Returns the number of blocks deleted.

        Safe to run concurrently with writes: a block pinned before or during the collection
        is never deleted. On cancellation some garbage may already be deleted (never a
        pinned block).
        """

    # -- documents ----------------------------------------------------------------------

    @abc.abstractmethod
    async def get_document(self, root: Cid) -> DocumentRecord:
        """Raises NotFound."""

    @abc.abstractmethod
    async def find_documents(self, document_id: str) -> list[DocumentRecord]:
        """Every stored version of a document id, oldest first (``created_at``, then root).

        Raises:
            InvalidValue: ``document_id`` is not text encodable as UTF-8.
        """

    @abc.abstractmethod
    async def list_documents(
        self, *, limit: int = 100, after: Cid | None = None
    ) -> list[DocumentRecord]:
        """Documents ordered by root CID bytes, ``limit`` at a time after ``after``.

        Raises:
            InvalidValue: ``limit`` is negative.
        """

    # -- records ------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_record(self, table: str, key: str) -> Value:
        """The value of ``table[key]``, freshly decoded.

        Raises:
            NotFound: no such record.
            InvalidValue: ``table`` or ``key`` is not text encodable as UTF-8.
        """

    @abc.abstractmethod
    async def list_records(
        self, table: str, *, prefix: str = "", after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, Value]]:
        """Records of ``table`` whose key starts with ``prefix``, in key order, after ``after``.

        Raises:
            InvalidValue: ``limit`` is negative, or ``table``, ``prefix`` or ``after`` is not
                text encodable as UTF-8.
        """

    # -- lifecycle ----------------------------------------------------------------------

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Finish in-flight writes, then release resources. Idempotent.

        Later calls of any other method raise StoreError.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def pins_for(owner: str, cids: Iterable[Cid]) -> Pin:
    """A :class:`Pin` of ``cids`` under ``owner`` (deduplicated, order kept)."""
    return Pin(owner, tuple(dict.fromkeys(cids)))


def check_text(what: str, text: object) -> None:
    """Raise InvalidValue unless ``text`` is a str encodable as UTF-8 (for read arguments).

    Only what no stored name can be is refused: a well-formed name that is merely too long
    to have been written reads as absent.
    """
    if not isinstance(text, str):
        raise InvalidValue(f"{what} must be a str, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{what} {text[:40]!r} is not encodable as UTF-8") from None


def check_limit(limit: int) -> None:
    """Raise InvalidValue unless ``limit`` is an int >= 0 (for the listing methods)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidValue(f"limit must be an int >= 0, not {limit!r}")
