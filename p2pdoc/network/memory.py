"""An in-process network: a seeded router between :class:`MemoryNetwork` endpoints.

Goals:
- The same :class:`~p2pdoc.network.base.Network` contract as the libp2p transport (the
  conformance suite runs on both), so tests and the mesh simulator run the real node code.
- Faults a real mesh has, under control: latency and jitter per chunk (order kept within a
  stream, as TCP would), a bandwidth limit per connection direction, random connection
  resets (how messages get lost), partitions, peers going down, dial latency, and duplicated
  streams (a replica of a dialler's stream reaching the listener's handler a second time).
- Bounded memory and back-pressure like a socket: at most ``stream_buffer`` bytes per stream
  direction are in flight or unread; a writer beyond that blocks until the reader reads.
- Deterministic under ``trio.testing.MockClock(autojump_threshold=0)``: every delay, reset
  and duplication comes from a :class:`random.Random` derived from the router's seed and
  stable names (dialer, listener, connection number, stream number, direction, replica),
  never from the order in which trio happens to schedule simultaneous tasks. The same seed
  and the same application behaviour give the same deliveries, losses, replicas and virtual
  times.

Non-goals: byte-level TCP modelling (no congestion control, slow start or retransmission:
a reset loses everything in flight on the connection, like a dropped TCP connection), and
duplication *within* a stream (a stream never repeats or corrupts its own bytes, as TCP
would not; duplication is of whole streams, below).

Model:
- A connection joins two serving networks. Each direction has one pump task (in the sending
  network's nursery) that delivers chunks at their due time. A chunk sent at ``t`` is due at
  ``max(t' + latency + U(0, jitter), previous due time on that stream)``, where ``t'`` is
  when the link finished "transmitting" it under the bandwidth limit (``t`` if unlimited).
- Each data chunk may break the whole connection with ``reset_probability``, at its due
  time: both sides' streams on it then raise :class:`trio.BrokenResourceError` and
  everything in flight or unread is lost.
- Opening a stream costs one round trip (protocol negotiation); dialling costs
  ``dial_latency`` plus jitter and fails with :class:`~p2pdoc.errors.PeerUnreachable` if the
  peer is not serving, is down, this node is down, or a partition separates them.
- ``aclose`` queues an end-of-stream after the data already sent (the peer reads everything,
  then ``b""``) and stops reading: the peer's further sends fail, as with libp2p.
- Duplication: when the listener accepts a stream, it is *replicated* with
  ``duplicate_probability`` (one draw per stream): the listener's handler for the same
  protocol runs a second time, started with the first and given the dialler's peer ID, on a
  replica stream over a connection-like path of its own (as a retransmission over a new
  connection, or a replay by someone on the path, would arrive).

  - The replica delivers a copy of every byte the dialler sends on the original, in order,
    each chunk due at ``max(t' + latency + U(0, jitter), previous due time on the
    replica)`` with its own draws and bandwidth budget, then an end-of-stream when the
    dialler closes the original.
  - What the handler writes on the replica is accepted and discarded (the dialler never sees
    it); once the dialler has closed the original, those writes fail as after any peer's
    close.
  - The replica never slows the original: when a copied chunk finds ``stream_buffer`` bytes
    of the replica in flight or unread (where a sender would block), the replica breaks.
  - Resets (``reset_probability`` per copied chunk), partitions, ``take_down``, either
    side's ``disconnect`` of the other and the end of either side's ``serve`` break replicas
    as they break connections; a replica also breaks when its original's connection breaks.
    A broken replica raises :class:`trio.BrokenResourceError` in its handler and never
    affects the original.
  - Replicas are not connections: :meth:`MemoryNetwork.connected_peers` and
    ``open_stream`` never see them. :class:`RouterStats` counts them apart.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from p2pdoc.errors import InvalidValue, NetworkError, PeerUnreachable
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

__all__ = ["Faults", "MemoryNetwork", "MemoryRouter", "RouterStats", "memory_addr"]

logger = logging.getLogger(__name__)

_ADDR_PREFIX: Final = "/memory/"
_DEFAULT_RECEIVE: Final = 64 * 1024

_PumpFn = Callable[[PeerId], Awaitable[None]]


def memory_addr(peer: PeerId) -> str:
    """The address of ``peer`` on a memory router: ``/memory/<peer id>``."""
    return f"{_ADDR_PREFIX}{peer}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """What the router does to traffic. Times in (virtual) seconds."""

    latency: float = 0.0
    """One-way delay of every chunk and of each leg of a stream-open round trip."""
    jitter: float = 0.0
    """Extra one-way delay drawn uniformly from ``[0, jitter)`` per chunk (and per dial)."""
    bandwidth: float | None = None
    """Bytes per second per connection direction (shared by its streams); None = unlimited."""
    reset_probability: float = 0.0
    """Chance that a data chunk breaks its connection instead of arriving (0..1)."""
    dial_latency: float = 0.0
    """Time a dial takes before it connects or fails."""
    duplicate_probability: float = 0.0
    """Chance that an accepted stream is also replicated to the listener (0..1); see the
    module docstring."""

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "dial_latency"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1e6:
                raise InvalidValue(f"Faults.{name} must be a number of seconds >= 0")
        if self.bandwidth is not None and (
            not isinstance(self.bandwidth, int | float) or not self.bandwidth > 0
        ):
            raise InvalidValue("Faults.bandwidth must be None or bytes per second > 0")
        for name in ("reset_probability", "duplicate_probability"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InvalidValue(f"Faults.{name} must be in 0..1")


@dataclass(slots=True)
class RouterStats:
    """Counters a simulation can report; they only ever grow."""

    dials: int = 0
    dial_failures: int = 0
    connections: int = 0
    broken_connections: int = 0
    random_resets: int = 0
    streams: int = 0
    chunks_delivered: int = 0
    """Data chunks delivered, replicas' included."""
    bytes_delivered: int = 0
    """Bytes delivered, replicas' included."""
    replicas: int = 0
    """Streams replicated (``duplicate_probability``); each also counts once in ``streams``."""
    replicas_broken: int = 0
    """Replicas that broke (reset, partition, peer down, original broke, fell behind)."""
    replicas_overrun: int = 0
    """Of those, replicas broken because they fell ``stream_buffer`` bytes behind."""


