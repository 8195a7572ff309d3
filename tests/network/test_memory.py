"""MemoryRouter's fault model and determinism (virtual time throughout)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from p2pdoc.errors import InvalidValue, NetworkError, PeerUnreachable
from p2pdoc.model.ids import PeerId
from p2pdoc.network.memory import Faults, MemoryNetwork, MemoryRouter, memory_addr
from tests.network.conftest import echo, read_all, receive_exactly

ECHO = "/test/echo/1"
VIRTUAL_TIMEOUT = 600.0
"""Virtual seconds: a deadlocked test jumps straight to this deadline and fails."""


@asynccontextmanager
async def bounded_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery under ``trio.fail_after``, so a test fails instead of hanging."""
    with trio.fail_after(VIRTUAL_TIMEOUT):
        async with trio.open_nursery() as nursery:
            yield nursery


def peer(n: int) -> PeerId:
    return PeerId.from_ed25519(hashlib.sha256(b"peer %d" % n).digest())


async def start(nursery: trio.Nursery, router: MemoryRouter, n: int) -> MemoryNetwork:
    net = MemoryNetwork(router, peer(n))
    net.set_handler(ECHO, echo)
    await nursery.start(net.serve)
    return net


def know(a: MemoryNetwork, *others: MemoryNetwork) -> None:
    for other in others:
        a.add_addrs(other.local_peer, other.listen_addrs)


async def ping(net: MemoryNetwork, target: PeerId, payload: bytes = b"x") -> bytes:
    stream = await net.open_stream(target, ECHO)
    await stream.send_all(payload)
    data = await receive_exactly(stream, len(payload))
    await stream.aclose()
    return data


