"""dag-pb nodes and the UnixFS ``Data`` message: pure, bounded protobuf codecs.

Goals: encode the two protobuf messages that a UnixFS file DAG is made of byte for byte as the
IPFS importers do, and decode them with explicit size and count limits, rejecting every byte
string that is not the one canonical encoding of a node (so that one node has one CID).
Non-goals: general protobuf, directories and HAMT shards (the types are named, never built),
CIDv0 links (p2pdoc's :class:`~p2pdoc.codecs.cid.Cid` is CIDv1 over sha2-256 only).

dag-pb (IPLD dag-pb specification)::

    message PBLink {
      optional bytes  Hash  = 1;   // binary CID of the target, required by the spec
      optional string Name  = 2;   // UTF-8; UnixFS files use "" (encoded, empty)
      optional uint64 Tsize = 3;   // cumulative bytes of the target's DAG
    }
    message PBNode {
      repeated PBLink Links = 2;   // encoded FIRST, in order
      optional bytes  Data  = 1;   // encoded LAST
    }

Decoding of a node is strict, as the dag-pb spec asks: only fields 1 and 2, both with wire
type 2; every ``Links`` entry before ``Data``; ``Data`` at most once; inside a link, ``Hash``
(wire type 2), ``Name`` (wire type 2), ``Tsize`` (wire type 0) in that order, each at most
once, ``Hash`` present. Varints must be minimal and at most 9 bytes (values below 2**63).
Because of these rules ``encode_node(decode_node(b)) == b`` for every accepted ``b``.

UnixFS ``Data`` (the bytes in ``PBNode.Data``)::

    message Data {
      required DataType Type = 1;        // Raw=0 Directory=1 File=2 Metadata=3 Symlink=4
                                         // HAMTShard=5
      optional bytes  Data       = 2;    // file bytes held by the node itself
      optional uint64 filesize   = 3;    // bytes of file below (and in) this node
      repeated uint64 blocksizes = 4;    // file bytes below each link, in link order
      optional uint64 hashType   = 5;    // HAMT shards only
      optional uint64 fanout     = 6;    // HAMT shards only
      optional uint32 mode       = 7;    // POSIX permission bits
      optional UnixTime mtime    = 8;    // kept as its encoded bytes, not interpreted
    }

It is ordinary protobuf, so decoding accepts fields in any order, packed or unpacked
``blocksizes``, and skips unknown fields; it rejects a repeated singular field, a missing or
unknown ``Type``, truncation, group wire types, and more ``blocksizes`` than the link limit.
Encoding writes fields in ascending order with unpacked ``blocksizes``, as the importers do.

Every failure is a :class:`~p2pdoc.errors.DecodeError` (:class:`~p2pdoc.errors.LimitExceeded`
for a limit); a declared length is checked against the bytes actually present before anything
is sliced, so a length prefix of 4 GB allocates nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from p2pdoc.codecs.cid import Cid
from p2pdoc.codecs.multiformats import varint_decode, varint_encode
from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded

__all__ = [
    "DEFAULT_MAX_BLOCK_SIZE",
    "DEFAULT_MAX_LINKS",
    "PBLink",
    "PBNode",
    "UnixFsData",
    "UnixFsType",
    "decode_node",
    "decode_unixfs",
    "encode_node",
    "encode_unixfs",
]

DEFAULT_MAX_BLOCK_SIZE: Final = 2 * 1024 * 1024
"""Largest block decoded by default (2 MiB, the block size limit of IPFS block exchange)."""

DEFAULT_MAX_LINKS: Final = 2048
"""Most links per node decoded by default (IPFS importers use 174, or 1024 in newer profiles)."""

_MAX_UINT63: Final = (1 << 63) - 1
_MAX_UINT32: Final = (1 << 32) - 1

# Field keys: (field number << 3) | wire type.
_KEY_NODE_DATA: Final = 0x0A  # PBNode.Data, field 1, length-delimited
_KEY_NODE_LINK: Final = 0x12  # PBNode.Links, field 2, length-delimited
_KEY_LINK_HASH: Final = 0x0A  # PBLink.Hash, field 1, length-delimited
_KEY_LINK_NAME: Final = 0x12  # PBLink.Name, field 2, length-delimited
_KEY_LINK_TSIZE: Final = 0x18  # PBLink.Tsize, field 3, varint

_WIRE_VARINT: Final = 0
_WIRE_FIXED64: Final = 1
_WIRE_LEN: Final = 2
_WIRE_FIXED32: Final = 5


def _check_uint(what: str, value: int | None, limit: int = _MAX_UINT63) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit
    ):
        raise InvalidValue(f"{what} must be an int in [0, {limit}], got {value!r}")


@dataclass(frozen=True, slots=True)
class PBLink:
    """A dag-pb link.

    Attributes:
        hash: the target's CID.
        name: the link name; ``None`` omits the field, ``""`` encodes an empty name (as UnixFS
            file nodes do).
        tsize: cumulative size in bytes of the target's whole DAG (its block and everything
            below); ``None`` omits the field.
    """

    hash: Cid
    name: str | None = None
    tsize: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.hash, Cid):
            raise InvalidValue(f"link hash must be a Cid, not {type(self.hash).__name__}")
        if self.name is not None and not isinstance(self.name, str):
            raise InvalidValue(f"link name must be str or None, not {type(self.name).__name__}")
        _check_uint("link Tsize", self.tsize)


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: links (in order) and optional opaque data (``None`` = field absent)."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None

    def __post_init__(self) -> None:
        links: object = self.links
        if not isinstance(links, tuple):
            raise InvalidValue(f"node links must be a tuple, not {type(links).__name__}")
        for link in links:
            if not isinstance(link, PBLink):
                raise InvalidValue(f"node links must be PBLink, not {type(link).__name__}")
        if self.data is not None and not isinstance(self.data, bytes):
            raise InvalidValue(f"node data must be bytes or None, not {type(self.data).__name__}")


class UnixFsType(enum.IntEnum):
    """``Data.Type`` values of the UnixFS specification."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixFsData:
    """The UnixFS ``Data`` message (see the module docstring for the field meanings).

    ``None`` (or an empty ``blocksizes``) means the field is absent. ``mtime`` is the encoded
    ``UnixTime`` message, carried through unchanged.
    """

    type: UnixFsType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", UnixFsType(self.type))
        blocksizes: object = self.blocksizes
        if not isinstance(blocksizes, tuple):
            raise InvalidValue(f"blocksizes must be a tuple, not {type(blocksizes).__name__}")
        for size in blocksizes:
            _check_uint("blocksize", size)
        _check_uint("filesize", self.filesize)
        _check_uint("hashType", self.hash_type)
        _check_uint("fanout", self.fanout)
        _check_uint("mode", self.mode, _MAX_UINT32)
        for name in ("data", "mtime"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bytes):
                raise InvalidValue(f"{name} must be bytes or None")


