"""The receiving side: offers, fetching blocks from every holder, the inbox, receipts.

An offer is answered only when the document is stored durably with its signed receipt
(DELIVERED), refused for good (REJECTED: not a recipient, bad signature, policy, malformed),
or cannot finish now (RETRY: busy, blocks unavailable, storage full). A duplicate offer gets
the receipt already signed; an offer for a document being received joins that reception.

Exactly once: the inbox holds one entry per document version (its root CID names sender,
document id and content). The application sees each STORED entry, in arrival order, until it
acknowledges it; the entry's root CID is the idempotency key for the application's own
records.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.unixfs import DagLimits, DagWalker, read_file
from p2pdoc.delivery.evidence import Receipt
from p2pdoc.delivery.states import Acked, InboxEntry, InboxState, Stored, advance_inbox
from p2pdoc.errors import (
    ConnectionLost,
    ContentMismatch,
    DecodeError,
    LimitExceeded,
    NotFound,
    P2pdocError,
    PolicyRefused,
    StoreError,
    VerificationError,
)
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.model.manifest import FileEntry, Manifest
from p2pdoc.node.batcher import EvidenceBatcher
from p2pdoc.node.context import KeyedLocks, NodeContext, doc_owner
from p2pdoc.node.sessions import Sessions
from p2pdoc.node.status import StatusDesk
from p2pdoc.protocol.messages import Offer, OfferOutcome, OfferResult
from p2pdoc.protocol.session import Session
from p2pdoc.store.base import (
    DeleteRecord,
    DocumentRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    Unpin,
    WriteOp,
)
from p2pdoc.trust.sealing import OpenedSeal, PlainFile, SegmentOpener

__all__ = ["InboxCursor", "InboxItem", "Receiver"]

log = logging.getLogger(__name__)

INBOX = "inbox"
INBOX_ORDER = "inbox-order"
RECEIVING = "inbox-receiving"
"""Receptions under way, by root: the time of their last progress (ms), so that abandoned
ones can be given up (:meth:`Receiver.sweep`)."""
META = "meta"
_KEEP_MANIFESTS = 1024
"""Manifests of recently received documents kept for handing them to the application."""


class _Reject(P2pdocError):
    """Refuse the offer for good."""


class _Retry(P2pdocError):
    """Cannot finish now; the sender should retry."""


@dataclass(slots=True)
class _Job:
    sender: AgencyCode
    """The agency of the peer whose offer started the reception."""
    done: trio.Event = field(default_factory=trio.Event)
    outcome: OfferOutcome = OfferOutcome.RETRY
    receipt: bytes | None = None
    status: bytes | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A received document waiting for the application.

    For a sealed document the envelope and files are the opened ones: the application sees
    the real header, file names and plaintext; relays saw only routing fields and ciphertext.

    Attributes:
        root: the document version's CID (use it as the idempotency key).
        manifest: the manifest as it travelled (for a sealed document: routing fields only).
        sender_peer: the node it came from.
        received_at: when it was accepted (ms since the epoch).
        receipt: the signed receipt this node returned.
        opened: the opened seal of a sealed document, else None.
    """

    root: Cid
    manifest: Manifest
    sender_peer: PeerId
    received_at: int
    receipt: bytes
    _receiver: Receiver = field(repr=False, compare=False)
    opened: OpenedSeal | None = field(default=None, repr=False, compare=False)

    @property
    def sealed(self) -> bool:
        return self.opened is not None

    @property
    def envelope(self) -> Envelope:
        return self.opened.envelope if self.opened is not None else self.manifest.envelope

    @property
    def files(self) -> tuple[FileEntry | PlainFile, ...]:
        """Each file's name, media type and size (plaintext size for a sealed document)."""
        return self.opened.files if self.opened is not None else self.manifest.files

    def open_file(self, name: str) -> AsyncIterator[bytes]:
        """Stream an attached file's bytes, verified block by block (and, for a sealed
        document, authenticated segment by segment as it is decrypted).

        Raises:
            NotFound: no file of that name.
        """
        get_block = self._receiver._ctx.store.get_block
        for index, file in enumerate(self.files):
            if file.name == name:
                blocks = read_file(self.manifest.files[index].cid, get_block)
                if self.opened is None:
                    return blocks
                opener = SegmentOpener(self.opened.content_key, file_index=index)
                return _opened(blocks, opener)
        raise NotFound(f"document {self.root} has no file {name!r}")

    async def read_file(self, name: str) -> bytes:
        """A whole attached file (for small files; use :meth:`open_file` for large ones)."""
        return b"".join([chunk async for chunk in self.open_file(name)])

    async def ack(self) -> None:
        """Mark the document taken by the application; it will not be handed over again."""
        await self._receiver.ack(self.root)


