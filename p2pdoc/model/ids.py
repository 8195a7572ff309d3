"""Identifiers as value types: agency codes, document ids and libp2p peer IDs.

Each has one checked text form (``str(x)``), parses with ``X.parse(text)`` raising
:class:`~p2pdoc.errors.InvalidValue` that says what is wrong, and is immutable, hashable and
ordered.

Agency codes (QCVN 102:2016) are ``LLL.LL.LL.Xnn``, most specific group first:
level 4 (3 digits) . level 3 (2 digits) . level 2 (2 digits) . level 1 (letter + 2 digits).
A group of zeros means "no unit at this level". Level 1 is always set (its digits are not
``00``). Intermediate levels may be skipped: ``002.00.20.H13`` is a commune registered
directly under district ``000.00.20.H13``, and ``000.05.00.H49`` a unit directly under
province ``000.00.00.H49``. The parent of a code clears its most specific set group.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from functools import total_ordering
from typing import Final

from p2pdoc.codecs.multiformats import b58decode, b58encode, varint_decode, varint_encode
from p2pdoc.errors import DecodeError, InvalidValue

__all__ = ["AgencyCode", "DocumentId", "PeerId"]

_CODE_RE: Final = re.compile(r"([0-9]{3})\.([0-9]{2})\.([0-9]{2})\.([A-Z])([0-9]{2})")


@total_ordering
class AgencyCode:
    """An agency's 13-character identifier code, e.g. ``000.00.00.G22``."""

    __slots__ = ("_groups", "_text")

    _text: str
    _groups: tuple[int, int, int, str]

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidValue(f"agency code must be str, not {type(text).__name__}")
        match = _CODE_RE.fullmatch(text)
        if match is None:
            raise InvalidValue(f"agency code {text[:40]!r}: {_explain(text)}")
        l4, l3, l2, letter, digits = match.groups()
        if digits == "00":
            raise InvalidValue(
                f"agency code {text!r}: level 1 ({letter}{digits}) is unset; every code "
                "needs its level-1 body, and nothing may be set under an unset level 1"
            )
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_groups", (int(l4), int(l3), int(l2), letter + digits))

    @classmethod
    def parse(cls, text: str) -> AgencyCode:
        return cls(text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AgencyCode is immutable")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"AgencyCode({self._text})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgencyCode) and other._text == self._text

    def __lt__(self, other: AgencyCode) -> bool:
        return self._text < other._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (AgencyCode, (self._text,))

    @property
    def level(self) -> int:
        """The level of the most specific set group: 1 (ministry, province) .. 4 (commune)."""
        l4, l3, l2, _ = self._groups
        if l4:
            return 4
        if l3:
            return 3
        if l2:
            return 2
        return 1

    @property
    def root(self) -> AgencyCode:
        """The level-1 body this code belongs to (``000.00.00.Xnn``)."""
        return AgencyCode(f"000.00.00.{self._groups[3]}")

    def parent(self) -> AgencyCode | None:
        """The code with its most specific set group cleared; None for a level-1 body."""
        l4, l3, l2, top = self._groups
        if l4:
            l4 = 0
        elif l3:
            l3 = 0
        elif l2:
            l2 = 0
        else:
            return None
        return AgencyCode(f"{l4:03d}.{l3:02d}.{l2:02d}.{top}")

    def ancestors(self) -> list[AgencyCode]:
        """Parent, grandparent, ... up to the level-1 body, nearest first."""
        out = []
        code = self.parent()
        while code is not None:
            out.append(code)
            code = code.parent()
        return out

    def is_ancestor_of(self, other: AgencyCode) -> bool:
        """True if ``other`` lies strictly below this code in the hierarchy."""
        return self in other.ancestors()

    def contains(self, other: AgencyCode) -> bool:
        """True if ``other`` is this code or lies below it (the code's subtree)."""
        return other == self or self.is_ancestor_of(other)


def _explain(text: str) -> str:
    if len(text) > 40:
        return "longer than 13 characters (LLL.LL.LL.Xnn)"
    groups = text.split(".")
    if len(groups) != 4:
        return f"expected 4 dot-separated groups, found {len(groups)}"
    names = ("level-4 group", "level-3 group", "level-2 group")
    for name, group, width in zip(names, groups[:3], (3, 2, 2), strict=True):
        if len(group) != width or not group.isascii() or not group.isdigit():
            return f"{name} {group!r} must be {width} digits"
    top = groups[3]
    if (
        len(top) != 3
        or not ("A" <= top[0] <= "Z")
        or not top[1:].isascii()
        or not top[1:].isdigit()
    ):
        return f"level-1 group {top!r} must be an upper-case letter and 2 digits"
    return "must be 13 characters LLL.LL.LL.Xnn"


_DOC_ID_RE: Final = re.compile(r"([^,]{13}),([0-9]{4})/([0-9]{2})/([0-9]{2}),([0-9]{1,10})/(.+)")
_MAX_NOTATION: Final = 100


