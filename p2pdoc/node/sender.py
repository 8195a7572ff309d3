"""The sending side: documents built from files, a durable outbox, and delivery attempts.

Every recipient of a sent document has an outbox entry (see :mod:`p2pdoc.delivery.states`)
persisted in the store's ``outbox`` table under ``"<root>|<agency code>"``. A scheduler
wakes for the earliest due attempt or deadline; attempts run concurrently up to a limit.
An attempt: find the recipient's node, get an admitted session, offer the document (small
documents carry their blocks inline), serve the blocks it asks for, and verify the receipt it
answers with. Anything else is a failure that is retried with back-off until the deadline.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.documents import FileSource, check_files, read_source
from p2pdoc.content.unixfs import FileImporter, ImportSource, import_file
from p2pdoc.delivery.evidence import Receipt, StatusCode, StatusReport, verify_evidence
from p2pdoc.delivery.retry import MAX_WAIT
from p2pdoc.delivery.states import (
    AttemptFailed,
    AttemptStarted,
    BlocksServed,
    DeadlinePassed,
    OutboxEntry,
    OutboxState,
    ReceiptAccepted,
    advance_outbox,
)
from p2pdoc.errors import (
    DecodeError,
    InvalidValue,
    LocalProtocolError,
    NetworkError,
    NotFound,
    P2pdocError,
    PeerUnreachable,
    ProtocolError,
    ReceiptInvalid,
    StatusTrailBroken,
    VerificationError,
)
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode
from p2pdoc.model.manifest import FileEntry, Manifest
from p2pdoc.node.context import DocumentSigner, KeyedLocks, NodeContext, doc_owner
from p2pdoc.node.sessions import Sessions
from p2pdoc.node.status import StatusDesk
from p2pdoc.protocol.messages import OfferOutcome
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
from p2pdoc.trust.sealing import DocumentSealer, PlainFile, RecipientKey, SegmentSealer
from p2pdoc.trust.validation import VerifiedNode

__all__ = ["Document", "Sender"]

log = logging.getLogger(__name__)

OUTBOX = "outbox"
DRAFTS = "drafts"
"""Pin owners of documents being imported: a crash leaves them for the next start to drop."""
_KEEP_FINISHED = 10_000
"""Finished documents whose entries stay in memory (older ones are read from the store)."""
_TIMER_SLACK = 256
"""Timers queued beyond twice the live ones before finished deliveries' timers are dropped."""
_KEEP_FRESH = 256
"""Small documents created and not yet sent whose blocks stay in memory for the offer (at
most 64 KiB each with the default inline limit)."""