def _parse_addr(text: str) -> PeerId:
    if not isinstance(text, str) or not text.startswith(_ADDR_PREFIX):
        raise InvalidValue(f"memory address must look like /memory/<peer id>: {text!r}")
    return PeerId.parse(text[len(_ADDR_PREFIX) :])


class MemoryRouter:
    """The shared medium memory networks connect through; owns faults and randomness.

    Args:
        seed: seeds every random choice (delays, resets), see the module docstring.
        faults: initial fault model; assign :attr:`faults` to change it mid-run (applies to
            chunks sent and dials started afterwards).
        stream_buffer: bytes per stream direction that may be in flight or unread before a
            sender blocks.
        chunk_size: largest unit the router delays, limits and may lose (a ``send_all`` is
            split into chunks of at most this size).
    """

    def __init__(
        self,
        seed: int,
        faults: Faults | None = None,
        *,
        stream_buffer: int = 256 * 1024,
        chunk_size: int = 64 * 1024,
    ) -> None:
        if not isinstance(seed, int):
            raise InvalidValue("seed must be an int")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidValue("chunk_size must be a positive int")
        if not isinstance(stream_buffer, int) or stream_buffer < chunk_size:
            raise InvalidValue("stream_buffer must be an int >= chunk_size")
        self._seed = seed
        self.faults = faults if faults is not None else Faults()
        self.stream_buffer = stream_buffer
        self.chunk_size = chunk_size
        self.stats = RouterStats()
        self._networks: dict[PeerId, MemoryNetwork] = {}
        self._down: set[PeerId] = set()
        self._cuts: list[tuple[frozenset[PeerId], frozenset[PeerId]]] = []
        self._connections: set[_Connection] = set()
        self._dial_counts: dict[tuple[PeerId, PeerId], int] = {}
        self._sequence = itertools.count()

    @property
    def seed(self) -> int:
        return self._seed

    def rng(self, *names: object) -> random.Random:
        """A generator derived from the seed and ``names`` (same names, same sequence)."""
        return random.Random("/".join([str(self._seed), *map(str, names)]))

    # -- fault control ---------------------------------------------------------------------

    def partition(self, group_a: Iterable[PeerId], group_b: Iterable[PeerId]) -> None:
        """Cut every link between a peer of ``group_a`` and a peer of ``group_b``.

        Existing connections across the cut break; dials across it fail until :meth:`heal`.
        """
        cut = (frozenset(group_a), frozenset(group_b))
        if cut[0] & cut[1]:
            raise InvalidValue("a peer cannot be on both sides of a partition")
        self._cuts.append(cut)
        for conn in list(self._connections):
            if self._separated(conn.dialer.local_peer, conn.listener.local_peer):
                conn.break_("partitioned")

    def heal(self) -> None:
        """Remove every partition (broken connections stay broken; new dials work)."""
        self._cuts.clear()

    def take_down(self, peer: PeerId) -> None:
        """Unplug ``peer``: its connections break; dials to and from it fail."""
        self._down.add(peer)
        for conn in list(self._connections):
            if peer in (conn.dialer.local_peer, conn.listener.local_peer):
                conn.break_("peer went down")

    def bring_up(self, peer: PeerId) -> None:
        """Plug ``peer`` back in (it must redial or be redialled)."""
        self._down.discard(peer)

    def is_down(self, peer: PeerId) -> bool:
        return peer in self._down

    def _separated(self, a: PeerId, b: PeerId) -> bool:
        return any((a in x and b in y) or (a in y and b in x) for x, y in self._cuts)

    def why_unreachable(self, source: PeerId, target: PeerId) -> str | None:
        """Why ``source`` cannot reach ``target`` now, or None if it can."""
        if source in self._down:
            return "this node is down"
        if target in self._down:
            return "peer is down"
        if self._separated(source, target):
            return "partitioned from peer"
        if target not in self._networks:
            return "peer is not listening"
        return None

    # -- bookkeeping for networks ----------------------------------------------------------

    def _register(self, net: MemoryNetwork) -> None:
        if net.local_peer in self._networks:
            raise NetworkError(f"{net.local_peer!r} is already serving on this router")
        self._networks[net.local_peer] = net

    def _unregister(self, net: MemoryNetwork) -> None:
        if self._networks.get(net.local_peer) is net:
            del self._networks[net.local_peer]

    def _next_dial(self, source: PeerId, target: PeerId) -> int:
        key = (source, target)
        count = self._dial_counts.get(key, 0)
        self._dial_counts[key] = count + 1
        return count


