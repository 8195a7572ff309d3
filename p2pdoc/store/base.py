"""The store interface: blocks, documents and a small typed record area.

Every implementation (:class:`~p2pdoc.store.memory.MemoryStore`,
:class:`~p2pdoc.store.sqlite.SQLiteStore`) passes the shared conformance suite in
``tests/store/``.

Contract:
- **Writes are batches.** :meth:`Store.write` applies a sequence of operations atomically
  (all or nothing) and returns only once they are durable. A batch that fails (a full disk,
  a block that does not match its CID) leaves the store as it was.
- **Blocks are content-addressed.** ``PutBlock`` verifies the bytes against the CID unless the
  caller already did (``verified=True``); a mismatch raises
  :class:`~p2pdoc.errors.ContentMismatch` and writes nothing. Putting a block twice is a no-op.
- **Pins keep blocks.** A pin is a named owner (e.g. ``"doc:<root cid>"``) of a set of CIDs. A
  block is garbage once no pin names it; :meth:`Store.collect_garbage` deletes garbage blocks.
  Pinning a CID whose block is not (yet) present is allowed: the pin protects it on arrival.
- **Records** are small CBOR values under ``(table, key)``; tables are created on first use.
  Keys sort bytewise (UTF-8), so callers encode ordered keys as zero-padded text.
- **Reads never block the event loop** for long; implementations offload or batch disk work.
- Every failure is a :class:`~p2pdoc.errors.StoreError` (or :class:`ContentMismatch`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, TypeAlias

from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import InvalidValue

__all__ = [
    "DeleteRecord",
    "DocumentRecord",
    "Pin",
    "PutBlock",
    "PutDocument",
    "PutRecord",
    "Store",
    "Unpin",
    "WriteOp",
]

_MAX_NAME = 200


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise InvalidValue(f"{what} must be a non-empty str of at most {_MAX_NAME} characters")


@dataclass(frozen=True, slots=True)
class PutBlock:
    """Store ``data`` under ``cid``. ``verified=True`` skips re-hashing bytes already checked."""

    cid: Cid
    data: bytes
    verified: bool = False


@dataclass(frozen=True, slots=True)
class Pin:
    """Make ``owner`` keep every CID in ``cids`` (added to what it already keeps)."""

    owner: str
    cids: tuple[Cid, ...]

    def __post_init__(self) -> None:
        _check_name("pin owner", self.owner)


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
        manifest: the canonical-CBOR manifest bytes (they hash to ``root``).
        signatures: the encoded signature set travelling with the document.
        created_at: when this node first stored it (milliseconds since the Unix epoch).
    """

    root: Cid
    document_id: str
    sender: str
    manifest: bytes
    signatures: bytes
    created_at: int


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


class Store(abc.ABC):
    """Persistent state of one node. Use as an async context manager or call :meth:`aclose`."""

    # -- writes -------------------------------------------------------------------------

    @abc.abstractmethod
    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically, in order; durable when this returns.

        Raises:
            ContentMismatch: a ``PutBlock`` whose data does not hash to its CID.
            StorageFull: no space; nothing was written.
            StoreError: any other failure; nothing was written.
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
        """The CIDs ``owner`` keeps (empty for an unknown owner)."""

    @abc.abstractmethod
    async def collect_garbage(self) -> int:
        """Delete every block no pin keeps. Returns the number of blocks deleted."""

    # -- documents ----------------------------------------------------------------------

    @abc.abstractmethod
    async def get_document(self, root: Cid) -> DocumentRecord:
        """Raises NotFound."""

    @abc.abstractmethod
    async def find_documents(self, document_id: str) -> list[DocumentRecord]:
        """Every stored version of a document id, oldest first."""

    @abc.abstractmethod
    async def list_documents(self, *, limit: int = 100, after: Cid | None = None) -> list[DocumentRecord]:
        """Documents ordered by root CID bytes, ``limit`` at a time after ``after``."""

    # -- records ------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_record(self, table: str, key: str) -> Value:
        """Raises NotFound."""

    @abc.abstractmethod
    async def list_records(
        self, table: str, *, prefix: str = "", after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, Value]]:
        """Records of ``table`` whose key starts with ``prefix``, in key order, after ``after``."""

    # -- lifecycle ----------------------------------------------------------------------

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release resources. Idempotent. Later calls raise StoreError."""

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