# -- encoding ---------------------------------------------------------------------------


def _encode_link(link: PBLink) -> bytes:
    cid = link.hash.to_bytes()
    parts = [bytes((_KEY_LINK_HASH,)), varint_encode(len(cid)), cid]
    if link.name is not None:
        name = link.name.encode("utf-8")
        parts += [bytes((_KEY_LINK_NAME,)), varint_encode(len(name)), name]
    if link.tsize is not None:
        parts += [bytes((_KEY_LINK_TSIZE,)), varint_encode(link.tsize)]
    return b"".join(parts)


def encode_node(node: PBNode) -> bytes:
    """The canonical dag-pb encoding of ``node``: every link in order, then ``Data``."""
    parts: list[bytes] = []
    for link in node.links:
        encoded = _encode_link(link)
        parts += [bytes((_KEY_NODE_LINK,)), varint_encode(len(encoded)), encoded]
    if node.data is not None:
        parts += [bytes((_KEY_NODE_DATA,)), varint_encode(len(node.data)), node.data]
    return b"".join(parts)


def encode_unixfs(message: UnixFsData) -> bytes:
    """Encode a UnixFS ``Data`` message, fields in ascending order, ``blocksizes`` unpacked."""
    parts = [b"\x08", varint_encode(int(message.type))]
    if message.data is not None:
        parts += [b"\x12", varint_encode(len(message.data)), message.data]
    if message.filesize is not None:
        parts += [b"\x18", varint_encode(message.filesize)]
    for size in message.blocksizes:
        parts += [b"\x20", varint_encode(size)]
    if message.hash_type is not None:
        parts += [b"\x28", varint_encode(message.hash_type)]
    if message.fanout is not None:
        parts += [b"\x30", varint_encode(message.fanout)]
    if message.mode is not None:
        parts += [b"\x38", varint_encode(message.mode)]
    if message.mtime is not None:
        parts += [b"\x42", varint_encode(len(message.mtime)), message.mtime]
    return b"".join(parts)


