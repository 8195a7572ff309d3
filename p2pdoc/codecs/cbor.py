"""Canonical CBOR (the DAG-CBOR strict subset) for everything that is hashed or signed.

Goals: one value has exactly one encoding, so a signature or CID over the bytes is a
signature or CID over the value; decoding is bounded and rejects every other encoding.
Non-goals: general CBOR interchange (floats, dates, bignums, undefined, other tags).

Data model (``Value``): ``None``, ``bool``, ``int`` in [-2**64, 2**64 - 1], ``str`` (UTF-8),
``bytes``, ``list`` (tuples encode as lists), ``dict`` with ``str`` keys, and :class:`Cid`
(tag 42 over ``0x00 || cid-bytes``, as DAG-CBOR links). Decoding returns lists and dicts.

Encoding rules, the DAG-CBOR "strictness" rules:
- integers, lengths and tags in their shortest form; no indefinite lengths;
- map keys are text strings, unique, sorted by the length of their encoded form first and
  then bytewise (RFC 7049 canonical order, which DAG-CBOR uses);
- the only tag is 42 (a CID); no floats, no other simple values than false/true/null.

Decoding checks the size limit before anything else, decodes with cbor2 under a depth
limit with indefinite lengths and duplicate keys refused, walks the result to reject types
outside the data model and maps whose keys are out of canonical order, then re-encodes:
input whose bytes differ from the canonical encoding of its value is rejected. Any failure
is a :class:`DecodeError`.

Speed: cbor2's own ``canonical=True`` sorts map keys by encoding each one, which costs more
than the rest of the encoding. Encoding therefore builds every map with its keys already in
canonical order (during the data-model check it does anyway) and lets cbor2 write them as
they come; decoding checks the key order during its walk and compares with a plain
re-encoding. The bytes are the same as cbor2's canonical output (the property tests check
it). Walks treat the exact built-in types inline and hand anything else to the general
rules.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import cbor2

from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "Value", "decode", "encode"]

Value: TypeAlias = Any
"""A value in the data model above (mypy cannot express the recursive union usefully)."""

DEFAULT_MAX_SIZE: Final = 1 << 20
"""Largest canonical CBOR item decoded by default (1 MiB)."""

DEFAULT_MAX_DEPTH: Final = 32
"""Deepest nesting of lists and maps accepted by default."""

_CID_TAG: Final = 42
_INT_MIN: Final = -(1 << 64)
_INT_MAX: Final = (1 << 64) - 1


@functools.lru_cache(maxsize=4096)
def _key_order(key: str) -> tuple[int, str]:
    """Sort key of a map key in canonical order: by encoded length, then bytewise.

    A text key's encoding is a header fixed by its UTF-8 length, then the UTF-8 bytes, and
    UTF-8 preserves code point order: so (UTF-8 length, text) orders like the encodings.
    Cached: maps mostly reuse a few field names.
    """
    return (len(key), key) if key.isascii() else (len(key.encode("utf-8")), key)


def _ordered(out: dict[str, Value]) -> dict[str, Value]:
    if len(out) < 2:
        return out
    return {key: out[key] for key in sorted(out, key=_key_order)}


def _check(value: Value, depth: int, max_depth: int) -> Value:
    """Validate a value against the data model, converting tuples to lists, other sequences
    and mappings to lists and dicts, and ordering every map's keys canonically.

    The exact built-in types are handled inline (most values are dicts and lists of text,
    bytes and small integers); anything else takes :func:`_check_general`, which applies the
    same rules to any type.
    """
    if depth >= max_depth:
        return _check_general(value, depth, max_depth)
    kind = type(value)
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                return _check_general(value, depth, max_depth)
            t = type(item)
            if (
                t is str
                or t is bytes
                or item is None
                or t is bool
                or (t is int and _INT_MIN <= item <= _INT_MAX)
            ):
                out[key] = item
            else:
                out[key] = _check(item, depth + 1, max_depth)
        return _ordered(out)
    if kind is list or kind is tuple:
        items = []
        for item in value:
            t = type(item)
            if (
                t is str
                or t is bytes
                or item is None
                or t is bool
                or (t is int and _INT_MIN <= item <= _INT_MAX)
            ):
                items.append(item)
            else:
                items.append(_check(item, depth + 1, max_depth))
        return items
    return _check_general(value, depth, max_depth)


def _check_general(value: Value, depth: int, max_depth: int) -> Value:
    """:func:`_check` for any type (the reference rules, without fast paths)."""
    if depth > max_depth:
        raise InvalidValue(f"nesting deeper than {max_depth}")
    if value is None or isinstance(value, (bool, str, bytes, Cid)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidValue(f"integer {value} outside the CBOR 64-bit range")
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue(f"map keys must be str, not {type(key).__name__}")
            out[str(key)] = _check(item, depth + 1, max_depth)
        return _ordered(out)
    if isinstance(value, Sequence):
        return [_check(item, depth + 1, max_depth) for item in value]
    raise InvalidValue(f"type {type(value).__name__} is not in the canonical CBOR data model")


def _default(encoder: cbor2.CBOREncoder, value: Value) -> None:
    if isinstance(value, Cid):
        encoder.encode(cbor2.CBORTag(_CID_TAG, b"\x00" + value.to_bytes()))
        return
    raise InvalidValue(f"type {type(value).__name__} is not in the canonical CBOR data model")


def encode(value: Value, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``value`` canonically.

    Raises:
        InvalidValue: the value (or something inside it) is outside the data model, including
            text that is not valid Unicode (a lone surrogate has no UTF-8 encoding).
    """
    try:
        checked = _check(value, 0, max_depth)
        # Maps are in canonical key order already (see the module docstring).
        return cbor2.dumps(checked, default=_default)
    except UnicodeEncodeError as exc:
        raise InvalidValue(f"text is not valid Unicode: {exc.reason} at {exc.start}") from exc


