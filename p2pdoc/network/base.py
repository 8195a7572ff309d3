"""The transport seam: reach a peer by its ID, exchange bytes over trio streams.

Two implementations pass the conformance suite in ``tests/network/``:
:class:`~p2pdoc.network.libp2p.Libp2pNetwork` (TCP + Noise + Yamux) and
:class:`~p2pdoc.network.memory.MemoryNetwork` (an in-process router for tests and the
simulator, driven by trio's clock so ``MockClock`` controls it).

Contract:
- ``remote peer`` values handed to handlers and returned by dials are **authenticated by the
  transport** (Noise for libp2p; the router for memory). Authorisation (certificates, agency
  codes) is the protocol layer's job: it calls :meth:`Network.disconnect` on refusal.
- Streams are :class:`trio.abc.Stream`: ``send_all`` / ``receive_some`` / ``aclose``;
  ``receive_some`` returns ``b""`` only at the peer's clean end of stream; a reset stream or
  a broken connection raises :class:`trio.BrokenResourceError` (translated to
  :class:`~p2pdoc.errors.ConnectionLost` by the protocol layer); use after ``aclose`` raises
  :class:`trio.ClosedResourceError`, and so does an operation blocked in another task when
  the stream is closed.
- ``aclose`` ends the stream in order and stops reading: the peer receives everything sent
  before it, then ``b""``; the peer's later sends fail with BrokenResourceError.
- Back-pressure: a peer that does not read makes ``send_all`` block (for as long as it takes)
  once one receive window per stream direction is buffered; nothing buffers without bound.
- Cancelling a stream operation never corrupts the connection other streams share (a
  cancelled ``send_all`` may have sent part of its data, as with any trio stream).
- Normally one connection per peer pair (two can briefly coexist after simultaneous dials);
  many streams per connection; opening a stream on an existing connection costs no
  handshake, only the protocol negotiation round trip.
- Every failure to obtain a stream is :class:`~p2pdoc.errors.PeerUnreachable` with the
  reason; a malformed argument is :class:`~p2pdoc.errors.InvalidValue`.
"""

from __future__ import annotations

import abc
import logging
import operator
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import trio

from p2pdoc.errors import InvalidValue, PeerUnreachable
from p2pdoc.model.ids import PeerId

__all__ = [
    "MAX_PROTOCOL_LENGTH",
    "Network",
    "SharedDials",
    "StreamGuards",
    "StreamHandler",
    "check_protocol",
    "check_stream_target",
    "receive_limit",
    "run_handler",
]

MAX_PROTOCOL_LENGTH = 200
"""Longest protocol id a network accepts."""


def check_protocol(protocol: str) -> None:
    """Check a protocol id: printable text starting with ``/``, no spaces, bounded.

    Raises:
        InvalidValue: naming the id.
    """
    if (
        not isinstance(protocol, str)
        or not protocol.startswith("/")
        or len(protocol) > MAX_PROTOCOL_LENGTH
        or not protocol.isprintable()
        or " " in protocol
    ):
        raise InvalidValue(f"protocol must be printable text starting with '/': {protocol!r}")


def check_stream_target(local: PeerId, peer: PeerId, protocol: str, *, serving: bool) -> None:
    """The checks of :meth:`Network.open_stream` before any I/O.

    Raises:
        InvalidValue: ``protocol`` is not a protocol id or ``peer`` is not a PeerId.
        PeerUnreachable: the network is not serving, or ``peer`` is this node itself.
    """
    check_protocol(protocol)
    if not isinstance(peer, PeerId):
        raise InvalidValue("peer must be a PeerId")
    if not serving:
        raise PeerUnreachable(f"{peer!r}: this network is not serving")
    if peer == local:
        raise PeerUnreachable("cannot open a stream to this node itself")


StreamHandler = Callable[[PeerId, trio.abc.Stream], Awaitable[None]]
"""Called in a task owned by the network for each incoming stream of a protocol.

The handler owns the stream and should close it (the network closes it when the handler returns,
as a safety net). An exception escaping a handler is logged and closes that stream only; it never
stops the network. Handlers still running when :meth:`Network.serve` ends are cancelled.
"""


