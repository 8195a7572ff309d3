"""The Network contract, checked on both implementations (see p2pdoc/network/base.py)."""

from __future__ import annotations

import hashlib
import logging
import random

import pytest
import trio
import trio.testing

from p2pdoc.errors import InvalidValue, PeerUnreachable
from p2pdoc.model.ids import PeerId
from p2pdoc.network.base import Network
from tests.network.conftest import Harness, echo, read_all, receive_exactly

ECHO = "/test/echo/1"


async def test_open_stream_and_echo(harness: Harness, clock: object) -> None:
    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, echo)
        stream = await a.open_stream(b.local_peer, ECHO)
        await stream.send_all(b"hello")
        assert await receive_exactly(stream, 5) == b"hello"
        await stream.aclose()
        assert a.connected_peers() == {b.local_peer}
        assert a.local_peer in b.connected_peers()


async def test_receive_of_less_than_one_byte_is_invalid(harness: Harness, clock: object) -> None:
    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, echo)
        stream = await a.open_stream(b.local_peer, ECHO)
        for bad in (0, -1):
            with pytest.raises(InvalidValue):
                await stream.receive_some(bad)
        await stream.send_all(b"still usable")
        assert await receive_exactly(stream, 12) == b"still usable"
        await stream.aclose()


async def test_handler_sees_the_authenticated_remote(harness: Harness, clock: object) -> None:
    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        c = await harness.node()
        c.add_addrs(b.local_peer, b.listen_addrs)
        seen: list[PeerId] = []

        async def record(peer: PeerId, stream: trio.abc.Stream) -> None:
            seen.append(peer)
            await stream.send_all(b"ok")
            await stream.aclose()

        b.set_handler(ECHO, record)
        for opener in (a, c):
            stream = await opener.open_stream(b.local_peer, ECHO)
            assert await read_all(stream) == b"ok"
            await stream.aclose()
        assert seen == [a.local_peer, c.local_peer]


async def test_many_streams_on_one_connection_concurrently(harness: Harness, clock: object) -> None:
    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, echo)
        results: dict[int, bytes] = {}

        async def exchange(index: int) -> None:
            payload = random.Random(index).randbytes(50_000 + index)
            stream = await a.open_stream(b.local_peer, ECHO)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, payload)
                results[index] = await receive_exactly(stream, len(payload))
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(exchange, index)
        for index in range(20):
            assert results[index] == random.Random(index).randbytes(50_000 + index)
        assert harness.connection_count(a, b.local_peer) == 1


async def test_large_transfer_arrives_intact(harness: Harness, clock: object) -> None:
    payload = random.Random(8).randbytes(8 * 1024 * 1024)

    async def digest(peer: PeerId, stream: trio.abc.Stream) -> None:
        size = int.from_bytes(await receive_exactly(stream, 8), "big")
        await stream.send_all(hashlib.sha256(await receive_exactly(stream, size)).digest())

    with trio.fail_after(harness.timeout * 2):
        a, b = await harness.pair()
        b.set_handler(ECHO, digest)
        stream = await a.open_stream(b.local_peer, ECHO)
        await stream.send_all(len(payload).to_bytes(8, "big"))
        view = memoryview(payload)
        for offset in range(0, len(payload), 700_001):  # odd sizes: not frame-aligned
            await stream.send_all(view[offset : offset + 700_001])
        assert await read_all(stream) == hashlib.sha256(payload).digest()
        await stream.aclose()


async def test_clean_end_of_stream_in_both_directions(harness: Harness, clock: object) -> None:
    got: list[bytes] = []
    done = trio.Event()

    async def reply_then_close(peer: PeerId, stream: trio.abc.Stream) -> None:
        got.append(await receive_exactly(stream, 4))
        await stream.send_all(b"pong")
        await stream.aclose()
        done.set()

    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, reply_then_close)
        stream = await a.open_stream(b.local_peer, ECHO)
        await stream.send_all(b"ping")
        assert await read_all(stream) == b"pong"
        assert await stream.receive_some() == b""  # stays at end of stream
        await done.wait()
        assert got == [b"ping"]
        # The peer closed: our sends now fail as broken, never silently vanish.
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(1000):
                await stream.send_all(b"x" * 1000)
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()


