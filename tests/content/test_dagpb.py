"""dag-pb and UnixFS Data codecs: canonical round trips; every bad input is a DecodeError."""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.codecs.multiformats import varint_encode
from p2pdoc.content.dagpb import (
    PBLink,
    PBNode,
    UnixFsData,
    UnixFsType,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)
from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded

CID_A = Cid.of(Multicodec.RAW, b"a")
CID_B = Cid.of(Multicodec.DAG_PB, b"b")

cids = st.builds(Cid.of, st.sampled_from(Multicodec), st.binary(max_size=4))
uint63 = st.integers(min_value=0, max_value=2**63 - 1)
links = st.builds(PBLink, cids, st.none() | st.text(max_size=10), st.none() | uint63)
nodes = st.builds(
    PBNode, st.lists(links, max_size=6).map(tuple), st.none() | st.binary(max_size=40)
)
unixfs_messages = st.builds(
    UnixFsData,
    st.sampled_from(UnixFsType),
    st.none() | st.binary(max_size=40),
    st.none() | uint63,
    st.lists(uint63, max_size=6).map(tuple),
    st.none() | uint63,
    st.none() | uint63,
    st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    st.none() | st.binary(max_size=12),
)


def _len(payload: bytes) -> bytes:
    return varint_encode(len(payload)) + payload


def _link_bytes(cid: Cid = CID_A, *, name: bytes | None = b"", tsize: int | None = 5) -> bytes:
    out = b"\x0a" + _len(cid.to_bytes())
    if name is not None:
        out += b"\x12" + _len(name)
    if tsize is not None:
        out += b"\x18" + varint_encode(tsize)
    return out


# -- known bytes ------------------------------------------------------------------------


def test_encoding_matches_the_importers_layout() -> None:
    # One link (Hash, empty Name, Tsize), then Data = UnixFS {Type: File, filesize, blocksizes}.
    unixfs = encode_unixfs(UnixFsData(UnixFsType.FILE, filesize=300, blocksizes=(300,)))
    assert unixfs == b"\x08\x02\x18\xac\x02\x20\xac\x02"
    node = PBNode((PBLink(CID_A, "", 300),), unixfs)
    link = b"\x0a\x24" + CID_A.to_bytes() + b"\x12\x00\x18\xac\x02"
    assert encode_node(node) == b"\x12" + _len(link)[0:1] + link + b"\x0a\x08" + unixfs
    assert decode_node(encode_node(node)) == node


def test_absent_and_empty_data_differ() -> None:
    assert encode_node(PBNode()) == b""
    assert encode_node(PBNode((), b"")) == b"\x0a\x00"
    assert decode_node(b"").data is None
    assert decode_node(b"\x0a\x00").data == b""


def test_value_types_validate_on_construction() -> None:
    with pytest.raises(InvalidValue):
        PBLink(CID_A, tsize=-1)
    with pytest.raises(InvalidValue):
        PBLink(b"not a cid")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        PBNode((CID_A,))  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        UnixFsData(UnixFsType.FILE, mode=2**32)
    with pytest.raises(ValueError, match="UnixFsType"):
        UnixFsData(9)  # type: ignore[arg-type]


# -- strictness -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x00" + b"\x12" + _len(_link_bytes()), "Links after Data"),
        (b"\x0a\x00\x0a\x00", "second Data"),
        (b"\x1a\x00", "unknown field 3"),
        (b"\x08\x01", "wire type 0"),
        (b"\x12" + _len(b"\x12\x00"), "without Hash"),
        (b"\x12" + _len(b"\x12\x00" + b"\x0a" + _len(CID_A.to_bytes())), "field 1 after field 2"),
        (b"\x12" + _len(_link_bytes(tsize=None) + b"\x18\x01\x18\x01"), "after field 3"),
        (b"\x12" + _len(_link_bytes(name=None, tsize=None) + b"\x0a\x00"), "after field 1"),
        (b"\x12" + _len(_link_bytes(name=None, tsize=None) + b"\x1a\x00"), "wire type 2"),
        (b"\x12" + _len(_link_bytes(name=None, tsize=None) + b"\x10\x00"), "wire type 0"),
        (b"\x12" + _len(_link_bytes(name=None, tsize=None) + b"\x22\x00"), "unknown field 4"),
        (b"\x12" + _len(_link_bytes(name=b"\xff", tsize=None)), "UTF-8"),
        (b"\x12" + _len(b"\x0a\x02\x12\x20"), "CIDv0"),
        (b"\x0a\x05abc", "runs past"),
        (b"\x0a\x80\x00", "minimal"),
        (b"\x0a", "truncated"),
    ],
)
def test_non_canonical_or_malformed_nodes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_node(data)


def test_link_fields_may_be_absent_but_keep_their_order() -> None:
    node = decode_node(b"\x12" + _len(_link_bytes(name=None, tsize=None)))
    assert node.links == (PBLink(CID_A),)
    node = decode_node(b"\x12" + _len(_link_bytes(name=b"x", tsize=None)))
    assert node.links == (PBLink(CID_A, "x"),)