class Network(abc.ABC):
    """One node's endpoint on a network."""

    @property
    @abc.abstractmethod
    def local_peer(self) -> PeerId:
        """This node's peer ID."""

    @property
    @abc.abstractmethod
    def listen_addrs(self) -> list[str]:
        """Multiaddr text this node can be dialled at (valid once :meth:`serve` started)."""

    @abc.abstractmethod
    def set_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Route incoming streams for ``protocol`` (e.g. ``"/p2pdoc/session/1"``) to ``handler``.

        Streams for protocols without a handler are refused (the opener gets
        :class:`~p2pdoc.errors.PeerUnreachable`). Replaces an earlier handler.

        Raises:
            InvalidValue: ``protocol`` is not printable text starting with ``/``.
        """

    @abc.abstractmethod
    def add_addrs(self, peer: PeerId, addrs: Sequence[str]) -> None:
        """Remember where ``peer`` may be dialled (merged with what is already known).

        Raises:
            InvalidValue: an address is malformed, of another transport, or names another peer.
        """

    @abc.abstractmethod
    async def open_stream(self, peer: PeerId, protocol: str) -> trio.abc.Stream:
        """A new stream to ``peer`` for ``protocol``, connecting first if needed.

        Raises:
            PeerUnreachable: not serving, no known address, no address works, the dial timed
                out, the connection broke while opening, or the peer refused the protocol.
            InvalidValue: ``protocol`` is not a protocol name.
        """

    @abc.abstractmethod
    async def disconnect(self, peer: PeerId) -> None:
        """Close the connection to ``peer`` and every stream on it. No-op if not connected."""

    @abc.abstractmethod
    def connected_peers(self) -> set[PeerId]:
        """Peers with an open connection now."""

    @abc.abstractmethod
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and dispatch incoming streams until cancelled.

        Calls ``task_status.started()`` once listening (so ``await nursery.start(net.serve)``
        returns with :attr:`listen_addrs` valid). On cancellation cancels running handlers and
        closes every connection. Runs once per instance.

        Raises:
            NetworkError: already served, or the listen address could not be used.
        """


class StreamGuards:
    """The checks every stream adapter makes, as trio's streams do: a closed stream raises
    :class:`trio.ClosedResourceError`, a second concurrent sender or receiver
    :class:`trio.BusyResourceError`, and an operation blocked in :meth:`_until_closed` when
    the stream is closed raises :class:`trio.ClosedResourceError`."""

    _closed: bool
    _sending: bool
    _receiving: bool
    _op_scopes: set[trio.CancelScope]

    def _init_guards(self) -> None:
        self._closed = False
        self._sending = False
        self._receiving = False
        self._op_scopes = set()

    @contextmanager
    def _exclusive_send(self) -> Iterator[None]:
        """Hold the sending side for one ``send_all`` / ``wait_send_all_might_not_block``."""
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            yield
        finally:
            self._sending = False

    @contextmanager
    def _exclusive_receive(self) -> Iterator[None]:
        """Hold the receiving side for one ``receive_some``."""
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            yield
        finally:
            self._receiving = False

    @contextmanager
    def _until_closed(self) -> Iterator[None]:
        """Run a blocking wait that :meth:`_mark_closed` interrupts with ClosedResourceError."""
        with trio.CancelScope() as scope:
            self._op_scopes.add(scope)
            try:
                yield
            finally:
                self._op_scopes.discard(scope)
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")

    def _mark_closed(self) -> bool:
        """Mark the stream closed and wake every blocked operation; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        for scope in list(self._op_scopes):
            scope.cancel()
        return True


def receive_limit(max_bytes: int | None, default: int) -> int:
    """The byte count a ``receive_some(max_bytes)`` may return (``default`` for None).

    Raises:
        InvalidValue: ``max_bytes`` is below 1 (also a ValueError, as trio's streams raise).
    """
    limit = default if max_bytes is None else operator.index(max_bytes)
    if limit < 1:
        raise InvalidValue("max_bytes must be >= 1")
    return limit


async def run_handler(
    handler: StreamHandler,
    protocol: str,
    remote: PeerId,
    stream: trio.abc.Stream,
    scopes: set[trio.CancelScope],
    logger: logging.Logger,
) -> None:
    """Run ``handler`` on an incoming stream as :data:`StreamHandler` promises.

    The handler runs in a cancel scope added to ``scopes`` (so the network can cancel it);
    a broken or closed stream escaping it is logged at debug level, any other exception with
    its traceback; in every case the stream is closed afterwards.
    """
    with trio.CancelScope() as scope:
        scopes.add(scope)
        try:
            await handler(remote, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("handler for %s from %r: stream ended: %s", protocol, remote, exc)
        except Exception:
            logger.exception("handler for %s from %r failed", protocol, remote)
        finally:
            scopes.discard(scope)
            with trio.CancelScope(shield=True):
                await stream.aclose()


class SharedDials:
    """One dial per peer at a time: callers that need a connection while one is being
    dialled wait for it and share its outcome."""

    def __init__(self) -> None:
        self._pending: dict[PeerId, tuple[trio.Event, list[str]]] = {}

    async def ensure(
        self,
        peer: PeerId,
        connected: Callable[[], bool],
        dial: Callable[[], Awaitable[str | None]],
    ) -> None:
        """Return once ``connected()`` holds, dialling with ``dial`` (None on success, else
        why it failed) unless a dial to ``peer`` is under way already.

        Raises:
            PeerUnreachable: the dial this call made or waited for failed (its reason).
        """
        while not connected():
            pending = self._pending.get(peer)
            if pending is None:
                break
            done, errors = pending
            await done.wait()
            if errors:
                raise PeerUnreachable(errors[0])
        else:
            return
        done, errors = trio.Event(), []
        self._pending[peer] = (done, errors)
        try:
            error = await dial()
            if error is not None:
                errors.append(error)
        finally:
            del self._pending[peer]
            done.set()
        if errors:
            raise PeerUnreachable(errors[0])