class _Chunk:
    """A unit in flight on a link: data, end-of-stream (``data is None``), or a reset."""

    __slots__ = ("breaks", "channel", "data")

    def __init__(self, channel: _Channel, data: bytes | None, breaks: bool) -> None:
        self.channel = channel
        self.data = data
        self.breaks = breaks


class _Channel:
    """One direction of one stream: what the sender end sends and the receiver end reads."""

    __slots__ = (
        "buffer",
        "eof",
        "eof_sent",
        "in_flight",
        "last_due",
        "link",
        "readable",
        "reader_gone",
        "replica",
        "rng",
        "sink",
        "space",
    )

    def __init__(self, link: _Link, rng: random.Random) -> None:
        self.link = link
        self.rng = rng
        self.buffer = bytearray()
        self.in_flight = 0  # sent and not yet read: bounded by the router's stream_buffer
        self.last_due = -float("inf")
        self.eof = False  # end-of-stream delivered to the receiver
        self.eof_sent = False
        self.reader_gone = False  # receiver closed: further sends fail
        self.readable = trio.lowlevel.ParkingLot()
        self.space = trio.lowlevel.ParkingLot()
        self.replica: _Replica | None = None  # a dialler's channel copied to a replica
        self.sink = False  # a replica's back channel: what is sent there is discarded

    def wake(self) -> None:
        self.readable.unpark_all()
        self.space.unpark_all()


class _Link:
    """One direction of a connection: a queue ordered by due time, drained by a pump task."""

    __slots__ = ("changed", "free_at", "queue")

    def __init__(self) -> None:
        self.queue: list[tuple[float, int, _Chunk]] = []
        self.free_at = -float("inf")
        self.changed = trio.lowlevel.ParkingLot()


