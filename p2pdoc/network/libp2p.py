"""The real transport: py-libp2p 0.8.1 over TCP, secured by Noise, multiplexed by Yamux.

Goals:
- Peer IDs handed to handlers and dials are the ones Noise authenticated: the host offers
  and accepts **only** ``/noise`` and ``/yamux/1.0.0``, never ``/plaintext/2.0.0`` (which
  lets a peer claim any ID), secio, TLS or mplex.
- Streams behave like any :class:`trio.abc.Stream`: ``receive_some`` returns ``b""`` only
  after the peer's clean end of stream, a reset or broken connection raises
  :class:`trio.BrokenResourceError`, use after ``aclose`` raises
  :class:`trio.ClosedResourceError`, and every operation can be cancelled without
  corrupting the connection that other streams share.
- Back-pressure: a reader that stops reading makes the writer block (Yamux flow control),
  for as long as it takes, without buffering more than one receive window.
- Every libp2p failure on a public call becomes a :mod:`p2pdoc.errors` error.

Non-goals: discovery (mDNS, DHT, bootstrap), NAT traversal (UPnP, relays, hole punching),
QUIC, WebSocket, automatic reconnection. The node knows its peers' addresses from the
directory and dials them itself.

py-libp2p behaviour this module works around (all measured on 0.8.1):
- ``new_host()`` without ``sec_opt`` offers plaintext; we pass Noise explicitly.
- The swarm's auto-connector dials every peer in the peerstore to reach its connection
  watermarks; it is disabled so that :meth:`Libp2pNetwork.disconnect` stays effective.
- A failed dial puts the peer in a 60-second negative cache and the swarm retries each
  address 3 times with back-off; we dial address by address ourselves, once each, within
  one ``dial_timeout``, after lifting the negative cache.
- ``YamuxStream.write`` gives up with an error after waiting 5 s for a window update; the
  adapter only ever writes what fits in the current send window, so a slow reader blocks
  the writer instead of resetting its stream.
- Yamux reports a locally closed connection as end-of-stream; the adapter tells a real
  end of stream (the peer's FIN) from a lost connection and raises for the latter.
- Cancelled in the middle of closing a connection, libp2p marks it closed without closing
  its socket; the host's tasks therefore run shielded from ``serve``'s cancellation and are
  stopped in order (connections closed concurrently, then the listener).
- A stream reset by the peer keeps its swarm slot until ``close()``/``reset()``; ``aclose``
  releases it in every case.
- Yamux's 64 KiB frames take two Noise messages each; writes are cut so that one frame is one
  Noise message, and window credit is batched (``PY_YAMUX_RELEASE_ON_READ=0``, see
  :func:`tune_yamux`). Both measured in ``bench/bench_raw_stream.py``.

The stream adapter reads a few Yamux internals (per-stream buffer, event, flags and send
window) to wait without consuming data; they are pinned by ``libp2p==0.8.1`` and exercised by
``trio.testing.check_two_way_stream`` in the conformance suite.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Final, cast

import multiaddr  # type: ignore[import-untyped]
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey as CryptoEd25519PrivateKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pEd25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.stream.net_stream import NetStream
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from p2pdoc.errors import ConfigError, InvalidValue, NetworkError, PeerUnreachable
from p2pdoc.model.ids import PeerId
from p2pdoc.network.base import (
    Network,
    SharedDials,
    StreamGuards,
    StreamHandler,
    check_protocol,
    check_stream_target,
    receive_limit,
    run_handler,
)

__all__ = [
    "SECURITY_PROTOCOLS",
    "STREAM_MUXERS",
    "YAMUX_RELEASE_ON_READ_ENV",
    "Libp2pConfig",
    "Libp2pNetwork",
    "libp2p_key_pair",
    "parse_tcp_multiaddr",
    "tune_yamux",
]

logger = logging.getLogger(__name__)

SECURITY_PROTOCOLS: Final = (str(NOISE_PROTOCOL_ID),)
"""The only connection security this node offers or accepts."""
STREAM_MUXERS: Final = (str(YAMUX_PROTOCOL_ID),)
"""The only stream multiplexer this node offers or accepts."""

_FRAME_PAYLOAD: Final = 65535 - 16 - 12
"""Largest write that becomes one Yamux frame in one Noise message.

