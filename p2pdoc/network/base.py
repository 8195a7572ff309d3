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
  ``receive_some`` returns ``b""`` at a clean end of stream; a broken connection raises
  :class:`trio.BrokenResourceError` (translated to :class:`~p2pdoc.errors.ConnectionLost` by
  the protocol layer).
- One connection per peer pair; many streams per connection; opening a stream on an existing
  connection costs no handshake.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence

import trio

from p2pdoc.model.ids import PeerId

__all__ = ["Network", "StreamHandler"]

StreamHandler = Callable[[PeerId, trio.abc.Stream], Awaitable[None]]
"""Called in the network's nursery for each incoming stream of a protocol.

The handler owns the stream and should close it. An exception escaping a handler is logged and
closes that stream only; it never stops the network.
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

        Streams for protocols without a handler are refused.
        """

    @abc.abstractmethod
    def add_addrs(self, peer: PeerId, addrs: Sequence[str]) -> None:
        """Remember where ``peer`` may be dialled (merged with what is already known)."""

    @abc.abstractmethod
    async def open_stream(self, peer: PeerId, protocol: str) -> trio.abc.Stream:
        """A new stream to ``peer`` for ``protocol``, connecting first if needed.

        Raises:
            PeerUnreachable: no address works, the dial timed out, or the peer refused the
                protocol.
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
        returns with :attr:`listen_addrs` valid). On cancellation closes every connection.
        """