@total_ordering
class DocumentId:
    """edXML document id: ``<agency code>,<yyyy/MM/dd>,<number>/<notation>``.

    Example: ``000.00.00.G22,2015/09/30,7816/VPCP-TTĐT``. The notation is Unicode (stored in
    NFC), at most 100 characters, without commas or control characters; it may contain ``/``.
    """

    __slots__ = ("agency", "date", "notation", "number")

    agency: AgencyCode
    date: _dt.date
    number: int
    notation: str

    def __init__(self, agency: AgencyCode, date: _dt.date, number: int, notation: str) -> None:
        if not isinstance(agency, AgencyCode):
            raise InvalidValue("document id agency must be an AgencyCode")
        if not isinstance(date, _dt.date) or isinstance(date, _dt.datetime):
            raise InvalidValue("document id date must be a datetime.date")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 10**10:
            raise InvalidValue(f"document number must be an integer 0..9999999999, got {number!r}")
        if not isinstance(notation, str):
            raise InvalidValue("document notation must be str")
        if not notation.isascii():  # ASCII text is always in NFC
            notation = unicodedata.normalize("NFC", notation)
        if not notation or len(notation) > _MAX_NOTATION:
            raise InvalidValue(f"document notation must be 1..{_MAX_NOTATION} characters")
        if notation != notation.strip():
            raise InvalidValue("document notation must not start or end with whitespace")
        # Printable text holds no character of a category C*; only other text is checked
        # character by character.
        if "," in notation or not notation.isprintable():
            bad = [c for c in notation if c == "," or unicodedata.category(c).startswith("C")]
            if bad:
                raise InvalidValue(f"document notation contains forbidden character {bad[0]!r}")
        object.__setattr__(self, "agency", agency)
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "number", number)
        object.__setattr__(self, "notation", notation)

    @classmethod
    def parse(cls, text: str) -> DocumentId:
        """Parse the edXML text form.

        Raises:
            InvalidValue: naming the part that is wrong.
        """
        if not isinstance(text, str):
            raise InvalidValue(f"document id must be str, not {type(text).__name__}")
        if len(text) > 200:
            raise InvalidValue("document id longer than 200 characters")
        match = _DOC_ID_RE.fullmatch(text)
        if match is None:
            raise InvalidValue(
                f"document id {text!r} must be '<agency code>,<yyyy/MM/dd>,<number>/<notation>'"
            )
        code, year, month, day, number, notation = match.groups()
        try:
            date = _dt.date(int(year), int(month), int(day))
        except ValueError as exc:
            raise InvalidValue(f"document id {text!r}: invalid date: {exc}") from None
        return cls(AgencyCode(code), date, int(number), notation)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DocumentId is immutable")

    def __str__(self) -> str:
        date = self.date  # as strftime("%Y/%m/%d"), without its cost
        day = f"{date.year:04d}/{date.month:02d}/{date.day:02d}"  # parse needs 4 year digits
        return f"{self.agency},{day},{self.number}/{self.notation}"

    def __repr__(self) -> str:
        return f"DocumentId({self})"

    def _key(self) -> tuple[str, _dt.date, int, str]:
        return (str(self.agency), self.date, self.number, self.notation)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DocumentId) and other._key() == self._key()

    def __lt__(self, other: DocumentId) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (DocumentId.parse, (str(self),))


_IDENTITY: Final = 0x00
_SHA2_256: Final = 0x12
_ED25519_PROTO_PREFIX: Final = b"\x08\x01\x12\x20"  # KeyType=Ed25519, Data=32 bytes
_MAX_PEER_ID_BYTES: Final = 64


@total_ordering
class PeerId:
    """A libp2p peer ID: a multihash of the node's public key, text in base58btc.

    Ed25519 keys use the identity multihash (text starts ``12D3KooW``), so the public key
    can be read back from the ID itself.
    """

    __slots__ = ("_bytes",)

    _bytes: bytes

    def __init__(self, multihash: bytes) -> None:
        multihash = bytes(multihash)
        if len(multihash) > _MAX_PEER_ID_BYTES:
            raise InvalidValue("peer ID longer than 64 bytes")
        try:
            code, pos = varint_decode(multihash)
            size, pos = varint_decode(multihash, pos)
        except DecodeError as exc:
            raise InvalidValue(f"peer ID is not a multihash: {exc}") from None
        if code not in (_IDENTITY, _SHA2_256):
            raise InvalidValue(f"peer ID uses unsupported multihash 0x{code:x}")
        if len(multihash) - pos != size or (code == _SHA2_256 and size != 32):
            raise InvalidValue("peer ID multihash length does not match its digest")
        object.__setattr__(self, "_bytes", multihash)

    @classmethod
    def from_ed25519(cls, public_key: bytes) -> PeerId:
        """The peer ID of a raw 32-byte Ed25519 public key."""
        if len(public_key) != 32:
            raise InvalidValue("Ed25519 public key must be 32 bytes")
        proto = _ED25519_PROTO_PREFIX + bytes(public_key)
        return cls(varint_encode(_IDENTITY) + varint_encode(len(proto)) + proto)

    @classmethod
    def parse(cls, text: str) -> PeerId:
        if not isinstance(text, str) or not text or len(text) > 100:
            raise InvalidValue(f"invalid peer ID text {str(text)[:60]!r}")
        try:
            return cls(b58decode(text))
        except DecodeError as exc:
            raise InvalidValue(f"invalid peer ID {text!r}: {exc}") from None

    def ed25519_public_key(self) -> bytes | None:
        """The raw Ed25519 key inlined in an identity peer ID, else None."""
        if self._bytes[0] == _IDENTITY:
            proto = self._bytes[2:]
            if proto.startswith(_ED25519_PROTO_PREFIX) and len(proto) == 36:
                return proto[4:]
        return None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PeerId is immutable")

    def to_bytes(self) -> bytes:
        return self._bytes

    def __bytes__(self) -> bytes:
        return self._bytes

    def __str__(self) -> str:
        return b58encode(self._bytes)

    def __repr__(self) -> str:
        text = str(self)
        return f"PeerId(…{text[-8:]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PeerId) and other._bytes == self._bytes

    def __lt__(self, other: PeerId) -> bool:
        return self._bytes < other._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (PeerId, (self._bytes,))
