"""Libp2pNetwork specifics: identity, configuration, addresses, dialling, and security.

Every test runs real hosts on 127.0.0.1 under ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import multiaddr  # type: ignore[import-untyped]
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, PublicKey
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.noise.messages import NoiseHandshakePayload, make_handshake_payload_sig
from libp2p.security.noise.patterns import PatternXX
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex

from p2pdoc.errors import ConfigError, InvalidValue, NetworkError, PeerUnreachable
from p2pdoc.model.ids import PeerId
from p2pdoc.network.libp2p import (
    Libp2pConfig,
    Libp2pNetwork,
    libp2p_key_pair,
    parse_tcp_multiaddr,
)
from tests.network.conftest import echo, read_all, receive_exactly

ECHO = "/test/echo/1"
TIMEOUT = 30.0
LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


async def start(
    nursery: trio.Nursery, config: Libp2pConfig | None = None, key: Ed25519PrivateKey | None = None
) -> Libp2pNetwork:
    net = Libp2pNetwork(config or Libp2pConfig(), key or Ed25519PrivateKey.generate())
    await nursery.start(net.serve)
    return net


@asynccontextmanager
async def foreign_host(**options: Any) -> AsyncIterator[IHost]:
    """A plain py-libp2p host (not ours), listening on loopback, closed cleanly after."""
    host = new_host(listen_addrs=LOOPBACK, **options)
    async with host.run(LOOPBACK):
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True):
                await host.close()


def recording_handler(seen: list[PeerId]) -> Any:
    async def handler(peer: PeerId, stream: trio.abc.Stream) -> None:
        seen.append(peer)
        await stream.send_all(b"hello")
        await stream.aclose()

    return handler


async def foreign_open(host: IHost, target: Libp2pNetwork) -> bytes:
    """Open ``ECHO`` from a foreign host to ``target`` and read the answer."""
    target_id = ID(target.local_peer.to_bytes())
    host.get_peerstore().add_addrs(
        target_id, [multiaddr.Multiaddr(parse_tcp_multiaddr(target.listen_addrs[0]))], 3600
    )
    stream = await host.new_stream(target_id, [TProtocol(ECHO)])
    data = await stream.read(100)
    await stream.close()
    return bytes(data)


# -- identity, configuration, addresses -------------------------------------------------------


def test_peer_id_comes_from_the_identity_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    net = Libp2pNetwork(Libp2pConfig(), key)
    expected = PeerId.from_ed25519(raw_public(key))
    assert net.local_peer == expected
    assert str(net.local_peer) == net.libp2p_host.get_id().to_base58()
    assert str(expected).startswith("12D3KooW")
    # The same key always gives the same identity, in both libraries.
    again = Libp2pNetwork(Libp2pConfig(), Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    assert again.local_peer == net.local_peer
    pair: KeyPair = libp2p_key_pair(key)
    assert pair.public_key.to_bytes() == raw_public(key)
    assert ID.from_pubkey(pair.public_key).to_bytes() == expected.to_bytes()


def test_config_is_validated() -> None:
    assert Libp2pConfig().listen_multiaddr == "/ip4/127.0.0.1/tcp/0"
    assert Libp2pConfig(listen_host="::1", listen_port=4001).listen_multiaddr == "/ip6/::1/tcp/4001"
    for bad in (
        {"listen_host": "localhost"},
        {"listen_port": 70000},
        {"listen_port": -1},
        {"dial_timeout": 0},
        {"negotiate_timeout": -1.0},
        {"stall_timeout": 10_000},
        {"max_connections": 0},
    ):
        with pytest.raises(ConfigError):
            Libp2pConfig(**bad)  # type: ignore[arg-type]


def test_tcp_multiaddrs_are_checked() -> None:
    peer = PeerId.from_ed25519(bytes(32))
    other = PeerId.from_ed25519(bytes([1]) * 32)
    assert parse_tcp_multiaddr("/ip4/127.0.0.1/tcp/4001") == "/ip4/127.0.0.1/tcp/4001"
    assert parse_tcp_multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}", peer) == (
        "/ip4/127.0.0.1/tcp/4001"
    )
    assert parse_tcp_multiaddr("/ip6/0:0::1/tcp/9") == "/ip6/::1/tcp/9"
    for bad in (
        "",
        "ip4/127.0.0.1/tcp/1",
        "/ip4/127.0.0.1/udp/1/quic-v1",
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/127.0.0.1/tcp/65536",
        "/ip4/::1/tcp/1",
        "/ip6/127.0.0.1/tcp/1",
        "/dns4/example.org/tcp/1",
        "/ip4/127.0.0.1/tcp/1/ws",
        f"/memory/{peer}",
        f"/ip4/127.0.0.1/tcp/1/p2p/{other}",
    ):
        with pytest.raises(InvalidValue):
            parse_tcp_multiaddr(bad, peer)
    net = Libp2pNetwork(Libp2pConfig(), Ed25519PrivateKey.generate())
    with pytest.raises(InvalidValue):
        net.add_addrs(peer, [f"/ip4/127.0.0.1/tcp/1/p2p/{other}"])
    with pytest.raises(InvalidValue):
        net.add_addrs(peer, "/ip4/127.0.0.1/tcp/1")


async def test_listen_addrs_carry_the_real_port_and_peer(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        net = Libp2pNetwork(Libp2pConfig(), Ed25519PrivateKey.generate())
        assert net.listen_addrs == []
        await nursery.start(net.serve)
        [addr] = net.listen_addrs
        prefix, _, port = parse_tcp_multiaddr(addr, net.local_peer).rpartition("/")
        assert prefix == "/ip4/127.0.0.1/tcp"
        assert int(port) > 0
        assert addr.endswith(f"/p2p/{net.local_peer}")


async def test_busy_port_is_a_network_error(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        [occupant] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with occupant:
            port = occupant.socket.getsockname()[1]
            net = Libp2pNetwork(Libp2pConfig(listen_port=port), Ed25519PrivateKey.generate())
            with pytest.raises(NetworkError, match=f"tcp/{port}"):
                await nursery.start(net.serve)


# -- dialling -----------------------------------------------------------------------------------


async def test_failed_dial_does_not_block_the_next_one(nursery: trio.Nursery) -> None:
    key = Ed25519PrivateKey.generate()
    with trio.fail_after(TIMEOUT):
        a = await start(nursery)
        async with trio.open_nursery() as first_life:
            b = await start(first_life, key=key)
            b.set_handler(ECHO, echo)
            a.add_addrs(b.local_peer, b.listen_addrs)
            port = int(parse_tcp_multiaddr(b.listen_addrs[0]).rpartition("/")[2])
            first_life.cancel_scope.cancel()
        with pytest.raises(PeerUnreachable, match=r"refused|unreachable"):
            await a.open_stream(b.local_peer, ECHO)
        # The same node comes back on the same port: the very next dial works (py-libp2p
        # would otherwise refuse it for 60 s from its negative cache).
        again = await start(nursery, Libp2pConfig(listen_port=port), key)
        again.set_handler(ECHO, echo)
        stream = await a.open_stream(again.local_peer, ECHO)
        await stream.send_all(b"back")
        assert await receive_exactly(stream, 4) == b"back"
        await stream.aclose()


async def test_every_known_address_is_tried(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        a = await start(nursery)
        b = await start(nursery)
        b.set_handler(ECHO, echo)
        [dead] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        dead_port = dead.socket.getsockname()[1]
        await dead.aclose()  # nothing listens there any more
        a.add_addrs(b.local_peer, [f"/ip4/127.0.0.1/tcp/{dead_port}"])
        a.add_addrs(b.local_peer, b.listen_addrs)
        stream = await a.open_stream(b.local_peer, ECHO)
        await stream.send_all(b"ok")
        assert await receive_exactly(stream, 2) == b"ok"
        await stream.aclose()


async def test_dial_timeout_against_a_silent_listener(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, silent, listeners)
        a = await start(nursery, Libp2pConfig(dial_timeout=0.5))
        target = PeerId.from_ed25519(raw_public(Ed25519PrivateKey.generate()))
        a.add_addrs(target, [f"/ip4/127.0.0.1/tcp/{port}"])
        started = trio.current_time()
        with pytest.raises(PeerUnreachable, match="timed out"):
            await a.open_stream(target, ECHO)
        assert trio.current_time() - started < 3.0


async def test_address_of_another_peer_is_refused(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        a = await start(nursery)
        b = await start(nursery)
        b.set_handler(ECHO, echo)
        impostor = PeerId.from_ed25519(raw_public(Ed25519PrivateKey.generate()))
        # B's address filed under another peer ID: Noise proves B is not that peer.
        a.add_addrs(impostor, [parse_tcp_multiaddr(b.listen_addrs[0])])
        with pytest.raises(PeerUnreachable):
            await a.open_stream(impostor, ECHO)
        assert impostor not in a.connected_peers()


async def test_no_automatic_reconnection(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        a, b = await start(nursery), await start(nursery)
        b.set_handler(ECHO, echo)
        a.add_addrs(b.local_peer, b.listen_addrs)
        await (await a.open_stream(b.local_peer, ECHO)).aclose()
        await a.disconnect(b.local_peer)
        # What py-libp2p's connection manager runs after a disconnect and periodically: it
        # would redial every peer in the peerstore (B is there, identify put it there).
        await a._swarm.auto_connector.maybe_connect()
        assert a.connected_peers() == set()


@pytest.mark.slow
async def test_a_writer_blocked_longer_than_yamux_patience_still_completes(
    nursery: trio.Nursery,
) -> None:
    """py-libp2p's YamuxStream.write fails after 5 s without window credit; ours waits."""
    release = trio.Event()
    received: list[int] = []

    async def late_reader(peer: PeerId, stream: trio.abc.Stream) -> None:
        await release.wait()
        received.append(len(await read_all(stream)))
        await stream.send_all(b"ack")

    with trio.fail_after(TIMEOUT):
        a, b = await start(nursery), await start(nursery)
        b.set_handler(ECHO, late_reader)
        a.add_addrs(b.local_peer, b.listen_addrs)
        stream = await a.open_stream(b.local_peer, ECHO)
        total = 24 * 1024 * 1024
        async with trio.open_nursery() as inner:

            async def send() -> None:
                await stream.send_all(bytes(total))
                await stream.aclose()

            inner.start_soon(send)
            await trio.sleep(6.0)  # longer than Yamux's 5 s window wait
            release.set()
        assert received == [total]