async def _opened(blocks: AsyncIterator[bytes], opener: SegmentOpener) -> AsyncIterator[bytes]:
    async for chunk in blocks:
        for plain in opener.feed(chunk):
            yield plain
    yield opener.finish()


class InboxCursor:
    """Iterates the inbox: stored, unacknowledged documents in arrival order, then waits for
    new ones. Never ends by itself; leaving the loop early is fine."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._after: str | None = None
        self._ready: list[tuple[str, Cid]] = []

    def __aiter__(self) -> InboxCursor:
        return self

    async def __anext__(self) -> InboxItem:
        receiver = self._receiver
        while True:
            while self._ready:
                key, root = self._ready.pop(0)
                self._after = key
                entry = await receiver.entry(root)
                if entry is not None and entry.state is InboxState.STORED:
                    return await receiver.item(root, entry)
            arrived = receiver._arrived
            page = await receiver._ctx.store.list_records(INBOX_ORDER, after=self._after, limit=100)
            self._ready = [(key, Cid.parse(root)) for key, root in page]
            if not self._ready:
                await arrived.wait()


class Receiver:
    """Offers, block fetching, inbox."""

    def __init__(
        self, ctx: NodeContext, sessions: Sessions, batcher: EvidenceBatcher, status: StatusDesk
    ) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._batcher = batcher
        self._status = status
        self._jobs: dict[Cid, _Job] = {}
        self._entries: dict[Cid, InboxEntry] = {}
        # Manifests of the documents received last (validated then), for the inbox items.
        self._manifests: OrderedDict[Cid, Manifest] = OrderedDict()
        self._arrived = trio.Event()
        self._seq = 0
        self._nursery: trio.Nursery | None = None
        self._sweeping: set[Cid] = set()
        self._acking: KeyedLocks[Cid] = KeyedLocks()
        self.received = 0
        self.abandoned = 0
        self.duplicates = 0
        self.rejected = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._seq = await self._last_seq()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def _last_seq(self) -> int:
        """The highest arrival number used so far.

        Receptions that finish together may commit in any order, so the stored counter can lag
        behind a number already taken: continue after the last arrival recorded past it, lest a
        new document take an unacknowledged one's place in the inbox order.
        """
        store = self._ctx.store
        try:
            seq = int(await store.get_record(META, "inbox-seq"))
        except NotFound:
            seq = 0
        after = f"{seq:016d}"
        while page := await store.list_records(INBOX_ORDER, after=after, limit=1000):
            after = page[-1][0]
        return int(after)

    # -- the inbox ----------------------------------------------------------------------

    async def entry(self, root: Cid) -> InboxEntry | None:
        entry = self._entries.get(root)
        if entry is None:
            try:
                entry = InboxEntry.from_value(await self._ctx.store.get_record(INBOX, str(root)))
            except NotFound:
                return None
            if entry.state is not InboxState.RECEIVING:
                self._remember(root, entry)
        return entry

    def _remember(self, root: Cid, entry: InboxEntry) -> None:
        if len(self._entries) > 10_000:
            self._entries.pop(next(iter(self._entries)))
        self._entries[root] = entry

    def items(self) -> InboxCursor:
        """Every stored, unacknowledged document in arrival order, then new ones as they come."""
        return InboxCursor(self)

    async def item(self, root: Cid, entry: InboxEntry) -> InboxItem:
        manifest = self._manifests.get(root)
        if manifest is None:
            record = await self._ctx.store.get_document(root)
            manifest = Manifest.decode(record.manifest, expected=root)
        assert entry.receipt is not None
        opened = self._ctx.credentials.open_seal(manifest) if manifest.seal is not None else None
        return InboxItem(
            root=root,
            manifest=manifest,
            sender_peer=PeerId.parse(entry.sender_peer),
            received_at=entry.received_at,
            receipt=entry.receipt,
            _receiver=self,
            opened=opened,
        )

    async def ack(self, root: Cid) -> bool:
        """Acknowledge ``root``; False if it already was (concurrent calls: one gets True)."""
        async with self._acking.hold(root):
            entry = await self.entry(root)
            if entry is None:
                raise NotFound(f"no inbox entry for {root}")
            if entry.state is InboxState.ACKED:
                return False
            acked = advance_inbox(entry, Acked(self._ctx.clock.now_ms()))
            await self._ctx.store.write(
                [
                    PutRecord(INBOX, str(root), acked.to_value()),
                    DeleteRecord(INBOX_ORDER, f"{entry.seq:016d}"),
                ]
            )
            self._remember(root, acked)
            return True

    # -- abandoned receptions -----------------------------------------------------------

    async def _discard(self, root: Cid) -> None:
        """Forget an unfinished reception: its inbox entry, its record and its blocks' pin."""
        await self._ctx.store.write(
            [
                Unpin(doc_owner(root)),
                DeleteRecord(INBOX, str(root)),
                DeleteRecord(RECEIVING, str(root)),
            ]
        )

    async def sweep(self) -> int:
        """Give up every reception without progress for ``receive.abandon_after``: its blocks
        are released (for the store's garbage collection) and its inbox entry forgotten, so
        that a sender that never comes back cannot keep storage in use. A later offer of the
        document starts afresh. Returns how many were given up.

        Raises:
            StoreError: the store failed (receptions given up so far stay so).
        """
        ctx = self._ctx
        cutoff = ctx.clock.now_ms() - round(1000 * ctx.config.receive.abandon_after)
        stale: list[Cid] = []
        after: str | None = None
        while page := await ctx.store.list_records(RECEIVING, after=after, limit=1000):
            after = page[-1][0]
            stale += [Cid.parse(k) for k, v in page if isinstance(v, int) and v <= cutoff]
        count = 0
        for root in stale:
            if root in self._jobs:  # under way again
                continue
            self._sweeping.add(root)
            try:
                entry = await self.entry(root)
                if entry is not None and entry.state is not InboxState.RECEIVING:
                    # Stored by a later attempt that had nothing to record: keep it.
                    await ctx.store.write([DeleteRecord(RECEIVING, str(root))])
                    continue
                await self._discard(root)
            finally:
                self._sweeping.discard(root)
            self._entries.pop(root, None)
            count += 1
            log.info("gave up the reception of %s: no progress", root)
        self.abandoned += count
        return count

    # -- offers -------------------------------------------------------------------------

    async def offer(self, session: Session, request: Offer) -> OfferResult:
        root = Cid.of(Multicodec.DAG_CBOR, request.manifest)
        offerer = session.peer.agency
        entry = await self.entry(root)
        if entry is not None and entry.state is not InboxState.RECEIVING:
            # Only the document's sender learns of its receipt (the check of a first offer).
            if entry.sender != str(offerer):
                reason = f"the document is from {entry.sender}, the offer from {offerer}"
                return OfferResult(request.rid, OfferOutcome.REJECTED, None, reason)
            self.duplicates += 1
            arrival = await self._status.own_arrival(root)
            return OfferResult(request.rid, OfferOutcome.DELIVERED, entry.receipt, status=arrival)
        if root in self._sweeping:
            return OfferResult(
                request.rid, OfferOutcome.RETRY, None, "busy: the reception is being given up"
            )
        job = self._jobs.get(root)
        if job is not None and job.sender != offerer:
            # Neither joins the other's reception: its outcome answers that offer alone.
            return OfferResult(
                request.rid, OfferOutcome.RETRY, None, "busy: offered by another agency now"
            )
        if job is None:
            if len(self._jobs) >= self._ctx.config.receive.max_concurrent_receives:
                return OfferResult(
                    request.rid, OfferOutcome.RETRY, None, "busy: too many documents being received"
                )
            job = self._jobs[root] = _Job(offerer)
            assert self._nursery is not None
            self._nursery.start_soon(self._run_job, job, session, request, root)
        await job.done.wait()
        return OfferResult(request.rid, job.outcome, job.receipt, job.reason, job.status)

    async def _run_job(self, job: _Job, session: Session, request: Offer, root: Cid) -> None:
        try:
            job.receipt, job.status = await self._receive(session, request, root)
            job.outcome = OfferOutcome.DELIVERED
            self.received += 1
        except _Reject as exc:
            job.outcome, job.reason = OfferOutcome.REJECTED, str(exc)
            self.rejected += 1
            log.warning("refused document %s from %s: %s", root, session.peer.agency, exc)
        except (_Retry, StoreError, P2pdocError) as exc:
            job.outcome, job.reason = OfferOutcome.RETRY, f"{type(exc).__name__}: {exc}"
            log.info("could not finish %s from %s now: %s", root, session.peer.agency, exc)
        finally:
            del self._jobs[root]
            job.done.set()

    def _check(self, session: Session, request: Offer, root: Cid) -> Manifest:
        """Everything that can be decided from the offer alone. Raises _Reject."""
        ctx = self._ctx
        try:
            manifest = Manifest.decode(request.manifest, expected=root)
        except (DecodeError, VerificationError) as exc:
            raise _Reject(f"malformed manifest: {exc}") from exc
        envelope = manifest.envelope
        if ctx.agency not in envelope.recipient_codes:
            raise _Reject(f"{ctx.agency} is not a recipient of this document")
        if envelope.sender.code != session.peer.agency:
            raise _Reject(
                f"the document is from {envelope.sender.code}, the offer from {session.peer.agency}"
            )
        if manifest.total_size > ctx.config.receive.max_document_size:
            raise _Reject(f"document of {manifest.total_size} bytes is over this node's limit")
        try:
            ctx.trust.verify_document(root, request.signatures, manifest, ctx.now())
            if manifest.seal is not None:
                # Accept only what this node can open: a seal without our key, or one that
                # fails authentication, would be a receipt for content nobody here can read.
                ctx.credentials.open_seal(manifest)
        except (VerificationError, PolicyRefused, DecodeError) as exc:
            raise _Reject(f"{type(exc).__name__}: {exc}") from exc
        return manifest

    async def _receive(
        self, session: Session, request: Offer, root: Cid
    ) -> tuple[bytes, bytes | None]:
        """Receive and store the document. Returns its receipt and arrival report."""
        ctx = self._ctx
        manifest = self._check(session, request, root)
        envelope = manifest.envelope
        now = ctx.clock.now_ms()
        pending = InboxEntry(
            root=str(root),
            sender=str(envelope.sender.code),
            sender_peer=str(session.peer.peer),
            document_id=str(envelope.document_id),
            received_at=now,
            seq=0,
        )
        try:
            fetch = _Fetch(self, session, request, root, manifest, pending)
            cids, ops = await fetch.run()
        except _Reject:
            # Refused for good by its content, from its own sender: what an earlier attempt
            # kept is of no more use.
            with trio.CancelScope(shield=True):
                try:
                    await self._discard(root)
                except StoreError as exc:
                    log.warning("blocks of refused document %s not released: %s", root, exc)
            raise
        if fetch.started:
            ops.append(DeleteRecord(RECEIVING, str(root)))
        # Sign the receipt (and the arrival status) before committing, so that a stored
        # document always has its receipt: a crash before the write leaves nothing to redo
        # but the fetch, a crash after it leaves a receipt to answer the retried offer with.
        receipt = Receipt(
            root=root,
            document_id=envelope.document_id,
            sender=envelope.sender.code,
            recipient=ctx.agency,
            node=ctx.credentials.peer,
            received_at=now,
            files=tuple(f.cid for f in manifest.files),
            signatures_digest=hashlib.sha256(request.signatures).digest(),
        )
        bodies = [receipt.encode()]
        arrival = (
            self._status.arrival_report(root, envelope)
            if ctx.config.receive.auto_arrived_status
            else None
        )
        if arrival is not None:
            bodies.append(arrival.encode())
        evidence = await self._batcher.sign(bodies)
        self._seq += 1
        seq = self._seq
        entry = advance_inbox(replace(pending, seq=seq), Stored(ctx.clock.now_ms(), evidence[0]))
        record = DocumentRecord(
            root=root,
            document_id=str(envelope.document_id),
            sender=str(envelope.sender.code),
            manifest=request.manifest,
            signatures=request.signatures,
            created_at=now,
        )
        ops += [
            # The manifest block too, so the document is one DAG under its root.
            PutBlock(root, request.manifest, verified=True),
            Pin(doc_owner(root), (root, *cids)),
            PutDocument(record),
            PutRecord(INBOX, str(root), entry.to_value()),
            PutRecord(INBOX_ORDER, f"{seq:016d}", str(root)),
            PutRecord(META, "inbox-seq", seq),
        ]
        if arrival is not None:
            # Our own trail only: the arrival report travels with the receipt.
            ops += self._status.own_ops(arrival, evidence[1])
        await ctx.store.write(ops)
        self._remember(root, entry)
        self._manifests[root] = manifest
        if len(self._manifests) > _KEEP_MANIFESTS:
            self._manifests.popitem(last=False)
        if arrival is not None:
            self._status.remember_own(arrival)
        self._arrived.set()
        self._arrived = trio.Event()
        return evidence[0], evidence[1] if arrival is not None else None


