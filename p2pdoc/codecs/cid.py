"""Content identifiers: CIDv1 with a sha2-256 multihash.

Binary form (multiformats CID spec)::

    0x01 | varint(codec) | 0x12 | 0x20 | 32-byte SHA-256 digest

Codecs: ``raw`` (0x55) for leaf blocks, ``dag-pb`` (0x70) for UnixFS nodes, ``dag-cbor``
(0x71) for document manifests and other signed records. The canonical text form is multibase
base32 lower (``b...``), as IPFS prints CIDv1. Any supported multibase is accepted on input.
CIDv0 (``Qm...``), other hash functions and other codecs are rejected with a message that
says which.

The class lives with the codecs because dag-cbor encodes CIDs (tag 42); :mod:`p2pdoc.model`
re-exports it.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from typing import Final

from p2pdoc.codecs.multiformats import (
    multibase_decode,
    multibase_encode_base32,
    varint_decode,
    varint_encode,
)
from p2pdoc.errors import ContentMismatch, DecodeError, InvalidValue

__all__ = ["Cid", "Multicodec"]

_SHA2_256: Final = 0x12
_DIGEST_SIZE: Final = 32
_HASH_NAMES: Final = {
    0x00: "identity",
    0x11: "sha1",
    0x13: "sha2-512",
    0x16: "sha3-256",
    0x1B: "keccak-256",
    0x1E: "blake3",
    0xB220: "blake2b-256",
}


class Multicodec(enum.IntEnum):
    """Content codecs a p2pdoc CID may name."""

    RAW = 0x55
    DAG_PB = 0x70
    DAG_CBOR = 0x71


@functools.total_ordering
class Cid:
    """A CIDv1 over a sha2-256 digest. Immutable, hashable, ordered by its bytes."""

    __slots__ = ("_bytes", "_codec", "_text")

    _bytes: bytes
    _codec: Multicodec
    _text: str | None

    def __init__(self, codec: Multicodec, digest: bytes) -> None:
        """Raises: InvalidValue: ``codec`` is not a :class:`Multicodec` or the digest is not
        32 bytes."""
        if len(digest) != _DIGEST_SIZE:
            raise InvalidValue(f"sha2-256 digest must be 32 bytes, got {len(digest)}")
        try:
            codec = Multicodec(codec)
        except ValueError:
            raise InvalidValue(f"unsupported CID codec {codec!r}") from None
        object.__setattr__(self, "_codec", codec)
        object.__setattr__(
            self,
            "_bytes",
            b"\x01" + varint_encode(codec) + bytes([_SHA2_256, _DIGEST_SIZE]) + digest,
        )
        object.__setattr__(self, "_text", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Cid is immutable")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def of(cls, codec: Multicodec, data: bytes | bytearray | memoryview) -> Cid:
        """The CID of ``data`` under ``codec``."""
        return cls(codec, hashlib.sha256(data).digest())

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Cid:
        """Parse the binary form.

        Raises:
            DecodeError: not a CIDv1, unsupported codec or hash, wrong length.
        """
        data = bytes(data)
        if len(data) < 2:
            raise DecodeError("CID too short")
        if data[0] == _SHA2_256 and data[1] == _DIGEST_SIZE:
            raise DecodeError("CIDv0 is not supported; use CIDv1 (ipfs add --cid-version=1)")
        version, pos = varint_decode(data)
        if version != 1:
            raise DecodeError(f"unsupported CID version {version}; only CIDv1 is supported")
        codec_code, pos = varint_decode(data, pos)
        try:
            codec = Multicodec(codec_code)
        except ValueError:
            raise DecodeError(
                f"unsupported CID codec 0x{codec_code:x}; expected raw, dag-pb or dag-cbor"
            ) from None
        hash_code, pos = varint_decode(data, pos)
        if hash_code != _SHA2_256:
            name = _HASH_NAMES.get(hash_code, f"0x{hash_code:x}")
            raise DecodeError(f"unsupported CID hash function {name}; only sha2-256")
        size, pos = varint_decode(data, pos)
        if size != _DIGEST_SIZE or len(data) - pos != _DIGEST_SIZE:
            raise DecodeError("sha2-256 CID digest must be 32 bytes")
        return cls(codec, data[pos:])

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse CIDv1 text in any supported multibase (canonically base32 ``b...``).

        Raises:
            InvalidValue: with the reason (CIDv0, bad multibase, unsupported codec or hash).
        """
        if not isinstance(text, str):
            raise InvalidValue(f"CID text must be str, not {type(text).__name__}")
        if text.startswith("Qm") and len(text) == 46:
            raise InvalidValue(f"{text!r} is a CIDv0; only CIDv1 is supported")
        try:
            return cls.from_bytes(multibase_decode(text))
        except DecodeError as exc:
            raise InvalidValue(f"invalid CID {text[:80]!r}: {exc}") from exc

    # -- accessors ----------------------------------------------------------------------

    @property
    def codec(self) -> Multicodec:
        return self._codec

    @property
    def digest(self) -> bytes:
        return self._bytes[-_DIGEST_SIZE:]

    def __bytes__(self) -> bytes:
        return self._bytes

    def to_bytes(self) -> bytes:
        return self._bytes

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = multibase_encode_base32(self._bytes)
            object.__setattr__(self, "_text", text)
        return text

    def __repr__(self) -> str:
        text = str(self)
        return f"Cid({text[:8]}…{text[-6:]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cid) and other._bytes == self._bytes

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Cid):
            return NotImplemented
        return self._bytes < other._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (Cid.from_bytes, (self._bytes,))

    def verify(self, data: bytes | bytearray | memoryview) -> None:
        """Check that ``data`` hashes to this CID.

        Raises:
            ContentMismatch: naming this CID.
        """
        if hashlib.sha256(data).digest() != self.digest:
            raise ContentMismatch(str(self))