def _tag_hook(*args: object) -> Value:
    # cbor2's C decoder passes (tag, immutable) while its documentation and pure-Python
    # decoder pass (decoder, tag); accept either by finding the tag.
    tag = next((a for a in args if isinstance(a, cbor2.CBORTag)), None)
    if tag is None:
        raise DecodeError("CBOR tag hook called without a tag")
    if tag.tag != _CID_TAG:
        raise DecodeError(f"unexpected CBOR tag {tag.tag}")
    link = tag.value
    if not isinstance(link, bytes) or not link.startswith(b"\x00"):
        raise DecodeError("CID tag must hold bytes with a 0x00 multibase prefix")
    return Cid.from_bytes(link[1:])


def _check_key_order(value: dict[str, Value]) -> None:
    previous: tuple[int, str] | None = None
    for key in value:
        order = _key_order(key)
        if previous is not None and order <= previous:
            raise DecodeError("CBOR is not in canonical form (map keys out of order)")
        previous = order


def _walk(value: Value, depth: int, max_depth: int) -> None:
    """Reject decoded values outside the data model (dates, floats, bignums, cycles...) and
    maps whose keys are not in canonical order.

    Decoded maps and arrays are exactly ``dict`` and ``list``; their scalar items are checked
    inline, anything else goes through :func:`_walk_general`.
    """
    if depth >= max_depth:
        _walk_general(value, depth, max_depth)
        return
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError(f"map key of type {type(key).__name__}; keys must be text")
            t = type(item)
            if not (
                t is str
                or t is bytes
                or item is None
                or t is bool
                or (t is int and _INT_MIN <= item <= _INT_MAX)
            ):
                _walk(item, depth + 1, max_depth)
        if len(value) > 1:
            _check_key_order(value)
    elif kind is list:
        for item in value:
            t = type(item)
            if not (
                t is str
                or t is bytes
                or item is None
                or t is bool
                or (t is int and _INT_MIN <= item <= _INT_MAX)
            ):
                _walk(item, depth + 1, max_depth)
    else:
        _walk_general(value, depth, max_depth)


def _walk_general(value: Value, depth: int, max_depth: int) -> None:
    """:func:`_walk` for any type (the reference rules, without fast paths)."""
    if depth > max_depth:
        raise DecodeError(f"CBOR nesting deeper than {max_depth}")
    if value is None or isinstance(value, (bool, str, bytes, Cid)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError("CBOR integer outside the 64-bit range")
        return
    if isinstance(value, list):
        for item in value:
            _walk(item, depth + 1, max_depth)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DecodeError(f"map key of type {type(key).__name__}; keys must be text")
            _walk(item, depth + 1, max_depth)
        _check_key_order(value)
        return
    raise DecodeError(f"CBOR item of type {type(value).__name__} is not allowed")


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Value:
    """Decode exactly one canonical CBOR item that fills ``data``.

    Raises:
        LimitExceeded: ``data`` is longer than ``max_size``.
        DecodeError: malformed, truncated, trailing bytes, non-canonical, too deep,
            duplicate keys, indefinite lengths, or a type or tag outside the data model.
    """
    if len(data) > max_size:
        raise LimitExceeded("CBOR item", len(data), max_size)
    raw = bytes(data)
    try:
        value = cbor2.loads(
            raw,
            tag_hook=_tag_hook,
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except DecodeError:
        raise
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from exc
    _walk(value, 0, max_depth)
    try:
        # Map keys were found in canonical order by the walk, so the plain encoding of the
        # value is its canonical encoding.
        canonical = cbor2.dumps(value, default=_default)
    except (cbor2.CBORError, InvalidValue, ValueError, TypeError) as exc:
        raise DecodeError(f"CBOR value cannot be re-encoded: {exc}") from exc
    if canonical != raw:
        if len(canonical) < len(raw) and raw.startswith(canonical):
            raise DecodeError(f"{len(raw) - len(canonical)} trailing bytes after the CBOR item")
        raise DecodeError("CBOR is not in canonical form")
    return value