# -- decoding ---------------------------------------------------------------------------


def _as_bytes(data: object, what: str, max_size: int) -> bytes:
    """``data`` as bytes, its size checked against ``max_size`` before any copy."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what} must be bytes-like, not {type(data).__name__}")
    if len(data) > max_size:
        raise LimitExceeded(what, len(data), max_size)
    return data if isinstance(data, bytes) else bytes(data)


def _length(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Read a length prefix at ``pos`` and check it fits before ``end``.

    Returns ``(start, stop)`` of the field's bytes.
    """
    length, pos = varint_decode(buf, pos)
    if pos > end or length > end - pos:
        raise DecodeError(f"{what}: declared length {length} runs past the end of its message")
    return pos, pos + length


def _decode_link(buf: bytes, pos: int, end: int) -> PBLink:
    hash_: Cid | None = None
    name: str | None = None
    tsize: int | None = None
    last_field = 0
    while pos < end:
        key, pos = varint_decode(buf, pos)
        if pos > end:
            raise DecodeError("PBLink: field key runs past the end of the link")
        field, wire = key >> 3, key & 7
        if field not in (1, 2, 3):
            raise DecodeError(f"PBLink: unknown field {field}; only Hash, Name, Tsize")
        if field <= last_field:
            raise DecodeError(
                f"PBLink: field {field} after field {last_field}; "
                "Hash, Name and Tsize must appear once each, in that order"
            )
        last_field = field
        if field == 3:
            if wire != _WIRE_VARINT:
                raise DecodeError(f"PBLink Tsize: wire type {wire}, expected 0 (varint)")
            tsize, pos = varint_decode(buf, pos)
            if pos > end:
                raise DecodeError("PBLink Tsize runs past the end of the link")
            continue
        if wire != _WIRE_LEN:
            raise DecodeError(f"PBLink field {field}: wire type {wire}, expected 2")
        start, pos = _length(buf, pos, end, f"PBLink field {field}")
        if field == 1:
            hash_ = Cid.from_bytes(buf[start:pos])
        else:
            try:
                name = buf[start:pos].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"PBLink Name is not valid UTF-8: {exc}") from exc
    if hash_ is None:
        raise DecodeError("PBLink without Hash")
    return PBLink(hash_, name, tsize)


def decode_node(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_BLOCK_SIZE,
    max_links: int = DEFAULT_MAX_LINKS,
) -> PBNode:
    """Decode a canonical dag-pb block.

    Args:
        data: the block's bytes.
        max_size: largest block accepted, checked before anything else.
        max_links: most links accepted.

    Returns:
        The node; ``encode_node`` of it gives back ``data`` exactly.

    Raises:
        LimitExceeded: the block or its link count is over a limit.
        DecodeError: anything else wrong (see the module docstring for the rules).
    """
    buf = _as_bytes(data, "dag-pb block", max_size)
    end = len(buf)
    pos = 0
    links: list[PBLink] = []
    node_data: bytes | None = None
    while pos < end:
        key, pos = varint_decode(buf, pos)
        field, wire = key >> 3, key & 7
        if field not in (1, 2):
            raise DecodeError(f"PBNode: unknown field {field}; only Links (2) and Data (1)")
        if wire != _WIRE_LEN:
            raise DecodeError(f"PBNode field {field}: wire type {wire}, expected 2")
        if node_data is not None:
            what = "a second Data" if field == 1 else "Links after Data"
            raise DecodeError(f"PBNode: {what}; Links must come first and Data at most once")
        start, pos = _length(buf, pos, end, f"PBNode field {field}")
        if field == 1:
            node_data = buf[start:pos]
        else:
            if len(links) >= max_links:
                raise LimitExceeded("dag-pb links", len(links) + 1, max_links)
            links.append(_decode_link(buf, start, pos))
    return PBNode(tuple(links), node_data)


