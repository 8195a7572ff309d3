"""MemoryRouter's fault model and determinism (virtual time throughout)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from p2pdoc.errors import InvalidValue, NetworkError, PeerUnreachable
from p2pdoc.model.ids import PeerId
from p2pdoc.network.memory import (
    Faults,
    MemoryNetwork,
    MemoryRouter,
    RouterStats,
    _MemoryStream,
    memory_addr,
)
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
        {"duplicate_probability": 1.5},
        {"duplicate_probability": -0.1},
        {"duplicate_probability": "0.5"},
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


# -- duplicated streams -------------------------------------------------------------------

SINK = "/test/sink/1"


def is_replica(stream: trio.abc.Stream) -> bool:
    """Whether a handler's stream is a replica (the router's own bookkeeping)."""
    assert isinstance(stream, _MemoryStream)
    return stream._conn.replica is not None


async def test_replica_receives_exactly_the_originals_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(
        3, Faults(latency=0.01, jitter=0.02, duplicate_probability=1.0), chunk_size=4096
    )
    payload = random.Random(5).randbytes(200_000)
    received: dict[bool, bytes] = {}
    both_done = trio.Event()

    async def collect(peer: PeerId, stream: trio.abc.Stream) -> None:
        assert peer == a.local_peer  # the replica comes "from" the dialler too
        received[is_replica(stream)] = await read_all(stream)
        if len(received) == 2:
            both_done.set()

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler(SINK, collect)
        know(a, b)
        stream = await a.open_stream(b.local_peer, SINK)
        for offset in range(0, len(payload), 30_001):  # uneven writes across chunk bounds
            await stream.send_all(payload[offset : offset + 30_001])
        await stream.aclose()
        await both_done.wait()
        assert received == {False: payload, True: payload}
        assert router.stats.replicas == 1 and router.stats.replicas_broken == 0
        assert router._connections == set(a._conns[b.local_peer])  # the replica retired
        assert a.connected_peers() == {b.local_peer}  # replicas are not connections
        nursery.cancel_scope.cancel()


async def test_a_stream_opened_by_the_connections_listener_is_replicated_to_the_dialler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(8, Faults(latency=0.01))
    received: list[tuple[PeerId, bytes, bool]] = []

    async def collect(peer: PeerId, stream: trio.abc.Stream) -> None:
        received.append((peer, await read_all(stream), is_replica(stream)))

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        a.set_handler(SINK, collect)
        know(a, b)
        know(b, a)
        await ping(a, b.local_peer)  # a dials b; b now opens its stream on that connection
        router.faults = Faults(latency=0.01, duplicate_probability=1.0)
        stream = await b.open_stream(a.local_peer, SINK)
        await stream.send_all(b"from the listener")
        await stream.aclose()
        await wait_until(lambda: len(received) == 2)
        assert sorted(received, key=lambda r: r[2]) == [
            (b.local_peer, b"from the listener", False),
            (b.local_peer, b"from the listener", True),
        ]
        assert router.stats.connections == 1 and router.stats.replicas == 1
        nursery.cancel_scope.cancel()


async def test_replica_writes_never_reach_the_dialler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(4, Faults(latency=0.01, duplicate_probability=1.0))
    finished: list[bool] = []
    both_done = trio.Event()

    async def answer(peer: PeerId, stream: trio.abc.Stream) -> None:
        question = await receive_exactly(stream, 5)
        # More than a stream buffer: a replica answer that went anywhere would block.
        reply = (b"replica:" if is_replica(stream) else b"original") + bytes(600_000)
        await stream.send_all(question + reply)
        finished.append(is_replica(stream))
        if len(finished) == 2:
            both_done.set()
        await stream.aclose()

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler("/test/answer/1", answer)
        know(a, b)
        stream = await a.open_stream(b.local_peer, "/test/answer/1")
        await stream.send_all(b"hello")
        reply = await read_all(stream)
        assert reply == b"hello" + b"original" + bytes(600_000)  # one answer, the original's
        await both_done.wait()
        assert sorted(finished) == [False, True]
        await stream.aclose()
        assert router.stats.replicas == 1
        nursery.cancel_scope.cancel()


async def test_a_stalled_replica_breaks_without_blocking_the_original(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(5, Faults(latency=0.01, duplicate_probability=1.0))
    payload = random.Random(6).randbytes(3 * router.stream_buffer)
    original: list[bytes] = []
    replica_outcome: list[str] = []
    replica_done = trio.Event()
    resume = trio.Event()

    async def handler(peer: PeerId, stream: trio.abc.Stream) -> None:
        if not is_replica(stream):
            original.append(await read_all(stream))
            return
        await resume.wait()  # a handler that does not read
        try:
            await read_all(stream)
            replica_outcome.append("complete")
        except trio.BrokenResourceError:
            replica_outcome.append("broken")
        replica_done.set()

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler(SINK, handler)
        know(a, b)
        stream = await a.open_stream(b.local_peer, SINK)
        with trio.fail_after(5):  # virtual: 3 buffers at 10 ms a round trip, never blocked
            await stream.send_all(payload)
            await stream.aclose()
        assert router.stats.replicas_overrun == 1 and router.stats.replicas_broken == 1
        resume.set()
        await replica_done.wait()
        assert replica_outcome == ["broken"]
        await wait_until(lambda: bool(original))
        assert original == [payload]
        assert router.stats.broken_connections == 0  # the original's connection is intact
        nursery.cancel_scope.cancel()


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_partition_and_take_down_break_replicas(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(6, Faults(latency=0.01, duplicate_probability=1.0))
    outcomes: list[tuple[bool, str]] = []

    async def wait(peer: PeerId, stream: trio.abc.Stream) -> None:
        try:
            await read_all(stream)
            outcomes.append((is_replica(stream), "eof"))
        except trio.BrokenResourceError:
            outcomes.append((is_replica(stream), "broken"))

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler("/test/wait/1", wait)
        know(a, b)
        stream = await a.open_stream(b.local_peer, "/test/wait/1")
        await stream.send_all(b"some")
        await trio.sleep(0.1)
        router.partition([a.local_peer], [b.local_peer])
        await wait_until(lambda: len(outcomes) == 2)
        assert sorted(outcomes) == [(False, "broken"), (True, "broken")]
        assert router.stats.replicas_broken == 1 and router._connections == set()
        router.heal()
        outcomes.clear()
        stream = await a.open_stream(b.local_peer, "/test/wait/1")
        await stream.send_all(b"more")
        await trio.sleep(0.1)
        router.take_down(a.local_peer)
        await wait_until(lambda: len(outcomes) == 2)
        assert sorted(outcomes) == [(False, "broken"), (True, "broken")]
        assert router.stats.replicas == 2 and router.stats.replicas_broken == 2
        nursery.cancel_scope.cancel()


async def test_resets_hit_replicas_and_spare_their_originals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    router = MemoryRouter(7, Faults(latency=0.01, reset_probability=0.3, duplicate_probability=1.0))
    outcomes: dict[str, dict[bool, str]] = {}

    async def wait(peer: PeerId, stream: trio.abc.Stream) -> None:
        replica = is_replica(stream)
        try:
            data = (await read_all(stream)).decode()
            outcomes.setdefault(data, {})[replica] = "eof"
        except trio.BrokenResourceError:
            outcomes.setdefault(f"? {len(outcomes)}", {})[replica] = "broken"

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler("/test/wait/1", wait)
        know(a, b)
        for number in range(20):
            try:
                stream = await a.open_stream(b.local_peer, "/test/wait/1")
                await stream.send_all(b"%d" % number)
                await stream.aclose()
            except (PeerUnreachable, trio.BrokenResourceError):
                pass
            await trio.sleep(0.1)  # one stream at a time: a reset breaks only its own
        # A reset drawn for a replica's chunk breaks the replica alone.
        spared = [
            n for n, seen in outcomes.items() if seen.get(False) == "eof" and True not in seen
        ]
        assert spared and router.stats.replicas_broken >= len(spared)
        # Each spared original's replica broke on a reset of its own path.
        resets = router.stats.random_resets
        assert resets >= router.stats.broken_connections + len(spared)
        nursery.cancel_scope.cancel()


async def _replica_scenario(
    seed: int, probability: float
) -> tuple[list[tuple[float, str, bool]], RouterStats]:
    """Forty streams, each carrying its number; returns which handler saw what, when."""
    router = MemoryRouter(
        seed, Faults(latency=0.01, jitter=0.03, duplicate_probability=probability)
    )
    seen: list[tuple[float, str, bool]] = []
    start_time = trio.current_time()

    async def record(peer: PeerId, stream: trio.abc.Stream) -> None:
        data = await read_all(stream)
        seen.append((trio.current_time() - start_time, data.decode(), is_replica(stream)))

    async with bounded_nursery() as nursery:
        a, b = await start(nursery, router, 1), await start(nursery, router, 2)
        b.set_handler(SINK, record)
        know(a, b)

        async def send(stream: trio.abc.Stream, number: int) -> None:
            await stream.send_all(b"stream %d" % number)
            await stream.aclose()

        async with trio.open_nursery() as inner:
            for number in range(40):
                # Opened in order (stream numbers are part of the seeded names), sent at once.
                stream = await a.open_stream(b.local_peer, SINK)
                inner.start_soon(send, stream, number)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    return sorted(seen), router.stats


def run_replicas(
    seed: int, probability: float
) -> tuple[list[tuple[float, str, bool]], RouterStats]:
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(_replica_scenario, seed, probability, clock=clock)


def test_same_seed_same_replicas() -> None:
    first, first_stats = run_replicas(42, 0.3)
    second, second_stats = run_replicas(42, 0.3)
    other, _ = run_replicas(43, 0.3)
    assert first == second and first_stats == second_stats
    replicated = [what for what in first if what[2]]
    assert 3 <= len(replicated) <= 30 and len(first) == 40 + len(replicated)
    assert {what[1] for what in replicated} < {what[1] for what in first}
    assert other != first


def test_probability_zero_never_replicates() -> None:
    seen, stats = run_replicas(42, 0.0)
    assert len(seen) == 40 and not any(what[2] for what in seen)
    assert stats.replicas == 0