A Noise transport message carries at most 65535 - 16 (MAC) plaintext bytes, a Yamux header
is 12 bytes. Yamux's own 64 KiB frames need two Noise messages each (65524 + 12 > 65519).
"""
_DEFAULT_RECEIVE: Final = 256 * 1024
_WINDOW_POLL_MIN: Final = 0.0005
_WINDOW_POLL_MAX: Final = 0.01
_CLOSE_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Libp2pConfig:
    """How a :class:`Libp2pNetwork` listens and dials."""

    listen_host: str = "127.0.0.1"
    """IP address to listen on. Loopback by default; a node that serves other machines
    names its own interface address (the listen address is also what it advertises)."""
    listen_port: int = 0
    """TCP port to listen on; 0 picks a free port (read it from ``listen_addrs``)."""
    dial_timeout: float = 10.0
    """Seconds one :meth:`Libp2pNetwork.open_stream` may spend connecting (all addresses
    together, TCP + Noise + Yamux)."""
    negotiate_timeout: float = 10.0
    """Seconds the peer has to accept or refuse a stream's protocol."""
    stall_timeout: float = 30.0
    """Seconds a single frame write may wait on a TCP connection whose peer stopped draining
    it (a frozen process or a black-holed link) before the connection is closed as broken.
    This bounds only socket stalls; waiting for a slow *reader* (flow control) never times
    out."""
    max_connections: int = 300
    """Most connections (inbound + outbound) the host keeps open."""

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.listen_host)
        except ValueError:
            raise ConfigError(
                "network.listen_host", f"{self.listen_host!r} is not an IP address"
            ) from None
        if not isinstance(self.listen_port, int) or not 0 <= self.listen_port <= 65535:
            raise ConfigError("network.listen_port", "must be an integer 0..65535")
        for key in ("dial_timeout", "negotiate_timeout", "stall_timeout"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not 0 < value <= 3600:
                raise ConfigError(f"network.{key}", "must be a number of seconds in (0, 3600]")
        if not isinstance(self.max_connections, int) or self.max_connections < 1:
            raise ConfigError("network.max_connections", "must be a positive integer")

    @property
    def listen_multiaddr(self) -> str:
        """The multiaddr text the host binds, e.g. ``/ip4/127.0.0.1/tcp/0``."""
        family = "ip6" if ipaddress.ip_address(self.listen_host).version == 6 else "ip4"
        return f"/{family}/{self.listen_host}/tcp/{self.listen_port}"


YAMUX_RELEASE_ON_READ_ENV: Final = "PY_YAMUX_RELEASE_ON_READ"


def tune_yamux() -> None:
    """Return Yamux receive-window credit in batches rather than on every read.

    py-libp2p 0.8.1 reads ``PY_YAMUX_RELEASE_ON_READ`` from the environment on each read;
    its default (``1``) sends a WINDOW_UPDATE frame for every read. ``0`` batches credit
    (at half a window), which measured about 1.3x the pipelined request rate and no loss in
    bulk throughput (docs/network.md). Process-wide; an operator's explicit setting wins.
    Called by :class:`Libp2pNetwork` on construction.
    """
    os.environ.setdefault(YAMUX_RELEASE_ON_READ_ENV, "0")


def libp2p_key_pair(identity_key: CryptoEd25519PrivateKey) -> KeyPair:
    """libp2p's key pair for a ``cryptography`` Ed25519 key (same key, converted via raw bytes)."""
    seed = identity_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    private = Libp2pEd25519PrivateKey.from_bytes(seed)
    return KeyPair(private, private.get_public_key())


def parse_tcp_multiaddr(text: str, peer: PeerId | None = None) -> str:
    """Check a dialable TCP multiaddr and return it without its ``/p2p/<id>`` suffix.

    Accepts ``/ip4/<addr>/tcp/<port>`` or ``/ip6/<addr>/tcp/<port>``, optionally followed by
    ``/p2p/<peer id>``.

    Raises:
        InvalidValue: the text is not such an address, or its ``/p2p`` part names a peer
            other than ``peer``.
    """
    if not isinstance(text, str) or not text or len(text) > 300:
        raise InvalidValue(f"multiaddr must be non-empty text of at most 300 characters: {text!r}")
    parts = text.split("/")
    if parts[0] != "" or len(parts) not in (5, 7):
        raise InvalidValue(f"{text!r} is not /ip4|ip6/<address>/tcp/<port>[/p2p/<peer id>]")
    _, family, host, proto, port = parts[:5]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidValue(f"{text!r}: {host!r} is not an IP address") from None
    if (family, ip.version) not in (("ip4", 4), ("ip6", 6)) or proto != "tcp":
        raise InvalidValue(f"{text!r} is not /ip4|ip6/<address>/tcp/<port>[/p2p/<peer id>]")
    if not port.isascii() or not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidValue(f"{text!r}: TCP port must be 1..65535")
    if len(parts) == 7:
        if parts[5] != "p2p":
            raise InvalidValue(f"{text!r}: only /p2p/<peer id> may follow the TCP port")
        named = PeerId.parse(parts[6])
        if peer is not None and named != peer:
            raise InvalidValue(f"{text!r} names peer {named!r}, not {peer!r}")
    return f"/{family}/{ip.compressed}/tcp/{int(port)}"


def _to_libp2p(peer: PeerId) -> ID:
    return ID(peer.to_bytes())


def _from_libp2p(peer_id: ID) -> PeerId:
    return PeerId(peer_id.to_bytes())


def _describe(exc: BaseException) -> str:
    """The innermost cause of a libp2p error, e.g. ``Connection refused``."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(texts) < 8:
        seen.add(id(current))
        text = str(current).strip()
        if text:
            texts.append(f"{type(current).__name__}: {text}")
        if isinstance(current, BaseExceptionGroup) and current.exceptions:
            current = current.exceptions[0]
        else:
            current = current.__cause__ or current.__context__
    return texts[-1] if texts else type(exc).__name__


class _NoAutoConnect(AutoConnector):
    """An auto-connector that never starts: this node dials only when asked to."""

    async def start(self) -> None:
        return None


class _Terminal(Exception):
    """The stream will deliver no more data; ``clean`` tells EOF from breakage."""

    def __init__(self, *, clean: bool) -> None:
        super().__init__("clean end of stream" if clean else "stream broken")
        self.clean = clean


class _Libp2pStream(StreamGuards, trio.abc.Stream):
    """A libp2p Yamux stream as a :class:`trio.abc.Stream`.

    Reads wait on Yamux's per-stream buffer and event (so waiting is cancellable without
    consuming data), then take the buffered bytes in a shielded call that also returns the
    flow-control credit. Writes wait for send window, then write at most the window, one
    Noise message per frame, shielded: a half-written frame would corrupt the connection
    every other stream shares.

    ``aclose`` sends FIN after everything written, and, if the peer has not finished sending,
    a RST so that the peer's further writes fail (``trio.abc.Stream`` semantics: closing
    stops reading). The peer still reads all data sent before the FIN, then ``b""``.
    """

    def __init__(self, net_stream: NetStream, *, stall_timeout: float) -> None:
        muxed = net_stream.muxed_stream
        if not isinstance(muxed, YamuxStream):
            raise NetworkError(f"expected a Yamux stream, got {type(muxed).__name__}")
        self._net = net_stream
        self._ys = muxed
        self._mux = muxed.conn
        self._stall_timeout = stall_timeout
        self._init_guards()
        self._eof = False
        self._broken = False

    # -- state probes over Yamux internals (pinned to libp2p 0.8.1) ------------------------

    def _peer_finished(self) -> bool:
        """The peer's FIN arrived on a connection that is still alive."""
        return bool(self._ys.recv_closed) and not self._mux.event_shutting_down.is_set()

    def _readable(self) -> bool:
        """True if buffered data is ready; raises _Terminal if none can ever come."""
        buffer = self._mux.stream_buffers.get(self._ys.stream_id)
        if buffer:
            return True
        if (
            buffer is None
            or self._ys.recv_closed
            or self._ys.reset_received
            or self._mux.event_shutting_down.is_set()
        ):
            raise _Terminal(clean=self._peer_finished())
        return False

    def _send_window(self) -> int:
        """Bytes writable now without waiting; raises _Terminal if writing is over."""
        ys = self._ys
        if (
            ys.send_closed
            or ys.closed
            or ys.reset_received
            or self._mux.event_shutting_down.is_set()
        ):
            raise _Terminal(clean=False)
        return int(ys.send_window)

    async def _wait_readable(self) -> None:
        events = self._mux.stream_events
        while not self._readable():
            event = events.get(self._ys.stream_id)
            if event is None:
                raise _Terminal(clean=self._peer_finished())
            if event.is_set():
                # Already consumed; no checkpoint between the probe above and the wait below,
                # so a frame arriving now sets the fresh event.
                event = trio.Event()
                events[self._ys.stream_id] = event
            await event.wait()

    async def _wait_window(self) -> int:
        # Yamux signals no event on WINDOW_UPDATE, so waiting for credit polls (as Yamux's
        # own write does), starting fast to keep bulk transfers streaming.
        delay = _WINDOW_POLL_MIN
        while (window := self._send_window()) <= 0:
            await trio.sleep(delay)
            delay = min(delay * 2, _WINDOW_POLL_MAX)
        return window

    # -- helpers ---------------------------------------------------------------------------

    async def _abort_connection(self) -> None:
        """Close the whole connection after a frame write was cut off mid-way."""
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            try:
                if self._net.swarm_conn is not None:
                    await self._net.swarm_conn.close()
                else:
                    await self._mux.close()
            except (BaseLibp2pError, OSError, trio.BrokenResourceError):
                logger.debug("closing a stalled connection failed", exc_info=True)

    def _fail(self) -> trio.BrokenResourceError:
        self._broken = True
        return trio.BrokenResourceError("libp2p stream broken (reset or connection lost)")

    # -- trio.abc.Stream --------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data`` (blocking while the peer's receive window is full).

        Raises:
            trio.ClosedResourceError: this stream was closed (before or during the call).
            trio.BrokenResourceError: the peer reset the stream or the connection broke.
            trio.BusyResourceError: another task is sending on this stream.
        """
        await trio.lowlevel.checkpoint()
        with self._exclusive_send():
            if self._broken:
                raise self._fail()
            view = memoryview(data).cast("B")
            while view:
                try:
                    with self._until_closed():
                        window = await self._wait_window()
                    size = min(len(view), window, _FRAME_PAYLOAD)
                    with trio.CancelScope(shield=True) as guard:
                        guard.deadline = trio.current_time() + self._stall_timeout
                        await self._net.write(view[:size])  # type: ignore[arg-type]
                except _Terminal:
                    raise self._fail() from None
                except (BaseLibp2pError, OSError, trio.BrokenResourceError) as exc:
                    raise self._fail() from exc
                if guard.cancelled_caught:
                    await self._abort_connection()
                    raise self._fail()
                view = view[size:]

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the peer's receive window has room (or the stream is over).

        Raises:
            trio.ClosedResourceError: this stream was closed (before or during the call).
            trio.BusyResourceError: another task is sending on this stream.
        """
        await trio.lowlevel.checkpoint()
        with self._exclusive_send(), suppress(_Terminal), self._until_closed():
            await self._wait_window()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` received bytes; ``b""`` after the peer's clean end of stream.

        Raises:
            trio.ClosedResourceError: this stream was closed (before or during the call).
            trio.BrokenResourceError: the peer reset the stream or the connection broke.
            trio.BusyResourceError: another task is receiving on this stream.
        """
        limit = receive_limit(max_bytes, _DEFAULT_RECEIVE)
        await trio.lowlevel.checkpoint()
        with self._exclusive_receive():
            if self._eof:
                return b""
            if self._broken:
                raise self._fail()
            try:
                with self._until_closed():
                    await self._wait_readable()
                # Data is buffered: take it and return the window credit without letting a
                # cancellation drop the bytes or cut the WINDOW_UPDATE frame in half.
                with trio.CancelScope(shield=True) as guard:
                    guard.deadline = trio.current_time() + self._stall_timeout
                    data = await self._net.read(limit)
            except _Terminal as end:
                if end.clean:
                    self._eof = True
                    return b""
                raise self._fail() from None
            except (BaseLibp2pError, OSError, trio.BrokenResourceError) as exc:
                if self._peer_finished() and not self._mux.stream_buffers.get(self._ys.stream_id):
                    self._eof = True
                    return b""
                raise self._fail() from exc
            if guard.cancelled_caught:
                await self._abort_connection()
                raise self._fail()
            return bytes(data)

    async def aclose(self) -> None:
        """Flush and end this stream (FIN); reset it too if the peer was still sending.

        Idempotent. Closes even when cancelled (then raises Cancelled afterwards). Never
        raises for a stream that was already reset or broken.
        """
        if self._mark_closed():
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    # We will not read again: drop unread bytes now rather than leave them
                    # to Yamux's 60-second sweeper.
                    unread = self._mux.stream_buffers.get(self._ys.stream_id)
                    if unread:
                        unread.clear()
                    released = False
                    if not (self._ys.send_closed or self._ys.closed):
                        await self._net.close()  # FIN after everything written
                        released = True
                    if not self._ys.closed:
                        await self._net.reset()  # the peer was still sending: stop it
                        released = True
                    if not released:
                        # Reset by the peer or connection gone: still give back the swarm's
                        # stream slot, which only close()/reset() would release.
                        await self._net.remove()
                except (BaseLibp2pError, OSError, trio.BrokenResourceError):
                    logger.debug("closing a broken stream", exc_info=True)
        await trio.lowlevel.checkpoint()


class Libp2pNetwork(Network):
    """A libp2p host (TCP + Noise + Yamux) behind the :class:`Network` seam.

    Construct it, register handlers, then ``await nursery.start(net.serve)``; streams can be
    opened while :meth:`serve` runs. :meth:`serve` runs once per instance.

    Args:
        config: listen address and timeouts.
        identity_key: the node's Ed25519 identity; the peer ID derives from its public key.
    """

    def __init__(self, config: Libp2pConfig, identity_key: CryptoEd25519PrivateKey) -> None:
        if not isinstance(identity_key, CryptoEd25519PrivateKey):
            raise InvalidValue("identity_key must be a cryptography Ed25519PrivateKey")
        self._config = config
        key_pair = libp2p_key_pair(identity_key)
        raw_public = identity_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._peer = PeerId.from_ed25519(raw_public)
        tune_yamux()
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self._host: IHost = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[multiaddr.Multiaddr(config.listen_multiaddr)],
            enable_mDNS=False,
            enable_upnp=False,
            enable_quic=False,
            enable_tcp=True,
            negotiate_timeout=max(1, round(config.negotiate_timeout)),
            disable_identify_address_discovery=True,
            connection_config=ConnectionConfig(
                max_connections=config.max_connections,
                min_connections=0,
                low_watermark=0,
                high_watermark=config.max_connections,
                max_connections_per_peer=1,
                dial_timeout=config.dial_timeout,
                outbound_upgrade_timeout=config.dial_timeout,
                inbound_upgrade_timeout=config.dial_timeout,
                outbound_stream_protocol_negotiation_timeout=config.negotiate_timeout,
                inbound_stream_protocol_negotiation_timeout=config.negotiate_timeout,
            ),
        )
        swarm = self._swarm
        swarm.retry_config = RetryConfig(max_retries=0)
        swarm.auto_connector = _NoAutoConnect(swarm, swarm.connection_config.auto_connect_interval)
        self._handlers: dict[str, StreamHandler] = {}
        self._addrs: dict[PeerId, list[str]] = {}
        self._dials = SharedDials()
        self._handler_scopes: set[trio.CancelScope] = set()
        self._listen: list[str] = []
        self._running = False
        self._served = False

    @property
    def _swarm(self) -> Swarm:
        return cast(Swarm, self._host.get_network())

    @property
    def config(self) -> Libp2pConfig:
        return self._config

    @property
    def local_peer(self) -> PeerId:
        return self._peer

    @property
    def libp2p_host(self) -> IHost:
        """The underlying host, for diagnostics and tests; do not reconfigure it."""
        return self._host

    @property
    def listen_addrs(self) -> list[str]:
        """``/ip4/<host>/tcp/<actual port>/p2p/<peer id>`` for each listener, once serving."""
        return list(self._listen)

    def set_handler(self, protocol: str, handler: StreamHandler) -> None:
        check_protocol(protocol)
        self._handlers[protocol] = handler
        self._host.set_stream_handler(TProtocol(protocol), self._dispatcher(protocol))

    def add_addrs(self, peer: PeerId, addrs: Sequence[str]) -> None:
        """Remember TCP multiaddrs for ``peer`` (``/p2p/<id>`` optional, must match ``peer``).

        Raises:
            InvalidValue: an address is malformed, not TCP, or names another peer.
        """
        if not isinstance(peer, PeerId):
            raise InvalidValue("peer must be a PeerId")
        if isinstance(addrs, str):
            raise InvalidValue("addrs must be a sequence of multiaddr strings, not one string")
        parsed = [parse_tcp_multiaddr(text, peer) for text in addrs]
        known = self._addrs.setdefault(peer, [])
        for addr in parsed:
            if addr not in known:
                known.append(addr)

    def connected_peers(self) -> set[PeerId]:
        return {
            _from_libp2p(peer_id)
            for peer_id, conns in self._swarm.connections.items()
            if any(not conn.is_closed for conn in conns)
        }

    def _is_connected(self, peer: PeerId) -> bool:
        conns = self._swarm.connections.get(_to_libp2p(peer), [])
        return any(not conn.is_closed for conn in conns)

    async def open_stream(self, peer: PeerId, protocol: str) -> trio.abc.Stream:
        """A new stream to ``peer`` for ``protocol``, dialling the known addresses if needed.

        Raises:
            InvalidValue: ``protocol`` is not a protocol name.
            PeerUnreachable: the network is not serving, no address is known, every address
                failed or the dial timed out, the peer refused the protocol or did not
                answer within ``negotiate_timeout``. The message says which.
        """
        check_stream_target(self._peer, peer, protocol, serving=self._running)
        await self._ensure_connected(peer)
        try:
            with trio.fail_after(self._config.negotiate_timeout):
                net_stream = await self._host.new_stream(_to_libp2p(peer), [TProtocol(protocol)])
        except trio.TooSlowError:
            raise PeerUnreachable(
                f"{peer!r} did not answer protocol {protocol!r} within "
                f"{self._config.negotiate_timeout} s"
            ) from None
        except Exception as exc:  # py-libp2p raises more than its own error types
            raise PeerUnreachable(
                f"{peer!r} refused or failed protocol {protocol!r}: {_describe(exc)}"
            ) from exc
        return _Libp2pStream(cast(NetStream, net_stream), stall_timeout=self._config.stall_timeout)

    async def _ensure_connected(self, peer: PeerId) -> None:
        """Connect to ``peer`` unless connected; one dial per peer at a time, shared."""
        await self._dials.ensure(peer, lambda: self._is_connected(peer), lambda: self._dial(peer))

    async def _dial(self, peer: PeerId) -> str | None:
        """Try each known address once; None on success, else why every attempt failed."""
        addrs = list(self._addrs.get(peer, ()))
        if not addrs:
            return f"{peer!r}: no known address"
        swarm = self._swarm
        peer_id = _to_libp2p(peer)
        swarm.unblock_peer(peer_id)
        failures = []
        with trio.move_on_after(self._config.dial_timeout):
            for addr in addrs:
                try:
                    await swarm.dial_addr(multiaddr.Multiaddr(addr), peer_id)
                    return None
                except Exception as exc:  # py-libp2p raises more than its own error types
                    failures.append(f"{addr}: {_describe(exc)}")
        if len(failures) < len(addrs):
            failures.append(f"dial timed out after {self._config.dial_timeout} s")
        return f"{peer!r} unreachable: " + "; ".join(failures)

    async def disconnect(self, peer: PeerId) -> None:
        """Close the connection to ``peer``; its streams break on both sides."""
        if not self._running or not self._is_connected(peer):
            return
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            await self._host.disconnect(_to_libp2p(peer))

    def _dispatcher(self, protocol: str) -> Callable[[INetStream], Awaitable[None]]:
        async def dispatch(net_stream: INetStream) -> None:
            await self._run_handler(protocol, net_stream)

        return dispatch

    async def _run_handler(self, protocol: str, net_stream: INetStream) -> None:
        handler = self._handlers.get(protocol)
        # The connection's peer ID is the one Noise authenticated (its signed handshake).
        remote = _from_libp2p(net_stream.muxed_conn.peer_id)
        stream = _Libp2pStream(
            cast(NetStream, net_stream), stall_timeout=self._config.stall_timeout
        )
        if handler is None or not self._running:
            await stream.aclose()
            return
        await run_handler(handler, protocol, remote, stream, self._handler_scopes, logger)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``config.listen_multiaddr`` and dispatch streams until cancelled.

        On cancellation cancels running handlers, then closes every connection (concurrently,
        each sending Yamux GO_AWAY) and the listener before returning; the orderly part is
        bounded by a few seconds, after which the host's tasks are cancelled.

        Raises:
            NetworkError: :meth:`serve` already ran, or the address could not be bound.
        """
        if self._served:
            raise NetworkError("Libp2pNetwork.serve() runs once per instance")
        self._served = True
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            # The host's own tasks (connection readers, handlers) run shielded from this
            # task's cancellation: cancelled mid-close, libp2p marks a connection closed
            # without closing its socket. They stop when `stop` is set, in order.
            listening = await nursery.start(self._run_host, stop)
            if listening:
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    stop.set()
        if not listening:
            raise NetworkError(f"cannot listen on {self._config.listen_multiaddr}")

    async def _run_host(self, stop: trio.Event, *, task_status: trio.TaskStatus[bool]) -> None:
        """Run the host until ``stop``; ``started(False)`` (and return) if it cannot listen."""
        with trio.CancelScope(shield=True) as host_scope:
            async with self._host.run([multiaddr.Multiaddr(self._config.listen_multiaddr)]):
                try:
                    bound = self._host.get_transport_addrs()
                    if bound:
                        self._listen = [f"{addr}/p2p/{self._peer}" for addr in bound]
                        self._running = True
                    task_status.started(bool(bound))
                    if bound:
                        await stop.wait()
                finally:
                    self._running = False
                    # From here on, a hung libp2p shutdown is cut off after the deadline.
                    host_scope.deadline = trio.current_time() + 2 * _CLOSE_TIMEOUT
                    for scope in list(self._handler_scopes):
                        scope.cancel()
                    with trio.move_on_after(_CLOSE_TIMEOUT):
                        await self._close_all_connections()
                        await self._host.close()

    async def _close_all_connections(self) -> None:
        """Close every connection at once (libp2p closes them one by one, ~0.2 s each)."""
        conns = [conn for conns in self._swarm.connections.values() for conn in conns]

        async def close(conn: INetConn) -> None:
            try:
                await conn.close()
            except (BaseLibp2pError, OSError, trio.BrokenResourceError):
                logger.debug("closing a connection failed", exc_info=True)

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(close, conn)