class _Fetch:
    """Gets every block of a document into the store: inline ones, ones already here (a
    resumed reception), and the rest from the sender and the other holders it named."""

    def __init__(
        self,
        receiver: Receiver,
        session: Session,
        request: Offer,
        root: Cid,
        manifest: Manifest,
        pending: InboxEntry,
    ) -> None:
        self._receiver = receiver
        self._ctx = receiver._ctx
        self._session = session
        self._root = root
        self._pending = pending
        self._inline: dict[Cid, bytes] = {}
        for cid, data in request.blocks:
            try:
                cid.verify(data)
            except ContentMismatch as exc:
                raise _Reject(f"inline block does not match its CID: {exc}") from exc
            self._inline[cid] = data
        self._providers = list(dict.fromkeys(request.providers))
        # Each file's DAG may hold no more than its manifest entry declares: a DAG claiming
        # more would have the recipient fetch and store bytes the offer never announced.
        self._walkers = [
            DagWalker(f.cid, limits=DagLimits(max_file_size=max(f.size, 1))) for f in manifest.files
        ]
        self._entries = {id(w): f for w, f in zip(self._walkers, manifest.files, strict=True)}
        self._cids: dict[Cid, None] = {}
        self._waiting: dict[Cid, list[DagWalker]] = {}
        self._pool: deque[Cid] = deque()
        self._lacking: dict[int, set[Cid]] = {}
        self._alive: set[int] = set()
        self._pool_changed = trio.Event()
        self._buffer: list[PutBlock] = []
        self._buffered = 0
        self._started = False
        # Blocks from the providers; None asks the coordinator to re-check who is left.
        self._arrivals_send, self._arrivals = trio.open_memory_channel[tuple[Cid, bytes] | None](64)

    async def run(self) -> tuple[list[Cid], list[WriteOp]]:
        """Returns every CID of the document's files and the writes still to make."""
        await self._resolve_locally()
        if not all(w.done for w in self._walkers):
            await self._fetch_remote()
        ops: list[WriteOp] = list(self._buffer)
        self._buffer = []
        return list(self._cids), ops

    def _accept(
        self, walker: DagWalker, cid: Cid, data: bytes, *, new: bool, checked: bool
    ) -> None:
        """Feed a block to a walker. ``checked``: it already hashed to its CID (inline blocks
        are checked with the offer, fetched ones by the session); blocks read back from the
        store are checked again."""
        try:
            walker.receive(cid, data, verified=checked)
        except (ContentMismatch, DecodeError, LimitExceeded) as exc:
            raise _Reject(f"the document's file DAG is invalid: {exc}") from exc
        entry = self._entries[id(walker)]
        if walker.file_size is not None and walker.file_size != entry.size:
            raise _Reject(
                f"file {entry.name!r} holds {walker.file_size} bytes, its entry says {entry.size}"
            )
        if cid not in self._cids:
            self._cids[cid] = None
            if new:
                self._buffer.append(PutBlock(cid, data, verified=True))
                self._buffered += len(data)

    @property
    def started(self) -> bool:
        """Whether this reception has written anything (its inbox entry and progress)."""
        return self._started

    def _progress(self) -> list[WriteOp]:
        """Writes that record progress: the time, and the inbox entry the first time."""
        ops: list[WriteOp] = [PutRecord(RECEIVING, str(self._root), self._ctx.clock.now_ms())]
        if not self._started:
            # Record the reception so blocks fetched so far are kept for a resumed attempt.
            ops.append(PutRecord(INBOX, str(self._root), self._pending.to_value()))
            self._started = True
        return ops

    async def _resolve_locally(self) -> None:
        """Feed the walkers from inline blocks and the store until they need the network."""
        store = self._ctx.store
        while True:
            wanted = [(w, c) for w in self._walkers if not w.done for c in w.next_wanted(64)]
            if not wanted:
                return
            # Inline blocks are written whether or not the store has them already (it keeps
            # one copy), which spares asking the store about them.
            asked = [c for _, c in wanted if c not in self._inline]
            present = dict(zip(asked, await store.has_blocks(asked), strict=True)) if asked else {}
            for walker, cid in wanted:
                inline = self._inline.get(cid)
                data = inline
                if data is None and present[cid]:
                    try:
                        data = await store.get_block(cid)
                    except NotFound:  # collected since: fetch it
                        data = None
                if data is not None:
                    # A block found here (left by an earlier attempt, or garbage not collected
                    # yet) is written again under this document's pin like a fetched one, so
                    # that a garbage collection in between cannot leave the document without it.
                    self._accept(walker, cid, data, new=True, checked=inline is not None)
                else:
                    waiting = self._waiting.setdefault(cid, [])
                    if not waiting:
                        self._pool.append(cid)
                    waiting.append(walker)
            if self._buffered >= self._ctx.config.receive.write_batch_bytes:
                await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        ops = self._progress()
        ops += self._buffer
        ops.append(Pin(doc_owner(self._root), tuple(b.cid for b in self._buffer)))
        self._buffer = []
        self._buffered = 0
        await self._ctx.store.write(ops)

    async def _fetch_remote(self) -> None:
        sessions = [self._session]
        for peer in self._providers:
            if peer == self._session.peer.peer or peer == self._ctx.credentials.peer:
                continue
            session = self._receiver._sessions.find(peer)
            if session is None:
                try:
                    with trio.move_on_after(self._ctx.config.delivery.dial_timeout):
                        session = await self._receiver._sessions.get(peer)
                except P2pdocError:
                    session = None
            if session is not None:
                sessions.append(session)
        failure: P2pdocError | None = None
        async with trio.open_nursery() as nursery:
            for index, session in enumerate(sessions):
                self._alive.add(index)
                self._lacking[index] = set()
                for _ in range(self._ctx.config.receive.requests_per_provider):
                    nursery.start_soon(self._provider, index, session)
            try:
                await self._coordinate()
            except P2pdocError as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        await self._flush()

    async def _coordinate(self) -> None:
        while not all(w.done for w in self._walkers):
            if not self._alive:
                raise _Retry("no holder of the document's blocks is reachable")
            if self._pool and all(self._pool[0] in self._lacking[i] for i in self._alive):
                raise _Retry(f"block {self._pool[0]} is held by no reachable peer")
            arrival = await self._arrivals.receive()
            if arrival is not None:
                cid, data = arrival
                for walker in self._waiting.pop(cid, ()):
                    self._accept(walker, cid, data, new=True, checked=True)
            if self._buffered >= self._ctx.config.receive.write_batch_bytes:
                await self._flush()
            await self._resolve_locally()
            self._wake()

    def _wake(self) -> None:
        self._pool_changed.set()
        self._pool_changed = trio.Event()

    def _take(self, index: int) -> list[Cid]:
        # Share what is pending among the holders' request slots, so that every holder
        # serves part of a document rather than the quickest one taking it all.
        slots = max(1, len(self._alive) * self._ctx.config.receive.requests_per_provider)
        window = min(self._ctx.config.receive.window, -(-len(self._pool) // slots))
        taken: list[Cid] = []
        skipped: list[Cid] = []
        while self._pool and len(taken) < window:
            cid = self._pool.popleft()
            (skipped if cid in self._lacking[index] else taken).append(cid)
        self._pool.extendleft(reversed(skipped))
        return taken

    async def _provider(self, index: int, session: Session) -> None:
        try:
            while True:
                cids = self._take(index)
                if not cids:
                    changed = self._pool_changed
                    await changed.wait()
                    continue
                received: set[Cid] = set()
                # A holder that stops answering (its session still up) must not keep the
                # blocks it was asked for: without progress for this long it counts as gone.
                patience = self._ctx.config.delivery.offer_timeout
                try:
                    with trio.move_on_after(patience) as waiting:
                        async with session.get_blocks(self._root, cids) as stream:
                            async for cid, data in stream:
                                received.add(cid)
                                await self._arrivals_send.send((cid, data))
                                waiting.deadline = trio.current_time() + patience
                    if waiting.cancelled_caught:
                        raise ConnectionLost(f"no block for {patience} s")
                except P2pdocError:
                    self._pool.extendleft(reversed([c for c in cids if c not in received]))
                    raise
                missing = [c for c in cids if c not in received]
                if missing:
                    self._lacking[index].update(missing)
                    self._pool.extendleft(reversed(missing))
                    self._wake()
                    await self._arrivals_send.send(None)
        except P2pdocError as exc:
            log.info("holder %s stopped serving %s: %s", session.peer.agency, self._root, exc)
            self._alive.discard(index)
            self._wake()
            with trio.CancelScope(shield=True):
                await self._arrivals_send.send(None)
