"""Unsigned varints and multibase text encodings (pure functions over bytes).

Only what CIDs and libp2p peer IDs need: the unsigned LEB128 varint of the multiformats
spec (at most 9 bytes, minimal encoding required), and the multibase alphabets that appear in
practice for CIDv1 text: base32 lower/upper (``b``/``B``), base58btc (``z``), base36 lower
(``k``), base16 (``f``/``F``), and base64 / base64url without padding (``m``/``u``).
"""

from __future__ import annotations

import base64
import binascii
import string

from p2pdoc.errors import DecodeError, InvalidValue

__all__ = [
    "b58decode",
    "b58encode",
    "multibase_decode",
    "multibase_encode_base32",
    "varint_decode",
    "varint_encode",
]

_MAX_VARINT_BYTES = 9  # multiformats caps varints at 63 bits
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
_B36_INDEX = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyz")}
# Multibase text of anything we parse is short (a CID or peer ID); bound the work up front.
MAX_MULTIBASE_TEXT = 512


def varint_encode(value: int) -> bytes:
    """Encode a non-negative integer below 2**63 as an unsigned varint."""
    if not 0 <= value < 1 << 63:
        raise InvalidValue(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_decode(data: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode a minimal unsigned varint at ``offset``.

    Returns:
        ``(value, next_offset)``.

    Raises:
        DecodeError: truncated, longer than 9 bytes, or not minimally encoded.
    """
    value = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        pos = offset + i
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise DecodeError("varint is not minimally encoded")
            return value, pos + 1
        shift += 7
    raise DecodeError("varint longer than 9 bytes")


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (base58btc)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    chars = []
    while num:
        num, rem = divmod(num, 58)
        chars.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(chars))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`.

    Raises:
        DecodeError: a character outside the alphabet, or text over the length bound.
    """
    return _base_n_decode(text, _B58_INDEX, "base58")


def _base_n_decode(text: str, index: dict[str, int], name: str) -> bytes:
    """Big-endian base-``len(index)`` text to bytes; each leading zero digit is a zero byte."""
    if len(text) > MAX_MULTIBASE_TEXT:
        raise DecodeError(f"{name} text too long")
    base = len(index)
    num = 0
    for c in text:
        digit = index.get(c)
        if digit is None:
            raise DecodeError(f"invalid {name} character {c!r}")
        num = num * base + digit
    zero = next(iter(index))
    zeros = len(text) - len(text.lstrip(zero))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def _b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"invalid base32: {exc}") from exc
    if base64.b32encode(raw).decode().rstrip("=") != text.upper():
        raise DecodeError("base32 text has non-zero padding bits")
    return raw


def _b64decode(text: str, *, urlsafe: bool) -> bytes:
    # Multibase base64 has no padding; validate=True refuses any character outside the
    # alphabet instead of skipping it, so one byte string has one accepted text form.
    if "=" in text:
        raise DecodeError("multibase base64 text must not be padded")
    padded = text + "=" * (-len(text) % 4)
    altchars = b"-_" if urlsafe else None
    try:
        raw = base64.b64decode(padded.encode("ascii"), altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"invalid base64: {exc}") from exc
    if base64.b64encode(raw, altchars).decode("ascii").rstrip("=") != text:
        raise DecodeError("base64 text has non-zero padding bits")
    return raw


def multibase_encode_base32(data: bytes) -> str:
    """Multibase base32 lower without padding: the canonical text form of CIDv1."""
    return "b" + base64.b32encode(data).decode("ascii").rstrip("=").lower()


def multibase_decode(text: str) -> bytes:
    """Decode multibase text in one of the supported encodings.

    Raises:
        DecodeError: unknown prefix, invalid characters, or over the length bound.
    """
    if not text:
        raise DecodeError("empty multibase text")
    if len(text) > MAX_MULTIBASE_TEXT:
        raise DecodeError(f"multibase text longer than {MAX_MULTIBASE_TEXT} characters")
    prefix, body = text[0], text[1:]
    if prefix == "b":
        if body != body.lower():
            raise DecodeError("base32 ('b') text must be lower case")
        return _b32decode(body)
    if prefix == "B":
        if body != body.upper():
            raise DecodeError("base32upper ('B') text must be upper case")
        return _b32decode(body)
    if prefix == "z":
        return b58decode(body)
    if prefix == "k":
        return _base_n_decode(body, _B36_INDEX, "base36")
    if prefix in "fF":
        if (prefix == "f" and body != body.lower()) or (prefix == "F" and body != body.upper()):
            raise DecodeError("base16 text case does not match its prefix")
        if body.strip(string.hexdigits):  # fromhex would skip whitespace
            raise DecodeError("invalid base16 character")
        try:
            return bytes.fromhex(body)
        except ValueError as exc:
            raise DecodeError(f"invalid base16: {exc}") from exc
    if prefix == "m":
        return _b64decode(body, urlsafe=False)
    if prefix == "u":
        if "+" in body or "/" in body:
            raise DecodeError("invalid base64url character")
        return _b64decode(body, urlsafe=True)
    raise DecodeError(f"unsupported multibase prefix {prefix!r}")