@dataclass(frozen=True, slots=True)
class Document:
    """A document version ready to send: manifest, signature set and the CIDs of its blocks."""

    manifest: Manifest
    manifest_bytes: bytes
    signatures: bytes
    blocks: tuple[Cid, ...]
    size: int
    root: Cid = field(init=False)
    """The manifest block's CID: the document version's identity."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Cid.of(Multicodec.DAG_CBOR, self.manifest_bytes))

    @property
    def envelope(self) -> Envelope:
        return self.manifest.envelope


def outbox_key(root: Cid, recipient: AgencyCode) -> str:
    return f"{root}|{recipient}"


class Sender:
    """Outbox scheduler and delivery attempts."""

    def __init__(self, ctx: NodeContext, sessions: Sessions, status: StatusDesk) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._status = status
        # Unfinished deliveries by document, plus the most recently finished documents (the
        # rest is in the store): memory stays bounded however long the node runs.
        self._by_root: dict[Cid, dict[AgencyCode, OutboxEntry]] = {}
        self._finished: OrderedDict[Cid, None] = OrderedDict()
        self._documents: dict[Cid, _Outgoing] = {}
        self._unsent: OrderedDict[Cid, bool] = OrderedDict()  # created here, not sent yet
        # Small documents created here and not sent yet, with their blocks in memory.
        self._fresh: OrderedDict[Cid, _Outgoing] = OrderedDict()
        self._timers: list[tuple[int, tuple[Cid, AgencyCode]]] = []
        self._compact_at = _TIMER_SLACK
        self._wakeup = trio.Event()
        self._changed: dict[Cid, trio.Event] = {}
        self._running: set[tuple[Cid, AgencyCode]] = set()
        self._served: dict[tuple[Cid, AgencyCode], int] = {}
        self._progress: dict[tuple[Cid, AgencyCode], trio.CancelScope] = {}
        self._slots = trio.Semaphore(ctx.config.delivery.max_concurrent_attempts)
        # send() of one document at a time: a second call must see the first one's entries,
        # not queue them again over a delivery already in flight.
        self._queuing: KeyedLocks[Cid] = KeyedLocks()
        self.attempts = 0

    # -- building -----------------------------------------------------------------------

    async def create_document(
        self,
        envelope: Envelope,
        files: Sequence[FileSource],
        signer: DocumentSigner,
        *,
        seal: bool | None = None,
    ) -> Document:
        """Import ``files`` into the store, build the manifest, sign it and store it all.

        A document whose manifest is already stored (the same envelope and files again) is
        returned as stored, with its first signatures: signing a version twice would give
        recipients who hold the first one a receipt for other signatures than those sent.

        Args:
            seal: seal the content to the recipients' node keys; by default, when the
                classification policy requires it. Sealing needs each recipient's node key,
                learnt at admission, so every recipient must be reachable now.

        Raises:
            InvalidValue: the envelope's sender is not this node's agency, or a file entry is
                invalid (nothing is stored).
            PeerUnreachable: a recipient of a document to seal cannot be reached.
            StoreError: the store failed.

        Whatever ends it early (an error, a file that cannot be read, cancellation, a crash)
        leaves nothing pinned: blocks imported so far are released, after a crash at the next
        start (:meth:`resume`).
        """
        ctx = self._ctx
        if envelope.sender.code != ctx.agency:
            raise InvalidValue(f"this node sends for {ctx.agency}, not {envelope.sender.code}")
        sealing = ctx.trust.sealing_required(envelope) if seal is None else seal
        in_memory = _in_memory(files, ctx.config.delivery.inline_limit)
        if sealing or not in_memory:
            # These files go to the store as they are read: refuse bad names first. (A small
            # document's manifest is built, and checked, before anything is written.)
            check_files(envelope, files)
        sealer = DocumentSealer(await self._recipient_keys(envelope)) if sealing else None
        small = sealer is None and in_memory
        if small:
            return await self._create(envelope, files, signer, sealer, small, draft="")
        draft = f"draft:{ctx.rng.getrandbits(64):016x}"
        await ctx.store.write([PutRecord(DRAFTS, draft, ctx.clock.now_ms())])
        try:
            return await self._create(envelope, files, signer, sealer, small, draft=draft)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._drop_draft(draft)
            raise

    async def _drop_draft(self, draft: str) -> None:
        try:
            await self._ctx.store.write(_released(draft))
        except P2pdocError as exc:  # the next start drops it
            log.warning("could not release draft %s: %s", draft, exc)

    async def _create(
        self,
        envelope: Envelope,
        files: Sequence[FileSource],
        signer: DocumentSigner,
        sealer: DocumentSealer | None,
        small: bool,
        *,
        draft: str,
    ) -> Document:
        ctx = self._ctx
        entries: list[FileEntry] = []
        plain: list[PlainFile] = []
        made: dict[Cid, bytes] = {}
        for index, file in enumerate(files):
            if small:
                # A small document is imported in memory and stored in one write below,
                # instead of block writes pinned to a draft, a read of the draft's pins and
                # a second write (each store call costs a round trip to the store's thread).
                importer = FileImporter()
                produced = importer.write(_view(file.source))
                result = importer.finish()
                made.update((b.cid, b.data) for b in (*produced, *result.blocks))
            elif sealer is not None:
                size = _Counter()
                sealed = _sealed(read_source(file.source), sealer.file_sealer(index), size)
                result = await import_file(sealed, ctx.store, pin=draft)
                plain.append(PlainFile(name=file.name, media_type=file.media_type, size=size.n))
                entries.append(sealer.sealed_entry(index, plain[-1], result.root))
                continue
            else:
                result = await import_file(file.source, ctx.store, pin=draft)
            entries.append(
                FileEntry(
                    name=file.name, media_type=file.media_type, size=result.size, cid=result.root
                )
            )
        if sealer is not None:
            routing, seal_info = sealer.seal(envelope, plain)
            manifest = Manifest(envelope=routing, files=tuple(entries), seal=seal_info)
        else:
            manifest = Manifest(envelope=envelope, files=tuple(entries))
        manifest_bytes = manifest.encode()
        root = Cid.of(Multicodec.DAG_CBOR, manifest_bytes)
        blocks = tuple(sorted(made)) if small else tuple(sorted(await ctx.store.pinned(draft)))
        try:
            record = await ctx.store.get_document(root)
        except NotFound:
            pass
        else:
            if not small:
                await ctx.store.write(_released(draft))
            return Document(
                manifest, manifest_bytes, record.signatures, blocks, manifest.total_size
            )
        signatures = signer.sign_document(root, ctx.now())
        record = DocumentRecord(
            root=root,
            document_id=str(envelope.document_id),
            sender=str(envelope.sender.code),
            manifest=manifest_bytes,
            signatures=signatures,
            created_at=ctx.clock.now_ms(),
        )
        # The manifest block is kept too, so a document is one DAG under its root.
        ops: list[WriteOp] = [PutBlock(cid, made[cid], verified=True) for cid in blocks if small]
        ops += [
            PutBlock(root, manifest_bytes, verified=True),
            Pin(doc_owner(root), (root, *blocks)),
            PutDocument(record),
        ]
        if not small:
            ops += _released(draft)
        await ctx.store.write(ops)
        document = Document(manifest, manifest_bytes, signatures, blocks, manifest.total_size)
        self._unsent[root] = True
        while len(self._unsent) > _KEEP_FRESH:
            self._unsent.popitem(last=False)
        if small:
            # Keep the blocks for the offer, which carries them inline (no read back).
            self._fresh[root] = _Outgoing.of(document, made, ctx.config.delivery.inline_limit)
            while len(self._fresh) > _KEEP_FRESH:
                self._fresh.popitem(last=False)
        return document

    async def _recipient_keys(self, envelope: Envelope) -> list[RecipientKey]:
        """This node's own key agreement key and each recipient node's, as certified."""
        ctx = self._ctx
        keys = [RecipientKey(ctx.agency, ctx.credentials.x25519_public)]
        for code in envelope.recipient_codes:
            if code == ctx.agency:
                continue
            try:
                session = await self._sessions.get(ctx.directory.lookup(code).peer)
            except NetworkError as exc:
                raise PeerUnreachable(
                    f"cannot seal to {code}: its node key is learnt by reaching it ({exc})"
                ) from exc
            node = session.peer.evidence
            if not isinstance(node, VerifiedNode) or node.agency != code:
                raise PeerUnreachable(f"cannot seal to {code}: no certified node key")
            keys.append(RecipientKey.of_node(node))
        return keys

    # -- sending ------------------------------------------------------------------------

    async def send(self, document: Document, deadline: float | None = None) -> None:
        """Queue ``document`` for each recipient it names (durable when this returns).

        A document already queued for a recipient is not queued twice.

        Raises:
            InvalidValue: ``deadline`` is not a number of seconds in (0, ten years].
        """
        if deadline is not None and not (
            isinstance(deadline, (int, float)) and 0 < deadline <= MAX_WAIT
        ):
            raise InvalidValue(f"deadline must be seconds in (0, {MAX_WAIT:.0f}], got {deadline!r}")
        self._ctx.trust.check_outgoing(document.manifest)
        async with self._queuing.hold(document.root):
            await self._queue(document, deadline)

    async def _queue(self, document: Document, deadline: float | None) -> None:
        ctx = self._ctx
        now = ctx.clock.now_ms()
        until = now + round(
            1000 * (deadline if deadline is not None else ctx.config.delivery.deadline)
        )
        root = document.root
        ops: list[WriteOp] = []
        fresh: list[tuple[AgencyCode, OutboxEntry]] = []
        # A document this node created and has not sent yet has no outbox entries to look for.
        never_sent = self._unsent.pop(root, False)
        for recipient in document.envelope.recipient_codes:
            key = (root, recipient)
            if self._get(key) is not None:
                continue
            earlier = None if never_sent else await self._load(root, recipient)
            if earlier is not None:
                # Queued before a restart and finished since (unfinished entries were loaded
                # by resume): keep it in view so that the document's handle sees it.
                if earlier.state.terminal:
                    self._set(key, earlier)
                continue
            entry = OutboxEntry(
                deadline=until, updated_at=now, history=((now, OutboxState.QUEUED.value, "queued"),)
            )
            ops.append(PutRecord(OUTBOX, outbox_key(root, recipient), entry.to_value()))
            fresh.append((recipient, entry))
        if ops:
            await ctx.store.write(ops)
        created = self._fresh.pop(root, None)
        self._documents[root] = (
            created
            if created is not None
            and (created.document is document or created.document == document)
            else _Outgoing.of(document)
        )
        for recipient, entry in fresh:
            self._track(root, recipient, entry)

    async def _load(self, root: Cid, recipient: AgencyCode) -> OutboxEntry | None:
        try:
            value = await self._ctx.store.get_record(OUTBOX, outbox_key(root, recipient))
        except NotFound:
            return None
        return OutboxEntry.from_value(value)

    async def resume(self) -> int:
        """Load every unfinished outbox entry (after a start or a crash) and release the
        blocks of documents whose import a crash interrupted. Returns how many entries."""
        while drafts := await self._ctx.store.list_records(DRAFTS, limit=1000):
            for draft, _ in drafts:
                await self._ctx.store.write(_released(draft))
        count = 0
        after: str | None = None
        while True:
            page = await self._ctx.store.list_records(OUTBOX, after=after, limit=1000)
            if not page:
                return count
            for key, value in page:
                root_text, code = key.split("|")
                entry = OutboxEntry.from_value(value)
                if entry.state.in_flight:
                    # The attempt died with the process: it is due again now.
                    entry = replace(entry, state=OutboxState.RETRY_WAIT, next_at=1)
                if not entry.state.terminal:
                    self._track(Cid.parse(root_text), AgencyCode(code), entry)
                    count += 1
            after = page[-1][0]

    def _track(self, root: Cid, recipient: AgencyCode, entry: OutboxEntry) -> None:
        key = (root, recipient)
        self._set(key, entry)
        due = entry.next_at if entry.state is OutboxState.RETRY_WAIT else 0
        self._schedule(due, key)
        self._schedule(entry.deadline, key)
        self._wakeup.set()

    def _schedule(self, at: int, key: tuple[Cid, AgencyCode]) -> None:
        """Wake the scheduler for ``key`` at ``at`` (ms).

        A finished delivery's deadline timer would otherwise stay queued until its deadline
        (days): when the queue outgrows twice what it held after the last clean-up, the
        timers of finished or forgotten deliveries are dropped, which keeps memory bounded
        by the unfinished deliveries at a constant amortised cost per timer.
        """
        heapq.heappush(self._timers, (at, key))
        if len(self._timers) > self._compact_at:
            live = []
            for timer in self._timers:
                entry = self._get(timer[1])
                if entry is not None and not entry.state.terminal:
                    live.append(timer)
            heapq.heapify(live)
            self._timers = live
            self._compact_at = 2 * len(live) + _TIMER_SLACK

    # -- observing ----------------------------------------------------------------------

    def _get(self, key: tuple[Cid, AgencyCode]) -> OutboxEntry | None:
        return self._by_root.get(key[0], {}).get(key[1])

    def _current(self, key: tuple[Cid, AgencyCode]) -> OutboxEntry:
        entry = self._get(key)
        if entry is None:
            raise LocalProtocolError(f"no outbox entry for {key[0]} to {key[1]} in memory")
        return entry

    def _set(self, key: tuple[Cid, AgencyCode], entry: OutboxEntry) -> None:
        root = key[0]
        entries = self._by_root.setdefault(root, {})
        entries[key[1]] = entry
        if all(e.state.terminal for e in entries.values()):
            self._finished[root] = None
            self._finished.move_to_end(root)
            while len(self._finished) > _KEEP_FINISHED:
                old, _ = self._finished.popitem(last=False)
                self._by_root.pop(old, None)
                self._documents.pop(old, None)
        else:
            self._finished.pop(root, None)

    def entries(self, root: Cid) -> dict[AgencyCode, OutboxEntry]:
        """The recipients' entries for ``root`` held in memory (unfinished or recent)."""
        return dict(self._by_root.get(root, {}))

    async def load_entries(self, root: Cid) -> dict[AgencyCode, OutboxEntry]:
        """Every recipient's outbox entry for ``root``: memory first, then the store."""
        out = self.entries(root)
        for key, value in await self._ctx.store.list_records(
            OUTBOX, prefix=f"{root}|", limit=10_000
        ):
            code = AgencyCode(key.split("|")[1])
            if code not in out:
                out[code] = OutboxEntry.from_value(value)
        return out

    def changed(self, root: Cid) -> trio.Event:
        """An event set at the next change of ``root``'s entries."""
        return self._changed.setdefault(root, trio.Event())

    async def wait_changed(self, root: Cid) -> None:
        await self.changed(root).wait()

    def _notify(self, root: Cid) -> None:
        event = self._changed.pop(root, None)
        if event is not None:
            event.set()

    def unfinished(self) -> dict[Cid, dict[AgencyCode, OutboxState]]:
        """Documents with a delivery neither DELIVERED nor FAILED: every recipient's state."""
        return {
            root: {r: e.state for r, e in entries.items()}
            for root, entries in self._by_root.items()
            if any(not e.state.terminal for e in entries.values())
        }

    def recipients_holding(self, root: Cid) -> list[AgencyCode]:
        entries = self._by_root.get(root, {})
        return [r for r, e in entries.items() if e.state is OutboxState.DELIVERED]

    async def knows(self, root: Cid, recipient: AgencyCode) -> bool:
        """Whether ``root`` was sent to ``recipient`` from here."""
        if self._get((root, recipient)) is not None:
            return True
        return await self._load(root, recipient) is not None

    def blocks_served(self, root: Cid, recipient: AgencyCode, count: int) -> None:
        """The block server sent ``count`` blocks of ``root`` to ``recipient``."""
        key = (root, recipient)
        if key not in self._running:
            return
        served = self._served.get(key, 0) + count
        self._served[key] = served
        scope = self._progress.get(key)
        if scope is not None:
            scope.deadline = trio.current_time() + self._ctx.config.delivery.offer_timeout
        outgoing = self._documents.get(root)
        total = len(outgoing.document.blocks) if outgoing else served
        entry = self._get(key)
        if entry is not None and entry.state.in_flight:
            served_event = BlocksServed(self._ctx.clock.now_ms(), min(served, total), total)
            self._set(key, advance_outbox(entry, served_event))

    # -- scheduling ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                now = self._ctx.clock.now_ms()
                while self._timers and self._timers[0][0] <= now:
                    _, key = heapq.heappop(self._timers)
                    self._fire(key, now, nursery)
                wait = (self._timers[0][0] - now) / 1000 if self._timers else float("inf")
                with trio.move_on_after(wait):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()

    def _fire(self, key: tuple[Cid, AgencyCode], now: int, nursery: trio.Nursery) -> None:
        entry = self._get(key)
        if entry is None or entry.state.terminal:
            return
        if now >= entry.deadline:
            if key not in self._running:
                # Marked running like an attempt: two timers due together (after downtime,
                # say) expire it once.
                self._running.add(key)
                nursery.start_soon(self._expire, key)
            return
        due = entry.next_at if entry.state is OutboxState.RETRY_WAIT else 0
        if (
            entry.state in (OutboxState.QUEUED, OutboxState.RETRY_WAIT)
            and due <= now
            and key not in self._running
        ):
            self._running.add(key)
            nursery.start_soon(self._attempt, key)

    async def _expire(self, key: tuple[Cid, AgencyCode]) -> None:
        try:
            entry = advance_outbox(self._current(key), DeadlinePassed(self._ctx.clock.now_ms()))
            await self._save(key, entry)
        finally:
            self._running.discard(key)
        log.warning("delivery of %s to %s failed: %s", key[0], key[1], entry.last_error)

    async def _save(
        self, key: tuple[Cid, AgencyCode], entry: OutboxEntry, also: Sequence[WriteOp] = ()
    ) -> None:
        await self._ctx.store.write([PutRecord(OUTBOX, outbox_key(*key), entry.to_value()), *also])
        self._set(key, entry)
        self._notify(key[0])

    async def _attempt(self, key: tuple[Cid, AgencyCode]) -> None:
        ctx = self._ctx
        root, recipient = key
        try:
            async with self._slots:
                entry = advance_outbox(self._current(key), AttemptStarted(ctx.clock.now_ms()))
                self._set(key, entry)
                self._served[key] = 0
                self.attempts += 1
                try:
                    receipt, arrival = await self._deliver(root, recipient)
                except (P2pdocError, trio.TooSlowError) as exc:
                    reason = _describe(exc)
                    permanent = isinstance(exc, _Refused)
                    now = ctx.clock.now_ms()
                    retry_at = (
                        None
                        if permanent
                        else ctx.config.delivery.retry.retry_at(entry.attempts, now, ctx.rng)
                    )
                    entry = advance_outbox(self._current(key), AttemptFailed(now, reason, retry_at))
                    log.info(
                        "attempt %d of %s to %s failed: %s", entry.attempts, root, recipient, reason
                    )
                    also: list[WriteOp] = []
                    report = None
                else:
                    entry = advance_outbox(
                        self._current(key), ReceiptAccepted(ctx.clock.now_ms(), receipt)
                    )
                    report, also = await self._arrival_report(arrival, root, recipient)
                await self._save(key, entry, also)
                if report is not None:
                    self._status.kept(report, new=True)
                if entry.state is OutboxState.RETRY_WAIT:
                    self._schedule(entry.next_at, key)
                    self._wakeup.set()
        finally:
            self._running.discard(key)
            self._served.pop(key, None)

    async def _outgoing(self, root: Cid) -> _Outgoing:
        outgoing = self._documents.get(root)
        if outgoing is None:
            record = await self._ctx.store.get_document(root)
            pinned = await self._ctx.store.pinned(doc_owner(root))
            blocks = tuple(sorted(cid for cid in pinned if cid != root))  # files' blocks
            manifest = Manifest.decode(record.manifest, expected=root)
            document = Document(
                manifest, record.manifest, record.signatures, blocks, manifest.total_size
            )
            outgoing = self._documents[root] = _Outgoing.of(document)
        return outgoing

    async def _deliver(self, root: Cid, recipient: AgencyCode) -> tuple[bytes, bytes | None]:
        ctx = self._ctx
        outgoing = await self._outgoing(root)
        node = ctx.directory.lookup(recipient)
        session = await self._sessions.get(node.peer)
        if session.peer.agency != recipient:
            raise _Refused(
                f"node {node.peer} is certified for {session.peer.agency}, not {recipient}"
            )
        inline = await outgoing.inline_blocks(ctx)
        providers = []
        for holder in self.recipients_holding(root)[: ctx.config.delivery.max_providers]:
            try:
                providers.append(ctx.directory.lookup(holder).peer)
            except NetworkError:
                continue
        key = (root, recipient)
        with trio.CancelScope(
            deadline=trio.current_time() + ctx.config.delivery.offer_timeout
        ) as scope:
            self._progress[key] = scope
            try:
                result = await session.offer(
                    outgoing.document.manifest_bytes,
                    outgoing.document.signatures,
                    inline,
                    providers,
                )
            finally:
                self._progress.pop(key, None)
        if scope.cancelled_caught:
            raise trio.TooSlowError(f"no progress for {ctx.config.delivery.offer_timeout} s")
        if result.outcome is OfferOutcome.REJECTED:
            raise _Refused(result.reason or "refused")
        if result.outcome is OfferOutcome.RETRY:
            raise _Temporary(result.reason or "recipient asked to retry later")
        assert result.receipt is not None
        self._check_receipt(result.receipt, outgoing.document, recipient, session.peer.peer)
        return result.receipt, result.status

    async def _arrival_report(
        self, evidence: bytes | None, root: Cid, recipient: AgencyCode
    ) -> tuple[StatusReport | None, list[WriteOp]]:
        """Check the arrival report that came with a receipt; the writes that keep it.

        A bad report costs only itself: the delivery stands on its verified receipt.
        """
        if evidence is None:
            return None, []

        async def is_this_delivery(document: Cid, reporter: AgencyCode) -> bool:
            return document == root and reporter == recipient

        try:
            report, ops = await self._status.check(evidence, is_this_delivery)
        except StatusTrailBroken as exc:
            log.warning("arrival report from %s on %s ignored: %s", recipient, root, exc)
            return None, []
        if report.seq != 1 or report.code is not StatusCode.ARRIVED:
            log.warning(
                "report %d from %s came as an arrival report; ignored", report.seq, recipient
            )
            return None, []
        return report, ops

    def _check_receipt(
        self, data: bytes, document: Document, recipient: AgencyCode, peer: object
    ) -> None:
        try:
            verified = verify_evidence(data, self._ctx.trust)
            receipt = Receipt.decode(verified.evidence.body)
        except (DecodeError, VerificationError) as exc:
            raise ReceiptInvalid(f"receipt from {recipient} does not verify: {exc}") from exc
        expected = {
            "root": document.root,
            "recipient": recipient,
            "sender": self._ctx.agency,
            "document_id": document.envelope.document_id,
            "files": tuple(f.cid for f in document.manifest.files),
            "signatures_digest": hashlib.sha256(document.signatures).digest(),
            "node": peer,
        }
        for name, value in expected.items():
            if getattr(receipt, name) != value:
                raise ReceiptInvalid(
                    f"receipt from {recipient} names another {name.replace('_', ' ')}"
                )
        if verified.signer != recipient:
            raise ReceiptInvalid(f"receipt for {recipient} signed by {verified.signer}")