# -- security -------------------------------------------------------------------------------------


async def test_default_host_can_only_connect_over_noise(nursery: trio.Nursery) -> None:
    """A stock new_host() offers plaintext too; ours accepts Noise only, so the connection
    is Noise and the peer ID the handler sees is the one the dialler's key proves."""
    seen: list[PeerId] = []
    with trio.fail_after(TIMEOUT):
        ours = await start(nursery)
        ours.set_handler(ECHO, recording_handler(seen))
        async with foreign_host() as stock:
            assert await foreign_open(stock, ours) == b"hello"
            stock_peer = PeerId(stock.get_id().to_bytes())
            [conn] = ours._swarm.connections[stock.get_id()]
            assert conn.get_negotiated_security_protocol() == "/noise"
        assert seen == [stock_peer]


async def test_plaintext_first_dialler_still_ends_on_noise(nursery: trio.Nursery) -> None:
    seen: list[PeerId] = []
    pair = create_new_key_pair()
    noise = NoiseTransport(pair, noise_privkey=create_x25519_key_pair().private_key)
    with trio.fail_after(TIMEOUT):
        ours = await start(nursery)
        ours.set_handler(ECHO, recording_handler(seen))
        # Plaintext proposed first: our side answers "na" to it.
        options = {PLAINTEXT_PROTOCOL_ID: InsecureTransport(pair), NOISE_PROTOCOL_ID: noise}
        async with foreign_host(key_pair=pair, sec_opt=options) as host:
            assert await foreign_open(host, ours) == b"hello"
            [conn] = ours._swarm.connections[host.get_id()]
            assert conn.get_negotiated_security_protocol() == "/noise"
        assert seen == [PeerId(ID.from_pubkey(pair.public_key).to_bytes())]