def test_limits() -> None:
    link = b"\x12" + _len(_link_bytes())
    assert len(decode_node(link * 3, max_links=3).links) == 3
    with pytest.raises(LimitExceeded) as info:
        decode_node(link * 4, max_links=3)
    assert (info.value.what, info.value.limit) == ("dag-pb links", 3)
    with pytest.raises(LimitExceeded):
        decode_node(b"\x0a\x05hello", max_size=6)
    with pytest.raises(LimitExceeded):
        decode_unixfs(b"\x08\x02" + b"\x20\x01" * 5, max_blocksizes=4)
    with pytest.raises(LimitExceeded):
        decode_unixfs(b"\x08\x02" + b"\x22\x05" + b"\x01" * 5, max_blocksizes=4)


@pytest.mark.parametrize("field", [b"\x0a", b"\x12"])
def test_declared_4gb_length_allocates_nothing(field: bytes) -> None:
    data = field + varint_encode(4 * 1024**3) + b"xyz"
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="runs past"):
            decode_node(data)
        with pytest.raises(DecodeError, match="runs past"):
            decode_unixfs(b"\x08\x02\x12" + varint_encode(4 * 1024**3) + b"xyz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_unixfs_accepts_any_field_order_packed_sizes_and_unknown_fields() -> None:
    expected = UnixFsData(UnixFsType.FILE, b"hi", 7, (2, 3))
    # Reversed order, packed blocksizes, an unknown varint field 20, fixed64 field 21,
    # fixed32 field 22 and length-delimited field 23.
    data = (
        b"\x22\x02\x02\x03"
        + b"\x18\x07"
        + b"\xa0\x01\x05"
        + b"\xa9\x01"
        + b"\x00" * 8
        + b"\xb5\x01"
        + b"\x00" * 4
        + b"\xba\x01\x01z"
        + b"\x12\x02hi"
        + b"\x08\x02"
    )
    assert decode_unixfs(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "without Type"),
        (b"\x08\x09", "unknown UnixFS Type"),
        (b"\x08\x02\x08\x02", "twice"),
        (b"\x08\x02\x18\x01\x18\x01", "twice"),
        (b"\x08\x02\x1a\x00", "wire type 2, expected 0"),
        (b"\x08\x02\x10\x00", "wire type 0, expected 2"),
        (b"\x08\x02\x25\x00\x00\x00\x00", "blocksizes: wire type 5"),
        (b"\x08\x02\x22\x02\x80", "runs past"),
        (b"\x08\x02\x38\x80\x80\x80\x80\x10", "32 bits"),
        (b"\x08\x02\xa3\x01", "wire type 3"),
        (b"\x08\x02\xa9\x01\x00", "runs past"),
        (b"\x00\x00", "field number 0"),
    ],
)
def test_bad_unixfs_messages_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_unixfs(data)


# -- properties -------------------------------------------------------------------------


@given(nodes)
def test_node_round_trip(node: PBNode) -> None:
    data = encode_node(node)
    assert decode_node(data) == node
    assert encode_node(decode_node(data)) == data


@given(unixfs_messages)
def test_unixfs_round_trip(message: UnixFsData) -> None:
    assert decode_unixfs(encode_unixfs(message)) == message


@given(st.binary(max_size=200))
@example(b"\x12\x00")
@example(b"\x12\x26\x0a\x24" + CID_A.to_bytes())
def test_random_bytes_decode_canonically_or_raise_decode_error(data: bytes) -> None:
    try:
        node = decode_node(data)
    except DecodeError:
        return
    assert encode_node(node) == data  # whatever decodes is the canonical encoding


@given(st.binary(max_size=200))
def test_random_unixfs_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_unixfs(data)


@settings(max_examples=300)
@given(nodes, st.data())
def test_mutated_nodes_decode_canonically_or_raise_decode_error(
    node: PBNode, data: st.DataObject
) -> None:
    encoded = bytearray(encode_node(node))
    if not encoded:
        return
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(len(encoded) - 1, 0)))
        if kind == "flip" and encoded:
            encoded[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "insert":
            encoded.insert(pos, data.draw(st.integers(0, 255)))
        elif kind == "delete" and encoded:
            del encoded[pos]
        else:
            del encoded[pos:]
    try:
        decoded = decode_node(bytes(encoded))
    except DecodeError:
        return
    assert encode_node(decoded) == bytes(encoded)


@given(unixfs_messages, st.integers(0, 400), st.integers(0, 255))
def test_mutated_unixfs_raises_only_decode_error(message: UnixFsData, pos: int, value: int) -> None:
    encoded = bytearray(encode_unixfs(message))
    encoded[pos % len(encoded)] = value
    with contextlib.suppress(DecodeError):
        decode_unixfs(bytes(encoded))


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_node("text")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_unixfs(None)  # type: ignore[arg-type]
    assert decode_node(memoryview(b"\x0a\x01x")).data == b"x"
    assert decode_node(bytearray(b"\x0a\x01x")).data == b"x"


def test_link_to_an_unsupported_cid_is_a_decode_error() -> None:
    sha1_cid = b"\x01\x55\x11\x14" + b"\x00" * 20
    with pytest.raises(DecodeError, match="sha1"):
        decode_node(b"\x12" + _len(b"\x0a" + _len(sha1_cid)))
    assert decode_node(b"\x12" + _len(_link_bytes(CID_B))).links[0].hash == CID_B
