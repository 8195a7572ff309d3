"""Sessions over trio memory streams: admission, pipelining, block exchange, limits, bad peers."""

from __future__ import annotations

import traceback

import msgpack
import pytest
import trio
import trio.testing

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.codecs.frames import FrameDecoder, encode_frame
from p2pdoc.errors import (
    AdmissionRefused,
    ConnectionLost,
    ContentMismatch,
    LimitExceeded,
    PeerIdMismatch,
    ProtocolError,
    RemoteProtocolError,
    UnknownIssuer,
)
from p2pdoc.protocol.messages import (
    BlockData,
    BlocksEnd,
    GetBlocks,
    Hello,
    Offer,
    OfferOutcome,
    OfferResult,
    Ping,
    Refuse,
    decode_message,
    encode_message,
)
from p2pdoc.protocol.session import Session, SessionLimits, establish

from .helpers import RecordingHandler, TestGatekeeper, TestIdentity, session_pair

GOV = "000.00.00.G22"
PROVINCE = "000.00.00.H49"


@pytest.fixture
def ids() -> tuple[TestIdentity, TestIdentity]:
    return TestIdentity(GOV), TestIdentity(PROVINCE)


async def run_pair(a: Session, b: Session, nursery: trio.Nursery) -> None:
    await nursery.start(a.run)
    await nursery.start(b.run)


async def test_admission_exchanges_verified_agency_codes(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    with trio.fail_after(5):
        sa, sb = await session_pair(a, b)
    assert sa.peer.agency == b.agency and sa.peer.peer == b.peer
    assert sb.peer.agency == a.agency and sb.peer.peer == a.peer


async def handshake_outcomes(
    a: TestIdentity, b: TestIdentity, gatekeeper: TestGatekeeper
) -> dict[str, BaseException | Session]:
    """Run admission on both ends independently and record what each end saw."""
    stream_a, stream_b = trio.testing.memory_stream_pair()
    outcomes: dict[str, BaseException | Session] = {}

    async def side(
        name: str, stream: trio.abc.Stream, me: TestIdentity, other: TestIdentity
    ) -> None:
        try:
            outcomes[name] = await establish(
                stream,
                local=me.peer,
                remote=other.peer,
                credentials=me,
                gatekeeper=gatekeeper,
                handler=RecordingHandler(),
            )
        except Exception as exc:
            outcomes[name] = exc

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "a", stream_a, a, b)
            nursery.start_soon(side, "b", stream_b, b, a)
    return outcomes