class _Refused(ProtocolError):
    """The recipient refused for good: do not retry."""


class _Temporary(ProtocolError):
    """The recipient asked for a retry later."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, NetworkError):
        return f"unreachable: {exc}"
    return str(exc) or type(exc).__name__


@dataclass(slots=True)
class _Outgoing:
    """A document being sent, with its inline blocks once read."""

    document: Document
    inline: list[tuple[Cid, bytes]] | None = None

    @classmethod
    def of(
        cls, document: Document, blocks: dict[Cid, bytes] | None = None, limit: int = 0
    ) -> _Outgoing:
        """``blocks``: every block of the document, if at hand; the inline ones are then taken
        from it as :meth:`inline_blocks` would read them (``limit`` is the inline limit)."""
        outgoing = cls(document)
        if blocks is not None:
            outgoing.inline = _select_inline(
                document, [(cid, blocks[cid]) for cid in document.blocks], limit
            )
        return outgoing

    async def inline_blocks(self, ctx: NodeContext) -> list[tuple[Cid, bytes]]:
        if self.inline is None:
            limit = ctx.config.delivery.inline_limit
            blocks: list[tuple[Cid, bytes]] = []
            if self.document.size <= limit:
                total = 0
                for cid in self.document.blocks:
                    data = await ctx.store.get_block(cid)
                    total += len(data)
                    if total > limit:
                        break
                    blocks.append((cid, data))
            self.inline = _select_inline(self.document, blocks, limit)
        return self.inline


def _select_inline(
    document: Document, blocks: list[tuple[Cid, bytes]], limit: int
) -> list[tuple[Cid, bytes]]:
    """The blocks an offer carries: all of them (in CID order) if their total is at most
    ``limit`` bytes and the document's files too, else none."""
    if document.size > limit or len(blocks) != len(document.blocks):
        return []
    if sum(len(data) for _, data in blocks) > limit:
        return []
    return blocks


