"""Admission over real libp2p: only certified agency nodes get a session."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import multiaddr  # type: ignore[import-untyped]
import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pKey
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from p2pdoc.codecs.frames import FrameDecoder, encode_frame
from p2pdoc.network.libp2p import parse_tcp_multiaddr
from p2pdoc.protocol.messages import (
    PROTOCOL_VERSION,
    Auth,
    Hello,
    Message,
    Refuse,
    decode_message,
    encode_message,
)
from p2pdoc.simulation import Mesh

GOV = "000.00.00.G22"
LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


@asynccontextmanager
async def stock_host(**options: Any) -> AsyncIterator[IHost]:
    """A py-libp2p host as anyone would create it (not one of ours)."""
    host = new_host(listen_addrs=LOOPBACK, **options)
    async with host.run(LOOPBACK):
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True):
                await host.close()


async def open_session_stream(host: IHost, mesh: Mesh) -> INetStream:
    node = mesh.node(GOV)
    target = ID(node.peer.to_bytes())
    host.get_peerstore().add_addrs(
        target, [multiaddr.Multiaddr(parse_tcp_multiaddr(node.listen_addrs[0]))], 3600
    )
    return await host.new_stream(target, [TProtocol(mesh.config.protocol)])


async def exchange(stream: INetStream, *messages: Message) -> list[Message]:
    """Send ``messages``, then read frames until the node closes the stream."""
    for message in messages:
        await stream.write(encode_frame(encode_message(message)))
    decoder = FrameDecoder()
    received: list[Message] = []
    try:
        while data := await stream.read(65536):
            received += [decode_message(frame) for frame in decoder.feed(data)]
            if any(isinstance(m, Refuse) for m in received):
                await stream.close()
    except BaseLibp2pError:
        pass  # the node cut the connection after telling us why
    return received


def hello() -> Hello:
    return Hello(PROTOCOL_VERSION, secrets.token_bytes(32), "stock", 1 << 20, 8)


@pytest.fixture
def mesh() -> Mesh:
    mesh = Mesh(transport="libp2p")
    mesh.add_agency(GOV)
    return mesh


async def test_stock_host_without_certificate_is_refused(mesh: Mesh) -> None:
    with trio.fail_after(30):
        async with mesh.run(), stock_host() as host:
            stream = await open_session_stream(host, mesh)
            received = await exchange(stream, hello(), Auth((), bytes(64)))
            refusals = [m for m in received if isinstance(m, Refuse)]
            assert refusals, received
            assert "chain" in refusals[0].reason
            assert mesh.node(GOV).health()["sessions"] == 0


async def test_noise_host_certified_by_another_root_is_refused(mesh: Mesh) -> None:
    outsider = Mesh(seed=99)
    impostor = outsider.add_agency("000.00.00.H49")
    seed = impostor.identity.signing_key.ed25519_private_bytes()
    private = Libp2pKey.from_bytes(seed)
    with trio.fail_after(30):
        async with (
            mesh.run(),
            stock_host(key_pair=KeyPair(private, private.get_public_key())) as host,
        ):
            stream = await open_session_stream(host, mesh)
            received = await exchange(stream, hello(), Auth(impostor.identity.chain, bytes(64)))
            refusals = [m for m in received if isinstance(m, Refuse)]
            assert refusals and refusals[0].reason.startswith("unknown-issuer"), received
            assert mesh.node(GOV).health()["sessions"] == 0


async def test_plaintext_only_host_never_reaches_the_session_protocol(mesh: Mesh) -> None:
    pair = create_new_key_pair()
    with trio.fail_after(30):
        async with (
            mesh.run(),
            stock_host(
                key_pair=pair, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(pair)}
            ) as host,
        ):
            with pytest.raises(BaseLibp2pError):
                await open_session_stream(host, mesh)
            assert mesh.node(GOV).health()["refused_peers"] == 0  # it never got that far