class _Connection:
    def __init__(
        self, router: MemoryRouter, dialer: MemoryNetwork, listener: MemoryNetwork, index: int
    ) -> None:
        self.router = router
        self.dialer = dialer
        self.listener = listener
        self.label = f"{dialer.local_peer}>{listener.local_peer}#{index}"
        self.links = {dialer.local_peer: _Link(), listener.local_peer: _Link()}
        self.channels: set[_Channel] = set()
        self.next_stream = {dialer.local_peer: 1, listener.local_peer: 2}
        self.broken = False
        self.reason = ""
        self.replica: _Replica | None = None  # set on a replica's connection-like path
        self.retired = False  # a replica that ended normally

    def other(self, net: MemoryNetwork) -> MemoryNetwork:
        return self.listener if net is self.dialer else self.dialer

    def new_stream_id(self, opener: PeerId) -> int:
        stream_id = self.next_stream[opener]
        self.next_stream[opener] = stream_id + 2
        return stream_id

    def schedule(self, channel: _Channel, data: bytes | None) -> float:
        """Queue ``data`` (None: end of stream) on its link; returns its due time."""
        faults = self.router.faults
        now = trio.current_time()
        link = channel.link
        ready = now
        if data is not None and faults.bandwidth is not None:
            link.free_at = max(now, link.free_at) + len(data) / faults.bandwidth
            ready = link.free_at
        delay = faults.latency
        if faults.jitter:
            delay += channel.rng.random() * faults.jitter
        breaks = (
            data is not None
            and faults.reset_probability > 0
            and channel.rng.random() < faults.reset_probability
        )
        due = max(ready + delay, channel.last_due)
        channel.last_due = due
        heapq.heappush(
            link.queue, (due, next(self.router._sequence), _Chunk(channel, data, breaks))
        )
        link.changed.unpark_all()
        return due

    async def pump(self, sender: PeerId) -> None:
        """Deliver chunks of the ``sender``'s direction at their due times until broken."""
        link = self.links[sender]
        router = self.router
        while not self.broken and not self.retired:
            if not link.queue:
                await link.changed.park()
                continue
            due, _, chunk = link.queue[0]
            if trio.current_time() < due:
                with trio.move_on_at(due):
                    await link.changed.park()
                continue
            heapq.heappop(link.queue)
            channel = chunk.channel
            if chunk.breaks:
                router.stats.random_resets += 1
                self.break_("connection reset")
                return
            if chunk.data is None:
                channel.eof = True
            elif not channel.reader_gone:
                channel.buffer += chunk.data
                router.stats.chunks_delivered += 1
                router.stats.bytes_delivered += len(chunk.data)
            channel.readable.unpark_all()

    def break_(self, reason: str) -> None:
        """Break the connection: every stream on it fails on both sides; nothing in flight
        or unread survives."""
        if self.broken or self.retired:
            return
        self.broken = True
        self.reason = reason
        if self.replica is not None:
            self.router.stats.replicas_broken += 1
        else:
            self.router.stats.broken_connections += 1
        self.router._connections.discard(self)
        for net in (self.dialer, self.listener):
            net._forget(self)
        for channel in self.channels:
            channel.buffer.clear()
            channel.wake()
            if channel.replica is not None:
                channel.replica.conn.break_("its original stream broke")
        self.channels.clear()
        for link in self.links.values():
            link.queue.clear()
            link.changed.unpark_all()
        logger.debug("memory connection %s broke: %s", self.label, reason)

    def retire(self) -> None:
        """End a replica whose both ends are done (not a break: nothing is lost)."""
        if self.broken or self.retired:
            return
        self.retired = True
        self.router._connections.discard(self)
        for net in (self.dialer, self.listener):
            net._forget(self)
        self.channels.clear()
        for link in self.links.values():
            link.queue.clear()
            link.changed.unpark_all()