def _released(draft: str) -> list[WriteOp]:
    """The writes that forget a draft: its pin (its blocks become garbage unless a document
    keeps them) and its record."""
    return [Unpin(draft), DeleteRecord(DRAFTS, draft)]


def _in_memory(files: Sequence[FileSource], limit: int) -> bool:
    """Whether every file is in memory and together they are at most ``limit`` bytes."""
    total = 0
    for file in files:
        source = file.source
        if isinstance(source, io.BytesIO):
            total += len(source.getbuffer()) - source.tell()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            total += memoryview(source).nbytes
        else:
            return False
    return total <= limit


def _view(source: ImportSource) -> memoryview:
    """The bytes of an in-memory source (see :func:`_in_memory`), consuming a BytesIO."""
    if isinstance(source, io.BytesIO):
        view = source.getbuffer()[source.tell() :]
        source.seek(0, io.SEEK_END)
        return view
    assert isinstance(source, (bytes, bytearray, memoryview))
    return memoryview(source).cast("B")


class _Counter:
    """Plaintext bytes seen by :func:`_sealed`."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


async def _sealed(
    chunks: AsyncIterator[bytes | memoryview], sealer: SegmentSealer, size: _Counter
) -> AsyncIterator[bytes]:
    """The sealed form of a plaintext stream, counting the plaintext bytes."""
    async for chunk in chunks:
        size.n += len(chunk)
        for segment in sealer.feed(chunk):
            yield segment
    yield sealer.finish()