async def test_plaintext_only_host_cannot_open_any_stream(nursery: trio.Nursery) -> None:
    seen: list[PeerId] = []
    pair = create_new_key_pair()
    with trio.fail_after(TIMEOUT):
        ours = await start(nursery)
        ours.set_handler(ECHO, recording_handler(seen))
        options = {PLAINTEXT_PROTOCOL_ID: InsecureTransport(pair)}
        async with foreign_host(key_pair=pair, sec_opt=options) as host:
            with pytest.raises(BaseLibp2pError):
                await foreign_open(host, ours)
            # Nor will we speak plaintext when we dial it.
            host_peer = PeerId(host.get_id().to_bytes())
            ours.add_addrs(host_peer, [str(addr) for addr in host.get_transport_addrs()])
            with pytest.raises(PeerUnreachable):
                await ours.open_stream(host_peer, ECHO)
        assert seen == []
        assert ours.connected_peers() == set()


async def test_mplex_only_host_cannot_connect(nursery: trio.Nursery) -> None:
    seen: list[PeerId] = []
    pair = create_new_key_pair()
    noise = NoiseTransport(pair, noise_privkey=create_x25519_key_pair().private_key)
    with trio.fail_after(TIMEOUT):
        ours = await start(nursery)
        ours.set_handler(ECHO, recording_handler(seen))
        options = {"sec_opt": {NOISE_PROTOCOL_ID: noise}, "muxer_opt": {MPLEX_PROTOCOL_ID: Mplex}}
        async with foreign_host(key_pair=pair, **options) as host:
            with pytest.raises(BaseLibp2pError):
                await foreign_open(host, ours)
        assert seen == []