class _Replica:
    """A duplicate of one stream direction (dialler to listener) on its own path.

    ``copy`` is the channel the listener's replica handler reads; ``sink`` is the channel it
    writes into, which nobody reads.
    """

    __slots__ = ("conn", "copy", "sink")

    def __init__(self, conn: _Connection, copy: _Channel, sink: _Channel) -> None:
        self.conn = conn
        self.copy = copy
        self.sink = sink
        sink.sink = True
        conn.replica = self
        conn.channels.update((copy, sink))

    def forward(self, data: bytes | None) -> None:
        """Replay a chunk the dialler sent (None: its end of stream) on the replica."""
        conn = self.conn
        copy = self.copy
        if conn.broken or conn.retired:
            return
        if data is None:
            if not copy.eof_sent:
                copy.eof_sent = True
                conn.schedule(copy, None)
            # The replayed dialler is done and stops reading, as after any aclose.
            self.sink.reader_gone = True
            self.sink.wake()
            self.maybe_retire()
            return
        if copy.reader_gone:
            return
        if copy.in_flight >= conn.router.stream_buffer:
            conn.router.stats.replicas_overrun += 1
            conn.break_("replica fell behind its original")
            return
        copy.in_flight += len(data)
        conn.schedule(copy, data)

    def maybe_retire(self) -> None:
        if self.copy.reader_gone and self.copy.eof_sent:
            self.conn.retire()


