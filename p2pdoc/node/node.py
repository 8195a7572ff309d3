"""The node: an agency's endpoint in the mesh, composed of sessions, sender, receiver, status
desk and block server over one store and one network.

Use as an async context manager::

    async with Node(config, store=store, network=network, credentials=me, trust=trust,
                    directory=directory) as node:
        document = await node.create_document(envelope, files, signer=officials)
        handle = await node.send(document)
        await handle.wait()

On entry the node starts listening, resumes unfinished deliveries and status pushes from the
store, and serves peers; on exit it stops everything it started. Nothing acknowledged is lost
when the process dies at any point: the store holds the outbox, the inbox, receipts and
status trails, and a restarted node carries on from them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import trio

from p2pdoc.codecs.cid import Cid
from p2pdoc.content.documents import FileSource
from p2pdoc.delivery.evidence import Evidence, Receipt, Staff, StatusCode, StatusReport
from p2pdoc.delivery.states import InboxEntry, InboxState, OutboxEntry, OutboxState
from p2pdoc.errors import LocalProtocolError, NotFound, P2pdocError
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.model.manifest import Manifest
from p2pdoc.network.base import Network
from p2pdoc.node.batcher import EvidenceBatcher
from p2pdoc.node.blocks import BlockServer
from p2pdoc.node.clock import Clock, TrioWallClock
from p2pdoc.node.config import NodeConfig
from p2pdoc.node.context import (
    DocumentSigner,
    KeyedLocks,
    NodeContext,
    NodeCredentials,
    NodeTrust,
)
from p2pdoc.node.directory import PeerDirectory
from p2pdoc.node.receiver import INBOX_ORDER, InboxCursor, InboxItem, Receiver
from p2pdoc.node.sender import Document, Sender
from p2pdoc.node.sessions import Sessions
from p2pdoc.node.status import StatusDesk, StatusTrail
from p2pdoc.protocol.messages import Ack, GetBlocks, Offer, OfferResult, PushStatus
from p2pdoc.protocol.session import Session
from p2pdoc.store.base import Store

log = logging.getLogger(__name__)

__all__ = ["Node", "PeerStatus", "SendHandle", "StatusListener"]

StatusListener = Callable[[StatusReport], None]
"""Called with each status report a recipient pushes to this node, once it is verified and
kept (a replayed report may be passed again). Must not block or raise."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A peer as this node sees it: from the directory, a live session, or both.

    Attributes:
        agency: the agency code (certified when ``connected``; from the directory otherwise).
        peer: the node's peer ID.
        addrs: dialable addresses from the directory (empty if it is not listed).
        listed: the directory names this node.
        connected: an admitted session is live now.
        agent: the peer's software, as it announced it at admission ("" if not connected).
        bytes_sent: frame bytes sent over the live session (0 if not connected).
        bytes_received: frame bytes received over the live session.
    """

    agency: AgencyCode
    peer: PeerId
    addrs: tuple[str, ...]
    listed: bool
    connected: bool
    agent: str = ""
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(frozen=True, slots=True)
class SendHandle:
    """A sent document: per-recipient delivery state and receipts."""

    root: Cid
    recipients: tuple[AgencyCode, ...]
    _node: Node

    def states(self) -> dict[AgencyCode, OutboxState]:
        return {r: e.state for r, e in self._node._sender.entries(self.root).items()}

    async def entries(self) -> dict[AgencyCode, OutboxEntry]:
        return await self._node._sender.load_entries(self.root)

    async def wait(self) -> dict[AgencyCode, OutboxEntry]:
        """Wait until every recipient's delivery is DELIVERED or FAILED; returns the entries.

        Wrap in ``trio.move_on_after`` / ``fail_after`` to bound the wait.
        """
        sender = self._node._sender
        while True:
            # Watch before looking, so that a change while the store is read is not missed.
            # Memory holds unfinished and recent entries; what finished before a restart is
            # read from the store.
            changed = sender.changed(self.root)
            entries = sender.entries(self.root)
            if any(r not in entries for r in self.recipients):
                entries = await sender.load_entries(self.root)
            if all(
                entries.get(r) is not None and entries[r].state.terminal for r in self.recipients
            ):
                return {r: entries[r] for r in self.recipients}
            await changed.wait()

    async def receipts(self) -> dict[AgencyCode, Receipt]:
        """The verified receipts received so far."""
        out = {}
        for recipient, entry in (await self.entries()).items():
            if entry.receipt is not None:
                out[recipient] = Receipt.decode(Evidence.decode(entry.receipt).body)
        return out


class Node:
    """One agency's node. See the module docstring.

    Args:
        config: settings (frozen; see :class:`~p2pdoc.node.config.NodeConfig`).
        store: where everything durable lives; the node does not close it.
        network: the transport; the node runs its ``serve``.
        credentials: this node's agency, peer ID, certificate chain and key.
        trust: certificate, signature and policy decisions.
        directory: where other agencies' nodes are.
        clock: wall clock for signed records and schedules (default: trio's clock anchored to
            the system clock).
        rng: randomness for retry jitter (seed it for reproducible simulations).
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        store: Store,
        network: Network,
        credentials: NodeCredentials,
        trust: NodeTrust,
        directory: PeerDirectory | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if network.local_peer != credentials.peer:
            raise LocalProtocolError("the network's peer ID is not the one the credentials certify")
        self._ctx = NodeContext(
            config=config,
            store=store,
            clock=clock or TrioWallClock(),
            rng=rng or random.Random(),
            credentials=credentials,
            trust=trust,
            directory=directory if directory is not None else PeerDirectory(),
        )
        self._network = network
        self._sessions = Sessions(self._ctx, network, self)
        self._batcher = EvidenceBatcher(credentials, self._ctx.clock, config.evidence)
        self._status = StatusDesk(self._ctx, self._sessions)
        self._sender = Sender(self._ctx, self._sessions, self._status)
        self._receiver = Receiver(self._ctx, self._sessions, self._batcher, self._status)
        self._blocks = BlockServer(self._ctx, self._sender.blocks_served)
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        # One report at a time per document: each names its predecessor's digest and number.
        self._reporting: KeyedLocks[Cid] = KeyedLocks()
        self._collected = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(self._network.serve)
            await nursery.start(self._sessions.run)
            await nursery.start(self._batcher.run)
            await nursery.start(self._receiver.run)
            await nursery.start(self._status.run)
            await self._sender.resume()
            await self._status.resume()
            await nursery.start(self._sender.run)
            nursery.start_soon(self._housekeeping_loop)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack, self._nursery = stack, nursery
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None and self._nursery is not None
        self._sessions.close_all()
        self._nursery.cancel_scope.cancel()
        stack, self._stack, self._nursery = self._stack, None, None
        return await stack.__aexit__(exc_type, exc, tb)

    # -- identity -----------------------------------------------------------------------

    @property
    def agency(self) -> AgencyCode:
        return self._ctx.agency

    @property
    def peer(self) -> PeerId:
        return self._ctx.credentials.peer

    @property
    def listen_addrs(self) -> list[str]:
        return self._network.listen_addrs

    @property
    def directory(self) -> PeerDirectory:
        return self._ctx.directory

    # -- sending ------------------------------------------------------------------------

    async def create_document(
        self,
        envelope: Envelope,
        files: Sequence[FileSource],
        *,
        signer: DocumentSigner,
        seal: bool | None = None,
    ) -> Document:
        """Store ``files`` as blocks, build and sign the manifest; the document is ready to send.

        The same envelope and files again give the document already stored.

        Args:
            seal: encrypt the header and files to the recipients' node keys (and this node's)
                so that nodes storing or relaying the blocks learn only sizes and routing
                fields; by default, when the classification policy requires it. Every
                recipient must be reachable now: its key comes from its node certificate.

        Raises:
            InvalidValue: the envelope's sender is not this node's agency.
            PeerUnreachable: a recipient of a document to seal cannot be reached.
            StoreError: the store failed.
        """
        return await self._sender.create_document(envelope, files, signer, seal=seal)

    async def send(self, document: Document, *, deadline: float | None = None) -> SendHandle:
        """Queue ``document`` for every recipient it names; durable when this returns.

        Args:
            deadline: seconds by which each recipient's receipt must arrive (default from the
                configuration); a recipient without one by then is FAILED with the last error.

        Raises:
            InvalidValue: ``deadline`` is not a number of seconds in (0, ten years].
            PolicyRefused: the classification policy forbids sending it.
            StoreError: the outbox could not be written (nothing was queued).
        """
        await self._sender.send(document, deadline)
        return SendHandle(document.root, document.envelope.recipient_codes, self)

    def handle(self, document: Document) -> SendHandle:
        """The handle of a document sent earlier (e.g. before a restart)."""
        return SendHandle(document.root, document.envelope.recipient_codes, self)

    # -- receiving ----------------------------------------------------------------------

    def inbox(self) -> InboxCursor:
        """Received documents not yet acknowledged, in arrival order, then new ones as they
        come (the iterator does not end). Call ``await item.ack()`` once the application has
        taken a document; until then it is handed over again after a restart."""
        return self._receiver.items()

    async def report_status(
        self,
        root: Cid,
        code: StatusCode,
        *,
        staff: Staff | None = None,
        description: str = "",
    ) -> StatusReport:
        """Report how a received document is being handled; the sender gets it, signed.

        Raises:
            NotFound: no received document ``root``.
            InvalidValue: ``code`` may not follow the last status reported.
        """
        entry = await self._receiver.entry(root)
        if entry is None or entry.state is InboxState.RECEIVING:
            raise NotFound(f"no received document {root}")
        record = await self._ctx.store.get_document(root)
        envelope = Manifest.decode(record.manifest, expected=root).envelope
        sender_peer = PeerId.parse(entry.sender_peer)
        async with self._reporting.hold(root):
            # From reading the last report to keeping the new one: a concurrent report on the
            # same document would otherwise take the same number and replace this one.
            report = await self._status.next_report(
                root, envelope, code, staff or Staff(), description
            )
            (evidence,) = await self._batcher.sign([report.encode()])
            await self._ctx.store.write(self._status.record_ops(report, evidence, sender_peer))
            self._status.recorded(report, evidence, sender_peer)
        return report

    async def status_trail(self, root: Cid, recipient: AgencyCode) -> StatusTrail:
        """``recipient``'s status reports on ``root`` as kept here, verified."""
        return await self._status.trail(root, recipient)

    async def wait_status(self, root: Cid) -> None:
        """Return when a new status report on ``root`` arrives."""
        await self._status.wait_changed(root)

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener`` with every status report a recipient sends to this node from now
        on (pushed, or carried with a receipt)."""
        self._status.listeners.append(listener)

    # -- queries (for daemons and dashboards) -------------------------------------------

    async def sent_entries(self, root: Cid) -> dict[AgencyCode, OutboxEntry]:
        """Every recipient's outbox entry for a document sent from here (empty if none)."""
        return await self._sender.load_entries(root)

    async def wait_delivery_change(self, root: Cid) -> None:
        """Return when a recipient's persisted delivery state of ``root`` changes (an attempt
        failed and waits for a retry, a receipt arrived, the delivery failed)."""
        await self._sender.wait_changed(root)

    def tracked_entries(self, root: Cid) -> dict[AgencyCode, OutboxEntry]:
        """The recipients' entries of ``root`` held in memory, without waiting: every
        unfinished delivery and the recently finished ones (else empty; see
        :meth:`sent_entries`). Read it, then call :meth:`wait_delivery_change` without an
        ``await`` in between, and no change is missed."""
        return self._sender.entries(root)

    def unfinished_deliveries(self) -> dict[Cid, dict[AgencyCode, OutboxState]]:
        """Documents with at least one delivery neither DELIVERED nor FAILED, with every
        recipient's current state (in-flight states included). Read from memory."""
        return self._sender.unfinished()

    async def inbox_entry(self, root: Cid) -> InboxEntry | None:
        """The inbox entry of a received (or still arriving) document, None if unknown."""
        return await self._receiver.entry(root)

    async def received(self, root: Cid) -> InboxItem:
        """A received document, acknowledged or not.

        Raises:
            NotFound: no document ``root`` was received (or it is still arriving).
        """
        entry = await self._receiver.entry(root)
        if entry is None or entry.state is InboxState.RECEIVING:
            raise NotFound(f"no received document {root}")
        return await self._receiver.item(root, entry)

    async def pending_inbox(
        self, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, InboxItem]]:
        """Stored, unacknowledged documents in arrival order without waiting: ``(cursor,
        item)`` pairs; pass the last cursor as ``after`` for the next page."""
        out: list[tuple[str, InboxItem]] = []
        page = await self._ctx.store.list_records(INBOX_ORDER, after=after, limit=limit)
        for key, value in page:
            root = Cid.parse(str(value))
            entry = await self._receiver.entry(root)
            if entry is not None and entry.state is InboxState.STORED:
                out.append((key, await self._receiver.item(root, entry)))
        return out

    async def ack(self, root: Cid) -> bool:
        """Mark a received document taken by the application (idempotent).

        Returns:
            True if this call acknowledged it, False if it already was acknowledged.

        Raises:
            NotFound: no such received document.
        """
        await self.received(root)
        return await self._receiver.ack(root)

    def peers(self) -> list[PeerStatus]:
        """Every peer in the directory or with a live session, ordered by agency code."""
        live = {s.peer.peer: s for s in self._sessions.live()}
        out: dict[PeerId, PeerStatus] = {}
        for record in self._ctx.directory.records():
            session = live.get(record.peer)
            out[record.peer] = PeerStatus(
                agency=session.peer.agency if session is not None else record.agency,
                peer=record.peer,
                addrs=record.addrs,
                listed=True,
                connected=session is not None,
                agent=session.peer.agent if session is not None else "",
                bytes_sent=session.bytes_sent if session is not None else 0,
                bytes_received=session.bytes_received if session is not None else 0,
            )
        for peer, session in live.items():
            if peer not in out:
                out[peer] = PeerStatus(
                    agency=session.peer.agency,
                    peer=peer,
                    addrs=(),
                    listed=False,
                    connected=True,
                    agent=session.peer.agent,
                    bytes_sent=session.bytes_sent,
                    bytes_received=session.bytes_received,
                )
        return sorted(out.values(), key=lambda p: (str(p.agency), str(p.peer)))

    # -- housekeeping -------------------------------------------------------------------

    def readmit_peers(self) -> int:
        """Check every connected peer's certificate chain again and close the sessions of
        those that would no longer be admitted (revoked or expired since). Call it after
        adding a revocation list to the trust store; housekeeping runs it too. Returns how
        many sessions were closed."""
        return self._sessions.readmit()

    async def housekeeping(self) -> tuple[int, int]:
        """One housekeeping round (the node runs one every ``housekeeping_interval``):
        sessions of peers no longer admitted are closed (:meth:`readmit_peers`), receptions
        without progress for ``receive.abandon_after`` are given up, then blocks that no
        document, draft or reception keeps are deleted from the store.

        Returns:
            (receptions given up, blocks deleted).

        Raises:
            StoreError: the store failed; the next round carries on.
        """
        self.readmit_peers()
        abandoned = await self._receiver.sweep()
        collected = await self._ctx.store.collect_garbage()
        self._collected += collected
        return abandoned, collected

    async def _housekeeping_loop(self) -> None:
        while True:
            await trio.sleep(self._ctx.config.housekeeping_interval)
            try:
                abandoned, collected = await self.housekeeping()
            except P2pdocError as exc:
                log.warning("housekeeping failed: %s", exc)
                continue
            if abandoned or collected:
                log.info("housekeeping: %d receptions given up, %d blocks deleted",
                         abandoned, collected)  # fmt: skip

    # -- health -------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """Counters for monitoring."""
        return {
            "agency": str(self.agency),
            "peer": str(self.peer),
            "sessions": len(self._sessions.live()),
            "refused_peers": self._sessions.refused,
            "delivery_attempts": self._sender.attempts,
            "received": self._receiver.received,
            "duplicate_offers": self._receiver.duplicates,
            "rejected_offers": self._receiver.rejected,
            "status_pending": self._status.pending(),
            "status_pushed": self._status.pushed,
            "status_received": self._status.received,
            "evidence_batches": self._batcher.batches,
            "evidence_records": self._batcher.records,
            "blocks_served": self._blocks.blocks_sent,
            "abandoned_receptions": self._receiver.abandoned,
            "blocks_collected": self._collected,
        }

    # -- serving peers (SessionHandler) -------------------------------------------------

    async def offer(self, session: Session, request: Offer) -> OfferResult:
        return await self._receiver.offer(session, request)

    async def push_status(self, session: Session, request: PushStatus) -> Ack:
        return await self._status.receive(session, request, self._sender.knows)

    async def get_blocks(
        self, session: Session, request: GetBlocks, send: Callable[[Cid, bytes], Awaitable[None]]
    ) -> Sequence[Cid]:
        return await self._blocks.serve(session.peer.agency, request, send)