class _SpoofingPattern(PatternXX):
    """Noise XX that presents someone else's identity key, signed with its own."""

    claimed: PublicKey

    def make_handshake_payload(self, extensions: Any = None) -> NoiseHandshakePayload:
        static = self._validate_noise_static_key()
        signature = make_handshake_payload_sig(self.libp2p_privkey, static)
        return NoiseHandshakePayload(self.claimed, signature, extensions=extensions)


class _SpoofingNoise(NoiseTransport):
    claimed: PublicKey

    def get_pattern(self) -> PatternXX:
        pattern = _SpoofingPattern(
            self.local_peer, self.libp2p_privkey, self.noise_privkey, self.early_data
        )
        pattern.claimed = self.claimed
        return pattern


async def test_peer_id_cannot_be_spoofed(nursery: trio.Nursery) -> None:
    seen: list[PeerId] = []
    victim = create_new_key_pair()
    attacker = create_new_key_pair()
    noise = _SpoofingNoise(attacker, noise_privkey=create_x25519_key_pair().private_key)
    noise.claimed = victim.public_key
    noise.local_peer = ID.from_pubkey(victim.public_key)
    with trio.fail_after(TIMEOUT):
        ours = await start(nursery)
        ours.set_handler(ECHO, recording_handler(seen))
        async with foreign_host(key_pair=attacker, sec_opt={NOISE_PROTOCOL_ID: noise}) as host:
            with pytest.raises(BaseLibp2pError):
                await foreign_open(host, ours)
        # The honest path works, so the refusal above is the signature check, not setup.
        honest = create_new_key_pair()
        honest_noise = NoiseTransport(honest, noise_privkey=create_x25519_key_pair().private_key)
        async with foreign_host(key_pair=honest, sec_opt={NOISE_PROTOCOL_ID: honest_noise}) as h:
            assert await foreign_open(h, ours) == b"hello"
    assert seen == [PeerId(ID.from_pubkey(honest.public_key).to_bytes())]
    assert PeerId(ID.from_pubkey(victim.public_key).to_bytes()) not in ours.connected_peers()


async def test_many_short_streams_leave_nothing_behind(nursery: trio.Nursery) -> None:
    """Request/response streams, closed first by either side, are fully released (py-libp2p
    keeps a stream, and one of its stream slots, until close() or reset() is called)."""

    answered = trio.Event()

    async def answer_and_close(peer: PeerId, stream: trio.abc.Stream) -> None:
        await stream.send_all(await receive_exactly(stream, 4))
        await stream.aclose()
        answered.set()

    with trio.fail_after(TIMEOUT):
        a, b = await start(nursery), await start(nursery)
        b.set_handler(ECHO, answer_and_close)
        b.set_handler("/test/echo-until-eof/1", echo)
        a.add_addrs(b.local_peer, b.listen_addrs)
        for index in range(150):
            for protocol in (ECHO, "/test/echo-until-eof/1"):
                answered = trio.Event()
                stream = await a.open_stream(b.local_peer, protocol)
                payload = index.to_bytes(4, "big")
                await stream.send_all(payload)
                assert await receive_exactly(stream, 4) == payload
                if protocol == ECHO and index % 10 == 0:
                    # Let the peer's FIN and RST arrive first: our close then has nothing
                    # to send, yet must still release the stream.
                    await answered.wait()
                    await trio.testing.wait_all_tasks_blocked(0.01)
                await stream.aclose()
        [conn] = a._swarm.connections[ID(b.local_peer.to_bytes())]
        assert len(conn.get_streams()) <= 1  # at most identify's own stream
