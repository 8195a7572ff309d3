"""Canonical CBOR: one encoding per value; every other input is a typed DecodeError."""

from __future__ import annotations

import tracemalloc

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded

cids = st.builds(
    lambda codec, data: Cid.of(codec, data), st.sampled_from(Multicodec), st.binary(max_size=8)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | cids
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_roundtrip(value: object) -> None:
    data = cbor.encode(value)
    assert cbor.decode(data) == value
    assert cbor.encode(cbor.decode(data)) == data


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 100), min_size=2, max_size=8))
def test_map_key_order_is_length_first_then_bytewise(value: dict[str, int]) -> None:
    decoded_keys = list(cbor2.loads(cbor.encode(value)))
    encoded = [cbor2.dumps(k) for k in decoded_keys]
    assert encoded == sorted(encoded, key=lambda b: (len(b), b))


def test_same_value_same_bytes_whatever_insertion_order() -> None:
    assert cbor.encode({"b": 1, "a": 2, "aa": 3}) == cbor.encode({"aa": 3, "a": 2, "b": 1})


def test_cid_is_tag_42_with_identity_multibase_prefix() -> None:
    cid = Cid.of(Multicodec.RAW, b"x")
    data = cbor.encode(cid)
    assert data[:2] == b"\xd8\x2a"
    assert cbor2.loads(data).value == b"\x00" + cid.to_bytes()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes([0x18, 0x01]), "canonical"),  # 1 encoded in two bytes
        (bytes([0xC1, 0x01]), "datetime"),  # tag 1 (epoch time)
        (bytes([0xF9, 0x3C, 0x00]), "float"),  # half float 1.0
        (bytes([0xFB]) + b"\x3f\xf0" + bytes(6), "float"),
        (bytes([0xF7]), "not allowed"),  # undefined
        (bytes([0xF0]), "not allowed"),  # simple(16)
        (bytes([0x9F, 0xFF]), "indefinite"),
        (bytes([0x5F, 0x41, 0x00, 0xFF]), "indefinite"),
        (bytes([0xA2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02]), "Duplicate"),
        (bytes([0xA2, 0x62, 0x62, 0x62, 0x01, 0x61, 0x61, 0x02]), "canonical"),  # unsorted keys
        (bytes([0xA1, 0x01, 0x02]), "key"),  # integer key
        (bytes([0xA1, 0x41, 0x61, 0x02]), "key"),  # byte-string key
        (bytes([0xC2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0]), "range"),  # bignum 2**64
        (bytes([0xD8, 0x1C, 0x81, 0xD8, 0x1D, 0x00]), "deeper"),  # shared-reference cycle
        (bytes([0xD8, 0x2A, 0x41, 0x00]), "tag 42"),  # CID tag without a CID
        (bytes([0xD9, 0x01, 0x02, 0x80]), "not allowed"),  # tag 258 set
        (bytes([0xD8, 0x63, 0x00]), "tag 99"),
        (bytes([0x61, 0xFF]), "text"),  # invalid UTF-8
        (bytes([0x01, 0x01]), "trailing"),
        (b"", "malformed"),
        (bytes([0x5A, 0xFF, 0xFF, 0xFF, 0xFF]), "malformed"),  # 4 GB byte string declared
    ],
)
def test_non_canonical_or_foreign_input_is_rejected(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=f"(?i){why}"):
        cbor.decode(data)


def test_size_limit_checked_before_decoding() -> None:
    data = cbor.encode(b"x" * 100)
    with pytest.raises(LimitExceeded):
        cbor.decode(data, max_size=50)
    assert cbor.decode(data, max_size=len(data)) == b"x" * 100


def test_depth_limit() -> None:
    value: object = 1
    for _ in range(40):
        value = [value]
    with pytest.raises(InvalidValue):
        cbor.encode(value)
    with pytest.raises(DecodeError):
        cbor.decode(bytes([0x81] * 40 + [0x01]))


@pytest.mark.parametrize("value", [1.5, {1: 2}, {b"k": 1}, object(), 2**64, -(2**64) - 1])
def test_encode_rejects_values_outside_the_data_model(value: object) -> None:
    with pytest.raises(InvalidValue):
        cbor.encode(value)


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        value = cbor.decode(data)
    except DecodeError:
        return
    assert cbor.encode(value) == data  # anything accepted is canonical


@settings(max_examples=1000)
@given(values, st.data())
def test_mutated_encodings_decode_canonically_or_fail(value: object, data: st.DataObject) -> None:
    encoded = bytearray(cbor.encode(value))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] = data.draw(st.integers(0, 255))
    try:
        decoded = cbor.decode(bytes(encoded))
    except DecodeError:
        return
    assert cbor.encode(decoded) == bytes(encoded)


def test_huge_declared_lengths_do_not_allocate() -> None:
    tracemalloc.start()
    try:
        for header in (
            [0x5B] + [0xFF] * 8,
            [0x9B] + [0x7F] + [0xFF] * 7,
            [0x7A, 0xFF, 0xFF, 0xFF, 0xF0],
        ):
            with pytest.raises(DecodeError):
                cbor.decode(bytes(header) + b"\x00" * 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def _link(encoder: cbor2.CBOREncoder, value: object) -> None:
    assert isinstance(value, Cid)
    encoder.encode(cbor2.CBORTag(42, b"\x00" + value.to_bytes()))


@settings(max_examples=1000)
@given(values)
def test_encoding_is_byte_identical_to_reference_canonical_cbor(value: object) -> None:
    """Keys are ordered by our own walk; the result must equal cbor2's canonical encoder."""
    assert cbor.encode(value) == cbor2.dumps(value, canonical=True, default=_link)


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), max_size=12), st.randoms())
def test_insertion_order_never_changes_the_bytes(mapping: dict[str, int], rng: object) -> None:
    items = list(mapping.items())
    rng.shuffle(items)  # type: ignore[attr-defined]
    assert cbor.encode(dict(items)) == cbor.encode(mapping)


@pytest.mark.parametrize("value", ["\ud800", ["ok", "\udfff"], {"\ud83d": 1}, {"k": "a\ud800b"}])
def test_lone_surrogates_are_invalid_values(value: object) -> None:
    """Text with no UTF-8 form (e.g. from a JSON ``"\\ud800"`` escape) is outside the model."""
    with pytest.raises(InvalidValue, match="Unicode"):
        cbor.encode(value)


any_text = st.text(st.characters(exclude_categories=()), max_size=4)  # surrogates included


@given(st.recursive(any_text, lambda inner: st.dictionaries(any_text, inner, max_size=3)))
def test_any_text_encodes_or_raises_invalid_value(value: object) -> None:
    try:
        data = cbor.encode(value)
    except InvalidValue:
        return
    assert cbor.decode(data) == value
