"""A harness that starts networks of either implementation for the conformance suite.

Memory networks run under ``MockClock(autojump_threshold=0)`` (virtual time: timeouts and
delays cost nothing); libp2p networks are real hosts on 127.0.0.1 under the real clock.
Each test that uses the harness also takes the ``clock`` fixture so pytest-trio installs it.
"""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdoc.model.ids import PeerId
from p2pdoc.network.base import Network
from p2pdoc.network.libp2p import Libp2pConfig, Libp2pNetwork
from p2pdoc.network.memory import Faults, MemoryNetwork, MemoryRouter

KINDS = ["memory", "libp2p"]


class Harness:
    """Makes and starts networks of one kind inside the test's nursery."""

    def __init__(self, kind: str, nursery: trio.Nursery) -> None:
        self.kind = kind
        self.nursery = nursery
        self.router = MemoryRouter(seed=7, faults=Faults(latency=0.002, jitter=0.001))
        # Generous for libp2p on a loaded 2-core machine; free under the virtual clock.
        self.timeout = 30.0

    def make(self) -> Network:
        if self.kind == "memory":
            return MemoryNetwork(self.router, PeerId.from_ed25519(os.urandom(32)))
        config = Libp2pConfig(dial_timeout=5.0, negotiate_timeout=5.0)
        return Libp2pNetwork(config, Ed25519PrivateKey.generate())

    async def start(self, net: Network, nursery: trio.Nursery | None = None) -> Network:
        await (nursery or self.nursery).start(net.serve)
        return net

    async def node(self) -> Network:
        return await self.start(self.make())

    async def pair(self) -> tuple[Network, Network]:
        """Two serving networks; the first knows the second's addresses."""
        a = await self.node()
        b = await self.node()
        a.add_addrs(b.local_peer, b.listen_addrs)
        return a, b

    def connection_count(self, net: Network, peer: PeerId) -> int:
        if isinstance(net, MemoryNetwork):
            return len(net._conns.get(peer, []))
        assert isinstance(net, Libp2pNetwork)
        conns = net._swarm.connections.get(net_peer_id(peer), [])
        return sum(1 for conn in conns if not conn.is_closed)

    @property
    def window_bound(self) -> int:
        """Most bytes a peer that never reads can make a sender give up (buffered)."""
        if self.kind == "memory":
            return self.router.stream_buffer + self.router.chunk_size
        return 16 * 1024 * 1024 + 256 * 1024  # Yamux's largest receive window + one write

    async def clog(self, stream: trio.abc.Stream) -> None:
        """Send until ``stream.send_all`` would block (the peer does not read)."""
        if self.kind == "memory":
            await stream.send_all(bytes(self.router.stream_buffer))
            return
        for _ in range(1000):
            # Window updates may still be in flight: let the connection go quiet first.
            await trio.testing.wait_all_tasks_blocked(0.05)
            window = stream._send_window()  # type: ignore[attr-defined]
            if window == 0:
                return
            await stream.send_all(bytes(window))
        raise AssertionError("stream never clogged")


def net_peer_id(peer: PeerId) -> object:
    from libp2p.peer.id import ID

    return ID(peer.to_bytes())


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock | None:
    return trio.testing.MockClock(autojump_threshold=0) if kind == "memory" else None


@pytest.fixture
def harness(kind: str, nursery: trio.Nursery) -> Harness:
    return Harness(kind, nursery)


async def read_all(stream: trio.abc.ReceiveStream, limit: int = 1 << 30) -> bytes:
    """Everything until a clean end of stream (bounded by ``limit`` bytes)."""
    data = bytearray()
    for _ in range(limit):
        chunk = await stream.receive_some()
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise AssertionError("more data than expected")
    raise AssertionError("unreachable")


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    for _ in range(size + 1):
        if len(data) >= size:
            return bytes(data)
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise AssertionError(f"end of stream after {len(data)} of {size} bytes")
        data += chunk
    raise AssertionError("unreachable")


async def echo(peer: PeerId, stream: trio.abc.Stream) -> None:
    """Handler: echo until the opener ends the stream."""
    for _ in range(1 << 20):
        data = await stream.receive_some()
        if not data:
            break
        await stream.send_all(data)
    await stream.aclose()