class _MemoryStream(StreamGuards, trio.abc.Stream):
    """One end of a stream on a memory connection."""

    def __init__(self, conn: _Connection, outgoing: _Channel, incoming: _Channel) -> None:
        self._conn = conn
        self._out = outgoing
        self._in = incoming
        self._init_guards()

    def _check_send(self) -> None:
        if self._conn.broken:
            raise trio.BrokenResourceError(f"connection broken: {self._conn.reason}")
        if self._out.reader_gone:
            raise trio.BrokenResourceError("peer closed the stream")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``; blocks while ``stream_buffer`` bytes are in flight or unread.

        Each chunk is admitted while fewer than ``stream_buffer`` bytes are outstanding, so
        at most ``stream_buffer + chunk_size - 1`` bytes are ever buffered per direction.

        Raises:
            trio.ClosedResourceError: this end was closed (before or during the call).
            trio.BrokenResourceError: the connection broke or the peer closed the stream.
            trio.BusyResourceError: another task is sending on this stream.
        """
        await trio.lowlevel.checkpoint()
        with self._exclusive_send():
            router = self._conn.router
            view = memoryview(data).cast("B")
            while view:
                self._check_send()
                size = min(len(view), router.chunk_size)
                out = self._out
                if out.sink:  # a replica's handler writing back: nobody receives it
                    view = view[size:]
                    continue
                while out.in_flight >= router.stream_buffer:
                    with self._until_closed():
                        await out.space.park()
                    self._check_send()
                out.in_flight += size
                chunk = bytes(view[:size])
                self._conn.schedule(out, chunk)
                if out.replica is not None:
                    out.replica.forward(chunk)
                view = view[size:]

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the stream buffer has room (or the stream is broken).

        Raises:
            trio.ClosedResourceError: this end was closed (before or during the call).
            trio.BusyResourceError: another task is sending on this stream.
        """
        await trio.lowlevel.checkpoint()
        with self._exclusive_send():
            router = self._conn.router
            out = self._out
            while (
                not self._conn.broken
                and not out.reader_gone
                and out.in_flight >= router.stream_buffer
            ):
                with self._until_closed():
                    await out.space.park()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` delivered bytes; ``b""`` after the peer's end of stream.

        Raises:
            trio.ClosedResourceError: this end was closed (before or during the call).
            trio.BrokenResourceError: the connection broke.
            trio.BusyResourceError: another task is receiving on this stream.
        """
        limit = receive_limit(max_bytes, _DEFAULT_RECEIVE)
        await trio.lowlevel.checkpoint()
        with self._exclusive_receive():
            incoming = self._in
            while not incoming.buffer:
                if self._conn.broken:
                    raise trio.BrokenResourceError(f"connection broken: {self._conn.reason}")
                if incoming.eof:
                    return b""
                with self._until_closed():
                    await incoming.readable.park()
            data = bytes(incoming.buffer[:limit])
            del incoming.buffer[:limit]
            incoming.in_flight -= len(data)
            incoming.space.unpark_all()
            return data

    async def aclose(self) -> None:
        """End this side: the peer reads what was sent, then ``b""``; its sends now fail.

        Idempotent; closes even when cancelled (then raises Cancelled afterwards).
        """
        if self._mark_closed():
            conn = self._conn
            if not conn.broken and not conn.retired:
                out = self._out
                if not out.eof_sent:
                    out.eof_sent = True
                    if not out.sink:
                        conn.schedule(out, None)
                    if out.replica is not None:
                        out.replica.forward(None)
                incoming = self._in
                incoming.reader_gone = True
                incoming.buffer.clear()
                incoming.in_flight = 0
                incoming.wake()
                if out.reader_gone:
                    conn.channels.discard(out)
                    conn.channels.discard(incoming)
                if conn.replica is not None:
                    conn.replica.maybe_retire()
        await trio.lowlevel.checkpoint()


class MemoryNetwork(Network):
    """A node's endpoint on a :class:`MemoryRouter`.

    Its address is ``/memory/<peer id>``. The peer ID is taken as authenticated: the router
    plays the role of Noise. Register handlers, then ``await nursery.start(net.serve)``.

    Args:
        router: the medium shared with the other nodes.
        peer_id: this node's identity.
    """

    def __init__(self, router: MemoryRouter, peer_id: PeerId) -> None:
        if not isinstance(router, MemoryRouter) or not isinstance(peer_id, PeerId):
            raise InvalidValue("MemoryNetwork needs a MemoryRouter and a PeerId")
        self._router = router
        self._peer = peer_id
        self._handlers: dict[str, StreamHandler] = {}
        self._addrs: dict[PeerId, list[str]] = {}
        self._conns: dict[PeerId, list[_Connection]] = {}
        self._replicas: set[_Connection] = set()  # replica paths to or from this node
        self._dials = SharedDials()
        self._handler_scopes: set[trio.CancelScope] = set()
        self._nursery: trio.Nursery | None = None
        self._running = False
        self._served = False

    @property
    def router(self) -> MemoryRouter:
        return self._router

    @property
    def local_peer(self) -> PeerId:
        return self._peer

    @property
    def listen_addrs(self) -> list[str]:
        return [memory_addr(self._peer)]

    def set_handler(self, protocol: str, handler: StreamHandler) -> None:
        check_protocol(protocol)
        self._handlers[protocol] = handler

    def add_addrs(self, peer: PeerId, addrs: Sequence[str]) -> None:
        """Remember ``/memory/<peer id>`` addresses for ``peer``.

        Raises:
            InvalidValue: an address is malformed or names another peer.
        """
        if not isinstance(peer, PeerId):
            raise InvalidValue("peer must be a PeerId")
        if isinstance(addrs, str):
            raise InvalidValue("addrs must be a sequence of address strings, not one string")
        for text in addrs:
            if _parse_addr(text) != peer:
                raise InvalidValue(f"{text!r} is not an address of {peer!r}")
        known = self._addrs.setdefault(peer, [])
        for text in addrs:
            if text not in known:
                known.append(text)

    def connected_peers(self) -> set[PeerId]:
        return {peer for peer, conns in self._conns.items() if conns}

    def _forget(self, conn: _Connection) -> None:
        if conn.replica is not None:
            self._replicas.discard(conn)
            return
        peer = conn.other(self).local_peer
        conns = self._conns.get(peer)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[peer]

    async def open_stream(self, peer: PeerId, protocol: str) -> trio.abc.Stream:
        """A new stream to ``peer`` for ``protocol`` after one round trip, dialling if needed.

        Raises:
            InvalidValue: ``protocol`` is not a protocol name.
            PeerUnreachable: not serving, no known address, the dial failed (peer down,
                partitioned, not listening), the connection broke while opening, or the
                peer has no handler for ``protocol``.
        """
        check_stream_target(self._peer, peer, protocol, serving=self._running)
        conn = await self._connect(peer)
        remote = conn.other(self)
        stream_id = conn.new_stream_id(self._peer)
        out = _Channel(conn.links[self._peer], self._router.rng(conn.label, stream_id, "out"))
        back = _Channel(conn.links[peer], self._router.rng(conn.label, stream_id, "back"))
        faults = self._router.faults
        await trio.sleep(faults.latency + out.rng.random() * faults.jitter)
        handler = remote._handlers.get(protocol)
        refused = conn.broken or handler is None or not remote._running
        if not refused:
            conn.channels.update((out, back))
            self._router.stats.streams += 1
            remote._spawn_handler(protocol, self._peer, _MemoryStream(conn, back, out))
            if faults.duplicate_probability > 0 and (
                self._router.rng(conn.label, stream_id, "duplicate").random()
                < faults.duplicate_probability
            ):
                out.replica = self._replicate(conn, stream_id, protocol)
        stream = _MemoryStream(conn, out, back)
        try:
            await trio.sleep(faults.latency + back.rng.random() * faults.jitter)
            if conn.broken:
                raise PeerUnreachable(f"{peer!r}: connection lost while opening ({conn.reason})")
            if refused:
                raise PeerUnreachable(f"{peer!r} refused protocol {protocol!r}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return stream

    def _replicate(self, conn: _Connection, stream_id: int, protocol: str) -> _Replica:
        """Open a replica of stream ``stream_id`` of ``conn`` to the same handler."""
        router = self._router
        remote = conn.other(self)  # this side may be the connection's listener
        path = _Connection(router, self, remote, 0)
        path.label = f"{conn.label}/{stream_id}/replica"
        copy = _Channel(path.links[self._peer], router.rng(path.label, "copy"))
        sink = _Channel(path.links[remote.local_peer], router.rng(path.label, "sink"))
        replica = _Replica(path, copy, sink)
        router._connections.add(path)
        self._replicas.add(path)
        remote._replicas.add(path)
        router.stats.replicas += 1
        router.stats.streams += 1
        self._start(path.pump, self._peer)
        remote._spawn_handler(protocol, self._peer, _MemoryStream(path, sink, copy))
        return replica

    async def _connect(self, peer: PeerId) -> _Connection:
        """The newest live connection to ``peer``; one dial per peer at a time, shared."""
        await self._dials.ensure(
            peer, lambda: bool(self._conns.get(peer)), lambda: self._dial(peer)
        )
        return self._conns[peer][-1]  # no checkpoint since ensure() saw it or dial() made it

    async def _dial(self, peer: PeerId) -> str | None:
        """Open a connection to ``peer`` (None), or say why it cannot be reached."""
        router = self._router
        router.stats.dials += 1
        if not self._addrs.get(peer):
            router.stats.dial_failures += 1
            return f"{peer!r}: no known address"
        index = router._next_dial(self._peer, peer)
        rng = router.rng("dial", self._peer, peer, index)
        faults = router.faults
        await trio.sleep(faults.dial_latency + rng.random() * faults.jitter)
        reason = router.why_unreachable(self._peer, peer)
        if reason is None and not self._running:
            reason = "this network stopped serving"
        if reason is not None:
            router.stats.dial_failures += 1
            return f"{peer!r} unreachable: {reason}"
        remote = router._networks[peer]
        conn = _Connection(router, self, remote, index)
        router._connections.add(conn)
        router.stats.connections += 1
        self._conns.setdefault(peer, []).append(conn)
        remote._conns.setdefault(self._peer, []).append(conn)
        self._start(conn.pump, self._peer)
        remote._start(conn.pump, peer)
        return None

    def _start(self, pump: _PumpFn, sender: PeerId) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(pump, sender)

    def _spawn_handler(self, protocol: str, remote: PeerId, stream: _MemoryStream) -> None:
        handler = self._handlers[protocol]
        assert self._nursery is not None

        self._nursery.start_soon(
            run_handler, handler, protocol, remote, stream, self._handler_scopes, logger
        )

    async def disconnect(self, peer: PeerId) -> None:
        """Break every connection to ``peer``; its streams fail on both sides."""
        for conn in list(self._conns.get(peer, ())):
            conn.break_("disconnected")
        for path in [p for p in self._replicas if p.other(self).local_peer == peer]:
            path.break_("disconnected")
        await trio.lowlevel.checkpoint()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Attach to the router and dispatch streams until cancelled.

        On cancellation breaks every connection of this node and cancels its handlers.

        Raises:
            NetworkError: :meth:`serve` already ran, or another network with this peer ID is
                serving on the router.
        """
        if self._served:
            raise NetworkError("MemoryNetwork.serve() runs once per instance")
        self._served = True
        self._router._register(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._running = True
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    self._running = False
                    self._router._unregister(self)
                    for conns in list(self._conns.values()):
                        for conn in list(conns):
                            conn.break_("peer stopped")
                    for path in list(self._replicas):
                        path.break_("peer stopped")
                    for scope in list(self._handler_scopes):
                        scope.cancel()
        finally:
            self._running = False
            self._router._unregister(self)
            self._nursery = None
