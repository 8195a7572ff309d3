"""One admitted session per peer: dialled on demand, accepted from the network, reused."""

from __future__ import annotations

import logging
from contextlib import suppress

import trio

from p2pdoc.errors import (
    AdmissionRefused,
    ConnectionLost,
    NetworkError,
    P2pdocError,
    PeerUnreachable,
    ProtocolError,
    VerificationError,
)
from p2pdoc.model.ids import PeerId
from p2pdoc.network.base import Network
from p2pdoc.node.context import NodeContext
from p2pdoc.protocol.session import Session, SessionHandler, establish

__all__ = ["Sessions"]

log = logging.getLogger(__name__)


class Sessions:
    """Keeps at most one live session per peer for our own requests; accepts the peer's.

    Sessions run in the nursery given to :meth:`run`. A peer that fails admission is
    disconnected at the transport, unless it already holds an admitted session: then only the
    refused stream is closed.
    """

    def __init__(self, ctx: NodeContext, network: Network, handler: SessionHandler) -> None:
        self._ctx = ctx
        self._network = network
        self._handler = handler
        self._live: dict[PeerId, Session] = {}
        self._running: set[Session] = set()
        self._dialling: dict[PeerId, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self.refused = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._network.set_handler(self._ctx.config.protocol, self._accept)
            task_status.started()
            await trio.sleep_forever()

    def live(self) -> list[Session]:
        return [s for s in self._live.values() if not s.closed]

    def find(self, peer: PeerId) -> Session | None:
        session = self._live.get(peer)
        return session if session is not None and not session.closed else None

    async def get(self, peer: PeerId) -> Session:
        """A live session with ``peer``, dialling and admitting if needed.

        Raises:
            PeerUnreachable: no connection, or admission failed (the reason is in the text).
        """
        session = self.find(peer)
        if session is not None:
            return session
        lock = self._dialling.setdefault(peer, trio.Lock())
        async with lock:
            session = self.find(peer)
            if session is not None:
                return session
            record = self._ctx.directory.by_peer(peer)
            if record is not None and record.addrs:
                self._network.add_addrs(peer, record.addrs)
            try:
                with trio.fail_after(self._ctx.config.delivery.dial_timeout):
                    stream = await self._network.open_stream(peer, self._ctx.config.protocol)
                    session = await self._establish(peer, stream)
            except trio.TooSlowError:
                raise PeerUnreachable(f"connecting to {peer} timed out") from None
            except (VerificationError, ProtocolError, ConnectionLost) as exc:
                await self._refuse(peer)
                raise PeerUnreachable(f"session with {peer} not admitted: {exc}") from exc
            await self._start(session)
            return session

    async def _establish(self, peer: PeerId, stream: trio.abc.Stream) -> Session:
        ctx = self._ctx
        return await establish(
            stream,
            local=ctx.credentials.peer,
            remote=peer,
            credentials=ctx.credentials,
            gatekeeper=ctx.trust,
            handler=self._handler,
            limits=ctx.config.session,
        )

    async def _start(self, session: Session) -> None:
        assert self._nursery is not None
        self._live[session.peer.peer] = session
        await self._nursery.start(self._watch, session)

    async def _watch(self, session: Session, *, task_status: trio.TaskStatus[None]) -> None:
        self._running.add(session)
        try:
            await session.run(task_status=task_status)
        finally:
            self._running.discard(session)
            if self._live.get(session.peer.peer) is session:
                del self._live[session.peer.peer]
            log.debug("session with %s closed: %s", session.peer.agency, session.close_reason)

    async def _accept(self, peer: PeerId, stream: trio.abc.Stream) -> None:
        try:
            session = await self._establish(peer, stream)
        except P2pdocError as exc:
            log.info("refused %s: %s", peer, exc)
            if self.find(peer) is None:
                await self._refuse(peer)
            else:
                # The peer holds an admitted session: a stream that fails admission (a replay,
                # a confused client) is closed alone, not the connection the session runs on.
                self.refused += 1
            return
        previous = self.find(peer)
        if previous is None:
            self._live[peer] = session
        self._running.add(session)
        try:
            await session.run()
        finally:
            self._running.discard(session)
            if self._live.get(peer) is session:
                del self._live[peer]

    async def _refuse(self, peer: PeerId) -> None:
        self.refused += 1
        with suppress(NetworkError):
            await self._network.disconnect(peer)

    def readmit(self) -> int:
        """Check every session's peer again (after a new revocation list, or as time
        passes certificates' end) and close those that would no longer be admitted; their
        requests in flight fail with :class:`AdmissionRefused`. Returns how many."""
        closed = 0
        for session in list(self._running):
            reason = None if session.closed else self._ctx.trust.readmit(session.peer.evidence)
            if reason is not None:
                log.warning("closing the session with %s: %s", session.peer.agency, reason)
                session.close(AdmissionRefused(f"no longer admitted: {reason}"))
                closed += 1
        return closed

    def close_all(self) -> None:
        for session in list(self._live.values()):
            session.close()