async def test_uncertified_peer_is_refused_and_told_why(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    outcomes = await handshake_outcomes(a, b, TestGatekeeper(refuse={PROVINCE}))
    assert isinstance(outcomes["a"], UnknownIssuer)  # A refuses B's chain...
    assert isinstance(outcomes["b"], AdmissionRefused)  # ...and B learns why
    assert "unknown-issuer" in str(outcomes["b"])


async def test_peer_presenting_another_agencys_chain_is_refused(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    impostor = TestIdentity(PROVINCE)
    impostor.chain = b.chain  # B's certificate, impostor's key and peer ID
    outcomes = await handshake_outcomes(a, impostor, TestGatekeeper())
    assert isinstance(outcomes["a"], PeerIdMismatch)
    assert isinstance(outcomes["b"], AdmissionRefused)


async def test_pipelined_offers_are_matched_to_their_answers(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    handler = RecordingHandler()
    sa, sb = await session_pair(a, b, handler_b=handler)
    results: dict[int, OfferResult] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)

            async def offer(i: int) -> None:
                results[i] = await sa.offer(f"m{i}".encode(), b"s")

            async with trio.open_nursery() as offers:
                for i in range(300):  # more than max_in_flight: callers wait for slots
                    offers.start_soon(offer, i)
            nursery.cancel_scope.cancel()
    assert len(handler.offers) == 300
    assert all(results[i].receipt == f"receipt:m{i}".encode() for i in range(300))


async def test_requests_flow_both_ways_on_one_stream(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    ha, hb = RecordingHandler(), RecordingHandler()
    sa, sb = await session_pair(a, b, handler_a=ha, handler_b=hb)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)
            await sa.push_status(b"from-a")
            await sb.push_status(b"from-b")
            assert await sa.ping() >= 0
            nursery.cancel_scope.cancel()
    assert ha.statuses == [b"from-b"] and hb.statuses == [b"from-a"]


async def test_block_exchange_verifies_and_reports_missing(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    blocks = {Cid.of(Multicodec.RAW, bytes([i]) * 1000): bytes([i]) * 1000 for i in range(20)}
    absent = Cid.of(Multicodec.RAW, b"absent")
    sa, sb = await session_pair(a, b, handler_b=RecordingHandler(blocks))
    root = Cid.of(Multicodec.DAG_CBOR, b"root")
    got = {}
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)
            async with sa.get_blocks(root, [*blocks, absent]) as stream:
                async for cid, data in stream:
                    got[cid] = data
            nursery.cancel_scope.cancel()
    assert got == blocks
    assert stream.missing == (absent,)


class RawPeer:
    """The far end of a session driven by hand, to send what a well-behaved peer never would."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(encode_frame(payload))


async def session_with_raw_peer(
    a: TestIdentity, b: TestIdentity, limits: SessionLimits = SessionLimits()
) -> tuple[Session, RawPeer, Session]:
    """A real session for A; B admitted normally, then its stream is driven by hand."""
    sa, sb = await session_pair(a, b, limits=limits)
    return sa, RawPeer(sb._stream), sb


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # not msgpack
        msgpack.packb([99, 1]),  # unknown type
        msgpack.packb([13, 0]),  # request id 0 outside the handshake
        msgpack.packb([23, 7]),  # answer to a request never made
        msgpack.packb([1, 0, 1, b"x" * 32, "agent", 1 << 20, 8]),  # Hello after admission
        msgpack.packb([10, 1, b"\x01", []]),  # bad CID
        msgpack.packb({"type": 13}),  # a map, not an array
    ],
)
async def test_malformed_frames_end_only_that_session(
    ids: tuple[TestIdentity, TestIdentity], payload: bytes
) -> None:
    a, b = ids
    sa, raw, _ = await session_with_raw_peer(a, b)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sa.run)
            await raw.send(payload)
            await sa.wait_closed()
    assert isinstance(sa.close_reason, RemoteProtocolError)


async def test_oversized_frame_header_ends_session_without_buffering(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    sa, raw, _ = await session_with_raw_peer(a, b)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sa.run)
            await raw.stream.send_all(b"\xff\xff\xff\xf0")
            await sa.wait_closed()
    assert isinstance(sa.close_reason, LimitExceeded)


async def test_stream_ending_inside_a_frame_is_a_protocol_error(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    sa, raw, _ = await session_with_raw_peer(a, b)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sa.run)
            await raw.stream.send_all(encode_frame(encode_message(Ping(1)))[:-1])
            await raw.stream.aclose()
            await sa.wait_closed()
    assert isinstance(sa.close_reason, RemoteProtocolError)


async def test_peer_over_its_in_flight_limit_is_cut_off(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    limits = SessionLimits(max_in_flight=4)
    handler = RecordingHandler()
    handler.offer_gate = trio.Event()  # offers hang, so they stay in flight
    stream_a, stream_b = trio.testing.memory_stream_pair()
    gate = TestGatekeeper()
    out = {}

    async def side_a() -> None:
        out["a"] = await establish(
            stream_a,
            local=a.peer,
            remote=b.peer,
            credentials=a,
            gatekeeper=gate,
            handler=handler,
            limits=limits,
        )

    async def side_b() -> None:
        out["b"] = await establish(
            stream_b,
            local=b.peer,
            remote=a.peer,
            credentials=b,
            gatekeeper=gate,
            handler=RecordingHandler(),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side_a)
        nursery.start_soon(side_b)
    raw = RawPeer(stream_b)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(out["a"].run)
            for rid in range(1, 6):
                await raw.send(encode_message(Offer(rid, b"m", b"s")))
            await out["a"].wait_closed()
    assert "in flight" in str(out["a"].close_reason)


async def test_unrequested_block_ends_session(ids: tuple[TestIdentity, TestIdentity]) -> None:
    a, b = ids
    sa, raw, _ = await session_with_raw_peer(a, b)
    wanted = Cid.of(Multicodec.RAW, b"wanted")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sa.run)

            async def fetch() -> None:
                with pytest.raises(RemoteProtocolError):
                    async with sa.get_blocks(wanted, [wanted]) as stream:
                        async for _ in stream:
                            pass

            nursery.start_soon(fetch)
            await trio.testing.wait_all_tasks_blocked()
            await raw.send(encode_message(BlockData(1, Cid.of(Multicodec.RAW, b"other"), b"other")))
            await sa.wait_closed()
    assert "unrequested" in str(sa.close_reason)


async def test_corrupt_block_ends_session(ids: tuple[TestIdentity, TestIdentity]) -> None:
    a, b = ids
    sa, raw, _ = await session_with_raw_peer(a, b)
    wanted = Cid.of(Multicodec.RAW, b"wanted")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sa.run)

            async def fetch() -> None:
                with pytest.raises(ContentMismatch):
                    async with sa.get_blocks(wanted, [wanted]) as stream:
                        async for _ in stream:
                            pass

            nursery.start_soon(fetch)
            await trio.testing.wait_all_tasks_blocked()
            await raw.send(encode_message(BlockData(1, wanted, b"not it")))
            await sa.wait_closed()
    assert isinstance(sa.close_reason, ContentMismatch)


async def test_late_answer_to_abandoned_request_is_ignored(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    handler = RecordingHandler()
    handler.offer_gate = trio.Event()
    sa, sb = await session_pair(a, b, handler_b=handler)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)
            with trio.move_on_after(0.05):
                await sa.offer(b"slow", b"s")
            handler.offer_gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert await sa.ping() >= 0  # still alive after the late OfferResult
            assert not sa.closed
            nursery.cancel_scope.cancel()


async def test_waiting_requests_fail_when_the_session_breaks(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    handler = RecordingHandler()
    handler.offer_gate = trio.Event()
    sa, sb = await session_pair(a, b, handler_b=handler)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)

            async def offer() -> None:
                with pytest.raises(ConnectionLost):
                    await sa.offer(b"m", b"s")

            nursery.start_soon(offer)
            await trio.testing.wait_all_tasks_blocked()
            sb.close()
            await sa.wait_closed()


async def test_calls_on_a_closed_session_do_not_pile_up_tracebacks(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    """Every call on a closed session raises its one close reason: that object must not
    collect the frames of every raise (and keep their locals alive)."""
    a, b = ids
    sa, sb = await session_pair(a, b)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)
            sb.close()
            await sa.wait_closed()
            depths = []
            for _ in range(20):
                with pytest.raises(ConnectionLost) as caught:
                    await sa.offer(b"m", b"s")
                depths.append(len(traceback.extract_tb(caught.value.__traceback__)))
            assert caught.value is sa.close_reason
            assert depths[-1] == depths[0]


async def test_handler_error_becomes_error_reply_and_session_goes_on(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids

    class Failing(RecordingHandler):
        async def offer(self, session: Session, request: Offer) -> OfferResult:
            raise RemoteProtocolError("not a recipient")

    sa, sb = await session_pair(a, b, handler_b=Failing())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)
            with pytest.raises(ProtocolError, match="not a recipient"):
                await sa.offer(b"m", b"s")
            assert await sa.ping() >= 0
            nursery.cancel_scope.cancel()


async def test_cancelled_block_request_still_ends_cleanly(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    blocks = {Cid.of(Multicodec.RAW, bytes([i])): bytes([i]) for i in range(100)}
    sa, sb = await session_pair(a, b, handler_b=RecordingHandler(blocks))
    root = Cid.of(Multicodec.DAG_CBOR, b"root")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await run_pair(sa, sb, nursery)
            async with sa.get_blocks(root, list(blocks)) as stream:
                async for _ in stream:
                    break
            # The rest of the answer is drained silently; the session stays usable.
            assert await sa.ping() >= 0
            await trio.testing.wait_all_tasks_blocked()
            assert not sa.closed and not sb.closed
            nursery.cancel_scope.cancel()


def test_offer_result_wire_roundtrip() -> None:
    from p2pdoc.protocol.messages import decode_message

    for message in [
        OfferResult(5, OfferOutcome.DELIVERED, b"r", ""),
        OfferResult(9, OfferOutcome.DELIVERED, b"r", "", b"arrival status"),
        OfferResult(6, OfferOutcome.REJECTED, None, "not a recipient"),
        BlocksEnd(7, (Cid.of(Multicodec.RAW, b"x"),)),
        GetBlocks(8, Cid.of(Multicodec.DAG_CBOR, b"r"), (Cid.of(Multicodec.RAW, b"x"),)),
    ]:
        assert decode_message(encode_message(message)) == message


async def test_hello_with_another_version_is_refused_with_a_reason(
    ids: tuple[TestIdentity, TestIdentity],
) -> None:
    a, b = ids
    stream_a, stream_b = trio.testing.memory_stream_pair()
    decoder = FrameDecoder()
    frames: list[bytes] = []

    async def other_version() -> None:
        hello = Hello(2, b"n" * 32, "future/2.0", 1 << 20, 8)
        await stream_b.send_all(encode_frame(encode_message(hello)))
        while chunk := await stream_b.receive_some():
            frames.extend(decoder.feed(chunk))
            if len(frames) == 2:  # our Hello, then the refusal
                await stream_b.aclose()
                return

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_version)
            with pytest.raises(AdmissionRefused, match="version"):
                await establish(
                    stream_a,
                    local=a.peer,
                    remote=b.peer,
                    credentials=a,
                    gatekeeper=TestGatekeeper(),
                    handler=RecordingHandler(),
                )
    refusal = decode_message(frames[1])
    assert isinstance(refusal, Refuse)
    assert "unsupported protocol version 2" in refusal.reason