def _skip(buf: bytes, pos: int, end: int, field: int, wire: int) -> int:
    if wire == _WIRE_VARINT:
        _, pos = varint_decode(buf, pos)
    elif wire == _WIRE_LEN:
        _, pos = _length(buf, pos, end, f"UnixFS field {field}")
    elif wire == _WIRE_FIXED64:
        pos += 8
    elif wire == _WIRE_FIXED32:
        pos += 4
    else:
        raise DecodeError(f"UnixFS field {field}: unsupported wire type {wire}")
    if pos > end:
        raise DecodeError(f"UnixFS field {field} runs past the end of the message")
    return pos


def decode_unixfs(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_BLOCK_SIZE,
    max_blocksizes: int = DEFAULT_MAX_LINKS,
) -> UnixFsData:
    """Decode a UnixFS ``Data`` message.

    Args:
        data: the message bytes (a dag-pb node's ``Data`` field).
        max_size: largest message accepted.
        max_blocksizes: most ``blocksizes`` entries accepted.

    Raises:
        LimitExceeded: over ``max_size`` or ``max_blocksizes``.
        DecodeError: truncated, repeated singular field, missing or unknown ``Type``, a value
            out of range, or a group wire type.
    """
    buf = _as_bytes(data, "UnixFS Data message", max_size)
    end = len(buf)
    pos = 0
    seen: set[int] = set()
    ints: dict[int, int] = {}
    blobs: dict[int, bytes] = {}
    blocksizes: list[int] = []
    while pos < end:
        key, pos = varint_decode(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise DecodeError("UnixFS: field number 0")
        if field == 4:
            if wire == _WIRE_VARINT:
                size, pos = varint_decode(buf, pos)
                blocksizes.append(size)
            elif wire == _WIRE_LEN:  # packed
                start, pos = _length(buf, pos, end, "UnixFS blocksizes")
                while start < pos:
                    size, start = varint_decode(buf, start)
                    blocksizes.append(size)
                if start > pos:
                    raise DecodeError("UnixFS packed blocksizes: varint runs past the field")
            else:
                raise DecodeError(f"UnixFS blocksizes: wire type {wire}")
            if len(blocksizes) > max_blocksizes:
                raise LimitExceeded("UnixFS blocksizes", len(blocksizes), max_blocksizes)
            if pos > end:
                raise DecodeError("UnixFS blocksizes run past the end of the message")
            continue
        if field > 8:
            pos = _skip(buf, pos, end, field, wire)
            continue
        if field in seen:
            raise DecodeError(f"UnixFS: field {field} appears twice")
        seen.add(field)
        if field in (2, 8):
            if wire != _WIRE_LEN:
                raise DecodeError(f"UnixFS field {field}: wire type {wire}, expected 2")
            start, pos = _length(buf, pos, end, f"UnixFS field {field}")
            blobs[field] = buf[start:pos]
        else:
            if wire != _WIRE_VARINT:
                raise DecodeError(f"UnixFS field {field}: wire type {wire}, expected 0")
            ints[field], pos = varint_decode(buf, pos)
            if pos > end:
                raise DecodeError(f"UnixFS field {field} runs past the end of the message")
    raw_type = ints.get(1)
    if raw_type is None:
        raise DecodeError("UnixFS Data without Type")
    try:
        type_ = UnixFsType(raw_type)
    except ValueError:
        raise DecodeError(f"unknown UnixFS Type {raw_type}") from None
    mode = ints.get(7)
    if mode is not None and mode > _MAX_UINT32:
        raise DecodeError(f"UnixFS mode {mode} does not fit in 32 bits")
    return UnixFsData(
        type=type_,
        data=blobs.get(2),
        filesize=ints.get(3),
        blocksizes=tuple(blocksizes),
        hash_type=ints.get(5),
        fanout=ints.get(6),
        mode=mode,
        mtime=blobs.get(8),
    )
