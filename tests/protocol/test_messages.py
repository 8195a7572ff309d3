"""Wire messages: every valid message round-trips; any other bytes are a RemoteProtocolError."""

from __future__ import annotations

import contextlib

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.errors import RemoteProtocolError
from p2pdoc.model.ids import PeerId
from p2pdoc.protocol.messages import (
    Ack,
    Auth,
    BlockData,
    BlocksEnd,
    Cancel,
    ErrorReply,
    GetBlocks,
    Hello,
    Message,
    Offer,
    OfferOutcome,
    OfferResult,
    Ping,
    PushStatus,
    Refuse,
    Welcome,
    decode_message,
    encode_message,
)

rids = st.integers(1, 2**63 - 1)
cids = st.builds(lambda c, d: Cid.of(c, d), st.sampled_from(Multicodec), st.binary(max_size=4))
peers = st.builds(lambda k: PeerId.from_ed25519(k), st.binary(min_size=32, max_size=32))
text = st.text(max_size=50)
blobs = st.binary(max_size=64)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Hello,
        st.integers(0, 2**16),
        st.binary(min_size=32, max_size=32),
        text,
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**16),
    ),
    st.builds(Auth, st.lists(blobs, max_size=4).map(tuple), blobs),
    st.builds(Refuse, text),
    st.just(Welcome()),
    st.builds(GetBlocks, rids, cids, st.lists(cids, min_size=1, max_size=5).map(tuple)),
    st.builds(
        Offer,
        rids,
        blobs,
        blobs,
        st.lists(st.tuples(cids, blobs), max_size=3).map(tuple),
        st.lists(peers, max_size=3).map(tuple),
    ),
    st.builds(PushStatus, rids, blobs),
    st.builds(Ping, rids),
    st.builds(Cancel, rids),
    st.builds(BlockData, rids, cids, blobs),
    st.builds(BlocksEnd, rids, st.lists(cids, max_size=3).map(tuple)),
    st.builds(
        lambda rid, r, s: OfferResult(rid, OfferOutcome.DELIVERED, r, "", s),
        rids,
        blobs,
        st.none() | blobs,
    ),
    st.builds(lambda rid, why: OfferResult(rid, OfferOutcome.REJECTED, None, why), rids, text),
    st.builds(Ack, rids),
    st.builds(ErrorReply, rids, text, text),
)  # fmt: skip


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(data)


@settings(max_examples=1000)
@given(messages, st.data())
def test_mutated_messages_decode_validly_or_fail_cleanly(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(encode_message(message))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_message(bytes(raw))
    except RemoteProtocolError:
        return
    assert decode_message(encode_message(decoded)) == decoded


@given(
    st.lists(
        st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=8) | st.text(max_size=8) | st.none(),
        max_size=8,
    )
)
def test_arrays_of_any_values_are_checked_field_by_field(fields: list[object]) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(msgpack.packb(fields))


def test_a_huge_declared_length_does_not_allocate() -> None:
    # bin32 header declaring 4 GB inside a small payload
    payload = (
        msgpack.packb([20, 1, Cid.of(Multicodec.RAW, b"").to_bytes()])[:-1]
        + b"\xc6\xff\xff\xff\xff"
    )
    try:
        decode_message(payload)
    except RemoteProtocolError:
        return
    raise AssertionError("a truncated 4 GB field decoded")