async def test_sender_close_delivers_everything_then_eof(harness: Harness, clock: object) -> None:
    payload = random.Random(3).randbytes(300_000)
    received: list[bytes] = []
    done = trio.Event()

    async def collect(peer: PeerId, stream: trio.abc.Stream) -> None:
        received.append(await read_all(stream))
        done.set()

    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, collect)
        stream = await a.open_stream(b.local_peer, ECHO)
        await stream.send_all(payload)
        await stream.aclose()
        await done.wait()
    assert received == [payload]


async def test_unknown_protocol_is_refused(harness: Harness, clock: object) -> None:
    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, echo)
        with pytest.raises(PeerUnreachable, match="/test/unknown/1"):
            await a.open_stream(b.local_peer, "/test/unknown/1")
        # The connection survives the refusal.
        stream = await a.open_stream(b.local_peer, ECHO)
        await stream.send_all(b"still here")
        assert await receive_exactly(stream, 10) == b"still here"
        await stream.aclose()


async def test_bad_protocol_names_are_invalid(harness: Harness, clock: object) -> None:
    a, b = await harness.pair()
    for bad in ("", "no-slash", "/with space", "/bad\n"):
        with pytest.raises(InvalidValue):
            a.set_handler(bad, echo)
        with pytest.raises(InvalidValue):
            await a.open_stream(b.local_peer, bad)


async def test_unreachable_peer(harness: Harness, clock: object) -> None:
    with trio.fail_after(harness.timeout):
        a = await harness.node()
        stranger = harness.make()
        with pytest.raises(PeerUnreachable, match="no known address"):
            await a.open_stream(stranger.local_peer, ECHO)
        # A peer that served once and stopped: its address no longer answers.
        async with trio.open_nursery() as nursery:
            gone = await harness.start(harness.make(), nursery)
            a.add_addrs(gone.local_peer, gone.listen_addrs)
            nursery.cancel_scope.cancel()
        with pytest.raises(PeerUnreachable, match="unreachable"):
            await a.open_stream(gone.local_peer, ECHO)
        with pytest.raises(PeerUnreachable):
            await a.open_stream(a.local_peer, ECHO)
        assert a.connected_peers() == set()


async def test_not_serving_network_cannot_open_streams(harness: Harness, clock: object) -> None:
    b = await harness.node()
    idle = harness.make()
    idle.add_addrs(b.local_peer, b.listen_addrs)
    with pytest.raises(PeerUnreachable, match="not serving"):
        await idle.open_stream(b.local_peer, ECHO)


async def test_disconnect_breaks_open_streams(harness: Harness, clock: object) -> None:
    outcome: list[str] = []
    handler_done = trio.Event()

    async def wait_for_data(peer: PeerId, stream: trio.abc.Stream) -> None:
        try:
            await stream.receive_some()
            outcome.append("data")
        except trio.BrokenResourceError:
            outcome.append("broken")
        finally:
            handler_done.set()

    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, wait_for_data)
        stream = await a.open_stream(b.local_peer, ECHO)
        await a.disconnect(b.local_peer)
        assert a.connected_peers() == set()
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"lost")
        await handler_done.wait()
        assert outcome == ["broken"]
        await stream.aclose()
        # Disconnecting again is a no-op; a new stream reconnects.
        await a.disconnect(b.local_peer)
        b.set_handler(ECHO, echo)
        again = await a.open_stream(b.local_peer, ECHO)
        await again.send_all(b"back")
        assert await receive_exactly(again, 4) == b"back"
        await again.aclose()


async def test_serve_cancellation_closes_everything(harness: Harness, clock: object) -> None:
    handler_state: list[str] = []
    handler_waiting = trio.Event()

    async def park(peer: PeerId, stream: trio.abc.Stream) -> None:
        handler_waiting.set()
        try:
            await trio.sleep_forever()
        finally:
            handler_state.append("cancelled")

    with trio.fail_after(harness.timeout):
        a = await harness.node()
        async with trio.open_nursery() as nursery:
            b = await harness.start(harness.make(), nursery)
            b.set_handler(ECHO, park)
            a.add_addrs(b.local_peer, b.listen_addrs)
            stream = await a.open_stream(b.local_peer, ECHO)
            await handler_waiting.wait()
            nursery.cancel_scope.cancel()
        assert handler_state == ["cancelled"]
        assert b.connected_peers() == set()
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        with pytest.raises(PeerUnreachable):
            await a.open_stream(b.local_peer, ECHO)


