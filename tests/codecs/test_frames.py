"""Wire frames: any split of a valid stream parses the same; oversized headers fail fast."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pdoc.codecs.frames import FrameDecoder, encode_frame
from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded


@given(st.lists(st.binary(max_size=300), max_size=20), st.data())
def test_any_split_parses_the_same(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert out == payloads
    assert decoder.at_boundary()


def test_oversized_header_rejected_before_payload_arrives() -> None:
    decoder = FrameDecoder(max_frame_size=1000)
    with pytest.raises(LimitExceeded) as info:
        decoder.feed(b"\xff\xff\xff\xff")
    assert info.value.size == 2**32 - 1
    assert decoder.buffered == 4
    with pytest.raises(DecodeError):
        decoder.feed(b"more")


def test_encode_refuses_oversized_payload() -> None:
    with pytest.raises(LimitExceeded):
        encode_frame(b"x" * 11, max_frame_size=10)


def test_partial_frame_is_not_at_boundary() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"abc")[:5]) == []
    assert not decoder.at_boundary()


@given(st.binary(max_size=2000))
def test_random_bytes_give_frames_or_limit_error(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_size=256)
    try:
        frames = decoder.feed(data)
    except LimitExceeded:
        return
    assert all(len(f) <= 256 for f in frames)
    assert decoder.buffered <= 4 + 256


@pytest.mark.parametrize("size", [0, -1, 1 << 32])
def test_a_decoder_limit_outside_the_header_range_is_invalid(size: int) -> None:
    with pytest.raises(InvalidValue):
        FrameDecoder(max_frame_size=size)