def test_faults_are_validated() -> None:
    for bad in (
        {"latency": -1.0},
        {"jitter": -0.5},
        {"dial_latency": -2.0},
        {"bandwidth": 0.0},
        {"reset_probability": 1.5},
        {"reset_probability": -0.1},
    ):
        with pytest.raises(InvalidValue):
            Faults(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        MemoryRouter(1, stream_buffer=1000, chunk_size=4096)
    with pytest.raises(InvalidValue):
        MemoryRouter(1, chunk_size=0)


def test_addresses() -> None:
    router = MemoryRouter(1)
    net = MemoryNetwork(router, peer(1))
    assert net.listen_addrs == [memory_addr(peer(1))] == [f"/memory/{peer(1)}"]
    net.add_addrs(peer(2), [memory_addr(peer(2))])
    net.add_addrs(peer(2), [memory_addr(peer(2))])  # merging is idempotent
    assert net._addrs[peer(2)] == [memory_addr(peer(2))]
    for bad in (memory_addr(peer(3)), "/ip4/127.0.0.1/tcp/4001", "/memory/not-a-peer"):
        with pytest.raises(InvalidValue):
            net.add_addrs(peer(2), [bad])
    with pytest.raises(InvalidValue):
        net.add_addrs(peer(2), memory_addr(peer(2)))


async def test_latency_and_dial_latency_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(1, Faults(latency=0.05, dial_latency=0.1))
    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        know(a, b)
        t0 = trio.current_time()
        stream = await a.open_stream(b.local_peer, ECHO)
        assert trio.current_time() - t0 == pytest.approx(0.1 + 2 * 0.05)  # dial + negotiation
        t1 = trio.current_time()
        await stream.send_all(b"ping")
        assert await receive_exactly(stream, 4) == b"ping"
        assert trio.current_time() - t1 == pytest.approx(2 * 0.05)
        t2 = trio.current_time()
        await (await a.open_stream(b.local_peer, ECHO)).aclose()
        assert trio.current_time() - t2 == pytest.approx(2 * 0.05)  # no second dial
        nursery.cancel_scope.cancel()


async def test_bandwidth_limits_a_connection(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(1, Faults(latency=0.01, bandwidth=100_000))
    payload = random.Random(1).randbytes(1_000_000)
    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        collected: list[bytes] = []
        done = trio.Event()

        async def collect(peer: PeerId, stream: trio.abc.Stream) -> None:
            collected.append(await read_all(stream))
            done.set()

        b.set_handler("/test/sink/1", collect)
        know(a, b)
        stream = await a.open_stream(b.local_peer, "/test/sink/1")
        t0 = trio.current_time()
        await stream.send_all(payload)
        await stream.aclose()
        await done.wait()
        elapsed = trio.current_time() - t0
        assert collected == [payload]
        assert 10.0 <= elapsed <= 10.0 + 0.05  # 1 MB at 100 kB/s, plus one latency
        nursery.cancel_scope.cancel()


async def test_jitter_never_reorders_a_stream(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(5, Faults(latency=0.01, jitter=0.5), chunk_size=1024, stream_buffer=4096)
    payload = random.Random(2).randbytes(200_000)
    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        know(a, b)
        stream = await a.open_stream(b.local_peer, ECHO)
        received: list[bytes] = []

        async def send_in_pieces() -> None:
            for offset in range(0, len(payload), 3000):
                await stream.send_all(payload[offset : offset + 3000])

        async with trio.open_nursery() as inner:
            inner.start_soon(send_in_pieces)
            received.append(await receive_exactly(stream, len(payload)))
        assert received == [payload]
        nursery.cancel_scope.cancel()


async def test_partition_breaks_and_refuses_until_healed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(1, Faults(latency=0.01))
    async with bounded_nursery() as nursery:
        a, b, c = [await start(nursery, router, n) for n in (1, 2, 3)]
        know(a, b, c)
        know(c, a, b)
        stream = await a.open_stream(b.local_peer, ECHO)
        router.partition([a.local_peer], [b.local_peer])
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        with pytest.raises(PeerUnreachable, match="partitioned"):
            await a.open_stream(b.local_peer, ECHO)
        assert await ping(a, c.local_peer) == b"x"  # outside the cut: unaffected
        assert await ping(c, b.local_peer) == b"x"
        router.heal()
        assert await ping(a, b.local_peer) == b"x"
        with pytest.raises(InvalidValue):
            router.partition([a.local_peer], [a.local_peer, b.local_peer])
        nursery.cancel_scope.cancel()


async def test_take_down_and_bring_up(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(1, Faults(latency=0.01))
    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        know(a, b)
        know(b, a)
        stream = await a.open_stream(b.local_peer, ECHO)
        router.take_down(b.local_peer)
        assert router.is_down(b.local_peer)
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"lost")
        assert a.connected_peers() == set() == b.connected_peers()
        with pytest.raises(PeerUnreachable, match="peer is down"):
            await a.open_stream(b.local_peer, ECHO)
        with pytest.raises(PeerUnreachable, match="this node is down"):
            await b.open_stream(a.local_peer, ECHO)
        router.bring_up(b.local_peer)
        assert await ping(a, b.local_peer) == b"x"
        assert await ping(b, a.local_peer) == b"x"
        nursery.cancel_scope.cancel()


async def test_certain_reset_breaks_both_sides(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(1, Faults(latency=0.01))
    outcome: list[str] = []
    handler_done = trio.Event()

    async def wait(peer: PeerId, stream: trio.abc.Stream) -> None:
        try:
            outcome.append(repr(await stream.receive_some()))
        except trio.BrokenResourceError:
            outcome.append("broken")
        handler_done.set()

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler("/test/wait/1", wait)
        know(a, b)
        stream = await a.open_stream(b.local_peer, "/test/wait/1")
        router.faults = Faults(latency=0.01, reset_probability=1.0)
        await stream.send_all(b"doomed")  # accepted locally, lost in flight
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        await handler_done.wait()
        assert outcome == ["broken"]
        assert router.stats.random_resets == 1
        router.faults = Faults(latency=0.01)
        assert await ping(a, b.local_peer) == b"x"  # a new connection works
        assert router.stats.connections == 2
        nursery.cancel_scope.cancel()


async def test_concurrent_opens_share_one_dial(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(1, Faults(latency=0.01, dial_latency=0.2))
    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        know(a, b)
        async with trio.open_nursery() as inner:
            for _ in range(5):
                inner.start_soon(ping, a, b.local_peer)
        assert router.stats.dials == 1
        assert router.stats.connections == 1
        assert router.stats.streams == 5
        nursery.cancel_scope.cancel()


async def test_a_peer_id_serves_once_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    router = MemoryRouter(1)
    async with bounded_nursery() as nursery:
        a = await start(nursery, router, 1)
        async with trio.open_nursery() as first:
            old = await start(first, router, 2)
            with pytest.raises(NetworkError):
                await MemoryNetwork(router, peer(2)).serve()
            know(a, old)
            assert await ping(a, old.local_peer) == b"x"
            first.cancel_scope.cancel()
        # A restarted node: a new network for the same peer ID, reachable again.
        restarted = await start(nursery, router, 2)
        assert await ping(a, restarted.local_peer) == b"x"
        nursery.cancel_scope.cancel()


async def _lossy_scenario(seed: int) -> tuple[list[tuple[float, str, int, str]], object]:
    """Two clients send 60 messages each to an echo server over a lossy, jittery router,
    reopening a stream when a reset kills it. Returns the timeline and the router's stats."""
    router = MemoryRouter(
        seed,
        Faults(latency=0.01, jitter=0.02, bandwidth=2_000_000, reset_probability=0.03),
        chunk_size=4096,
    )
    trace: list[tuple[float, str, int, str]] = []
    start_time = trio.current_time()

    async def client(net: MemoryNetwork, server: PeerId, name: str) -> None:
        sizes = random.Random(name)
        stream: trio.abc.Stream | None = None
        for index in range(60):
            payload = bytes([index]) * sizes.randrange(1, 20_000)
            for _attempt in range(20):
                try:
                    if stream is None:
                        stream = await net.open_stream(server, ECHO)
                    await stream.send_all(payload)
                    assert await receive_exactly(stream, len(payload)) == payload
                    trace.append((trio.current_time() - start_time, name, index, "ok"))
                    break
                except (trio.BrokenResourceError, PeerUnreachable) as exc:
                    trace.append(
                        (trio.current_time() - start_time, name, index, type(exc).__name__)
                    )
                    if stream is not None:
                        await stream.aclose()
                    stream = None

    async with bounded_nursery() as nursery:
        server = await start(nursery, router, 10)
        clients = [await start(nursery, router, n) for n in (11, 12)]
        for net in clients:
            know(net, server)
        async with trio.open_nursery() as inner:
            inner.start_soon(client, clients[0], server.local_peer, "a")
            inner.start_soon(client, clients[1], server.local_peer, "b")
        nursery.cancel_scope.cancel()
    return trace, router.stats


def run_scenario(seed: int) -> tuple[list[tuple[float, str, int, str]], object]:
    # A fresh trio.run per scenario: each starts at virtual time 0, so times compare exactly.
    return trio.run(_lossy_scenario, seed, clock=trio.testing.MockClock(autojump_threshold=0))


def test_same_seed_same_outcome() -> None:
    first, first_stats = run_scenario(42)
    second, second_stats = run_scenario(42)
    other, _ = run_scenario(43)
    assert first == second
    assert first_stats == second_stats
    assert sum(1 for *_, what in first if what != "ok") >= 3  # the scenario does lose data
    assert sum(1 for *_, what in first if what == "ok") == 120
    assert other != first