async def test_back_pressure_blocks_a_sender_whose_peer_does_not_read(
    harness: Harness, clock: object
) -> None:
    total = 32 * 1024 * 1024
    piece = bytes(64 * 1024)
    release = trio.Event()
    received: list[int] = []
    reader_done = trio.Event()
    accepted = 0
    sender_done = trio.Event()

    async def slow_reader(peer: PeerId, stream: trio.abc.Stream) -> None:
        await release.wait()
        received.append(len(await read_all(stream)))
        reader_done.set()

    async def sender(stream: trio.abc.Stream) -> None:
        nonlocal accepted
        for _ in range(total // len(piece)):
            await stream.send_all(piece)
            accepted += len(piece)
        await stream.aclose()
        sender_done.set()

    with trio.fail_after(harness.timeout * 2):
        a, b = await harness.pair()
        b.set_handler(ECHO, slow_reader)
        stream = await a.open_stream(b.local_peer, ECHO)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender, stream)
            # Nothing signals "the sender is blocked": give it ample time to run ahead (an
            # unbounded buffer would take all 32 MB in a fraction of this), then check.
            await trio.sleep(1.0)
            assert not sender_done.is_set()
            assert 0 < accepted <= harness.window_bound
            release.set()
        assert accepted == total
        await reader_done.wait()
        assert received == [total]


async def test_cancelled_receive_loses_no_data(harness: Harness, clock: object) -> None:
    go = trio.Event()

    async def late_sender(peer: PeerId, stream: trio.abc.Stream) -> None:
        await go.wait()
        await stream.send_all(b"0123456789")
        await stream.aclose()

    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, late_sender)
        stream = await a.open_stream(b.local_peer, ECHO)
        async with trio.open_nursery() as nursery:

            async def receive() -> None:
                await stream.receive_some()
                raise AssertionError("nothing was sent yet")

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        go.set()
        assert await read_all(stream) == b"0123456789"
        await stream.aclose()


async def test_closing_a_stream_wakes_its_blocked_receiver(harness: Harness, clock: object) -> None:
    async def silent(peer: PeerId, stream: trio.abc.Stream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(harness.timeout):
        a, b = await harness.pair()
        b.set_handler(ECHO, silent)
        stream = await a.open_stream(b.local_peer, ECHO)

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await stream.aclose()


async def test_handler_exception_closes_only_that_stream(
    harness: Harness, clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    async def fussy(peer: PeerId, stream: trio.abc.Stream) -> None:
        data = await stream.receive_some()
        if data == b"boom":
            raise ValueError("handler failure on purpose")
        await stream.send_all(data)

    with trio.fail_after(harness.timeout), caplog.at_level(logging.ERROR):
        a, b = await harness.pair()
        b.set_handler(ECHO, fussy)
        good = await a.open_stream(b.local_peer, ECHO)
        bad = await a.open_stream(b.local_peer, ECHO)
        await bad.send_all(b"boom")
        assert await read_all(bad) == b""
        await good.send_all(b"fine")
        assert await receive_exactly(good, 4) == b"fine"
        third = await a.open_stream(b.local_peer, ECHO)
        await third.send_all(b"more")
        assert await receive_exactly(third, 4) == b"more"
    assert any("handler failure on purpose" in str(r.exc_info) for r in caplog.records)


async def test_serve_runs_once(harness: Harness, clock: object) -> None:
    from p2pdoc.errors import NetworkError

    net: Network = await harness.node()
    with pytest.raises(NetworkError):
        await net.serve()


async def test_stream_passes_trio_generic_checks(harness: Harness, clock: object) -> None:
    streams: trio.MemorySendChannel[trio.abc.Stream]
    streams, incoming = trio.open_memory_channel[trio.abc.Stream](100)

    async def hand_over(peer: PeerId, stream: trio.abc.Stream) -> None:
        await streams.send(stream)
        await trio.sleep_forever()

    a, b = await harness.pair()
    b.set_handler(ECHO, hand_over)

    async def maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        mine = await a.open_stream(b.local_peer, ECHO)
        return mine, await incoming.receive()

    async def clogged() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        mine, theirs = await maker()
        await harness.clog(mine)
        await harness.clog(theirs)
        return mine, theirs

    with trio.fail_after(harness.timeout * 4):
        await trio.testing.check_two_way_stream(maker, clogged)
