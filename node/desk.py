"""The daemon's desk: what document software can ask of the node, as calls on the library.

Goals: the HTTP API and the demo do nothing but call these methods, which call
:class:`~p2pdoc.node.Node`; a submission is checked whole (metadata, recipients, file names,
manifest size, classification policy, signers) before anything is stored, so a refused
request leaves the store as it was; lists of sent and received documents come from two small
indexes this desk keeps in the node's store (newest first), and delivery, arrival and status
events are published on the :class:`~p2pdoc_node.activity.Activity` feed as they happen.
Non-goals: authentication and HTTP (``p2pdoc_node.api``), the on-disk layout
(``p2pdoc_node.daemon``).

Store tables written here (beside the node's own): ``daemon-sent`` and ``daemon-received``
(``"<10**16 - 1 - ms, 16 digits>|<root>"`` -> summary, so key order is newest first) and
``daemon-sent-root`` / ``daemon-received-root`` (root -> that key).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
from collections import Counter as _Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.documents import FileSource
from p2pdoc.content.unixfs import read_file
from p2pdoc.delivery.evidence import Evidence, Receipt, Staff, StatusCode, StatusReport
from p2pdoc.delivery.states import InboxState, OutboxEntry, OutboxState
from p2pdoc.errors import (
    ConfigError,
    DecodeError,
    InvalidField,
    InvalidValue,
    LimitExceeded,
    NetworkError,
    NotFound,
)
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode
from p2pdoc.model.manifest import FileEntry, Manifest
from p2pdoc.node.clock import Clock
from p2pdoc.node.node import Node, PeerStatus
from p2pdoc.node.receiver import INBOX_ORDER, InboxItem
from p2pdoc.node.status import ALLOWED_TRANSITIONS, StatusTrail
from p2pdoc.node.trustgate import DocumentSigners, TrustGate
from p2pdoc.store.base import PutRecord, Store

from .activity import Activity
from .metadata import envelope_from_json, envelope_to_json
from .metrics import Gauges, Metrics
from .uploads import SpooledFile

__all__ = ["STATUS_MEANINGS", "Desk", "DirectoryInfo", "Json"]

log = logging.getLogger(__name__)

Json = dict[str, object]

SENT: Final = "daemon-sent"
SENT_BY_ROOT: Final = "daemon-sent-root"
RECEIVED: Final = "daemon-received"
RECEIVED_BY_ROOT: Final = "daemon-received-root"
_MAX_MS: Final = 10**16 - 1
MAX_PAGE: Final = 500

STATUS_MEANINGS: Final[dict[str, str]] = {
    "01": "arrived, not yet handled by the clerk",
    "02": "rejected",
    "03": "accepted and registered by the clerk",
    "04": "assigned by a leader",
    "05": "being processed",
    "06": "completed",
    "13": "sender requests recall",
    "15": "recipient agrees to recall or update",
    "16": "recipient refuses recall or update",
}


def _order_key(ms: int, root: Cid) -> str:
    return f"{_MAX_MS - ms:016d}|{root}"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _parse_root(text: str) -> Cid:
    try:
        return Cid.parse(text)
    except (InvalidValue, DecodeError):
        raise NotFound(f"no document {text[:80]!r}") from None


@dataclass(frozen=True, slots=True)
class DirectoryInfo:
    """Where the peer list comes from and how old it is."""

    source: str
    updated_ms: int
    max_age: float


def receipt_json(recipient: AgencyCode, evidence: bytes) -> Json:
    """A verified receipt as JSON, with its evidence (base64) for archiving."""
    receipt = Receipt.decode(Evidence.decode(evidence).body)
    return {
        "recipient": str(recipient),
        "node": str(receipt.node),
        "received_at": receipt.received_at,
        "files": [str(c) for c in receipt.files],
        "signatures_digest": receipt.signatures_digest.hex(),
        "evidence": _b64(evidence),
    }


def report_json(report: StatusReport, evidence: bytes | None = None) -> Json:
    """A status report as JSON."""
    out: Json = {
        "seq": report.seq,
        "code": report.code.value,
        "meaning": STATUS_MEANINGS.get(report.code.value, ""),
        "at": report.at,
        "reporter": str(report.reporter),
        "node": str(report.node),
        "staff": {
            "name": report.staff.name,
            "department": report.staff.department,
            "contact": report.staff.contact,
        },
        "description": report.description,
        "digest": report.digest().hex(),
        "prev": report.prev.hex() if report.prev is not None else None,
    }
    if evidence is not None:
        out["evidence"] = _b64(evidence)
    return out


def trail_json(trail: StatusTrail, *, evidence: bool = True) -> Json:
    return {
        "complete": trail.complete,
        "codes": [c.value for c in trail.codes],
        "reports": [
            report_json(r, e if evidence else None)
            for r, e in zip(trail.reports, trail.evidence, strict=True)
        ],
    }


def entry_json(entry: OutboxEntry) -> Json:
    """A recipient's delivery state, with its transition history."""
    return {
        "state": entry.state.value,
        "attempts": entry.attempts,
        "next_at": entry.next_at or None,
        "deadline": entry.deadline,
        "last_error": entry.last_error,
        "updated_at": entry.updated_at,
        "history": [{"at": at, "state": state, "note": note} for at, state, note in entry.history],
    }


def files_json(manifest: Manifest) -> list[Json]:
    return [
        {"name": f.name, "media_type": f.media_type, "size": f.size, "cid": str(f.cid)}
        for f in manifest.files
    ]


def peer_json(peer: PeerStatus) -> Json:
    return {
        "agency": str(peer.agency),
        "peer": str(peer.peer),
        "addrs": list(peer.addrs),
        "listed": peer.listed,
        "connected": peer.connected,
        "agent": peer.agent,
        "bytes_sent": peer.bytes_sent,
        "bytes_received": peer.bytes_received,
    }


def _summary_state(states: Sequence[OutboxState]) -> str:
    if not states:
        return "unknown"
    if all(s is OutboxState.DELIVERED for s in states):
        return "delivered"
    if any(s is OutboxState.FAILED for s in states) and all(s.terminal for s in states):
        return "failed"
    return "pending"


def _received_summary(item: InboxItem) -> Json:
    """What the inbox lists of a received document (kept in the RECEIVED index)."""
    envelope = item.envelope
    return {
        "root": str(item.root),
        "document_id": str(envelope.document_id),
        "subject": envelope.subject[:200],
        "sender": str(envelope.sender.code),
        "sender_name": envelope.sender.name,
        "received_at": item.received_at,
        "size": item.manifest.total_size,
        "files": len(item.manifest.files),
    }


class Desk:
    """Document software's view of one node. See the module docstring.

    Args:
        node: the running node.
        store: the node's store (for the desk's own indexes).
        trust: the node's trust gate (the outgoing policy check).
        signers: the officials who sign submitted documents (None: the node cannot submit).
        clock: the node's clock.
        agency_name: this agency's name (filled into ``from``).
        directory: where the peer list comes from.
        metrics: the daemon's metrics.
        activity: the event feed.
        certificate_expires: when the node's certificate expires (reported by health).
    """

    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        trust: TrustGate,
        signers: DocumentSigners | None,
        clock: Clock,
        agency_name: str,
        directory: DirectoryInfo,
        metrics: Metrics | None = None,
        activity: Activity | None = None,
        certificate_expires: _dt.datetime | None = None,
    ) -> None:
        self.node = node
        self._store = store
        self._trust = trust
        self._signers = signers
        self._clock = clock
        self.agency_name = agency_name
        self.directory_info = directory
        self.activity = activity or Activity(clock.now_ms)
        self.metrics = metrics or Metrics(self.gauges)
        self._nursery: trio.Nursery | None = None
        self._watching: set[Cid] = set()
        self._sent_lock = trio.Lock()
        self._unacked = 0
        self.started_ms = clock.now_ms()
        self.certificate_expires = certificate_expires

    # -- running ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Index arrivals and follow unfinished deliveries until cancelled."""
        self.node.add_status_listener(self._status_arrived)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for root in self.node.unfinished_deliveries():
                self._watch(root)
            await self.refresh()
            nursery.start_soon(self._index_inbox)
            task_status.started()
            await trio.sleep_forever()

    async def refresh(self) -> None:
        """Recount what the metrics read (the unacknowledged inbox)."""
        count = 0
        after: str | None = None
        while count < 100_000:
            page = await self._store.list_records(INBOX_ORDER, after=after, limit=1000)
            if not page:
                break
            count += len(page)
            after = page[-1][0]
        self._unacked = count

    def gauges(self) -> Gauges:
        now = self._clock.now_ms()
        pending: _Counter[str] = _Counter()
        for states in self.node.unfinished_deliveries().values():
            pending.update(s.value for s in states.values() if not s.terminal)
        peers = self.node.peers()
        lists = self._trust.trust.revocation_lists()
        oldest = min((crl.this_update for crl in lists), default=None)
        counters = {
            k: v for k, v in self.node.health().items() if isinstance(v, int) and k != "peer"
        }
        return Gauges(
            pending_by_state=dict(pending),
            peers_known=len(self.node.directory),
            peers_connected=sum(1 for p in peers if p.connected),
            directory_age=max(0.0, (now - self.directory_info.updated_ms) / 1000),
            revocation_list_age=(
                max(0.0, now / 1000 - oldest.timestamp()) if oldest is not None else 0.0
            ),
            node_counters=counters,
            inbox_unacked=self._unacked,
        )

    def _watch(self, root: Cid) -> None:
        if root in self._watching or self._nursery is None:
            return
        self._watching.add(root)
        self._nursery.start_soon(self._follow, root)

    async def _follow(self, root: Cid) -> None:
        """Publish each recipient's persisted state changes of ``root`` until all finish."""
        try:
            previous = {r: e.state for r, e in self.node.tracked_entries(root).items()}
            size = 0
            try:
                record = await self._store.get_document(root)
                size = Manifest.decode(record.manifest, expected=root).total_size
            except (NotFound, DecodeError):
                pass
            while True:
                entries = self.node.tracked_entries(root)
                changed = [(r, e) for r, e in entries.items() if previous.get(r) != e.state]
                previous = {r: e.state for r, e in entries.items()}
                for recipient, entry in changed:
                    self._delivery_changed(root, recipient, entry, size)
                if all(e.state.terminal for e in entries.values()):
                    return  # every delivery finished (or none is held in memory any more)
                await self.node.wait_delivery_change(root)
        finally:
            self._watching.discard(root)

    def _delivery_changed(
        self, root: Cid, recipient: AgencyCode, entry: OutboxEntry, size: int
    ) -> None:
        fields: Json = {
            "root": str(root),
            "recipient": str(recipient),
            "state": entry.state.value,
            "attempts": entry.attempts,
            "last_error": entry.last_error,
        }
        if entry.state is OutboxState.DELIVERED and entry.receipt is not None:
            queued = entry.history[0][0] if entry.history else entry.updated_at
            latency = max(0.0, (entry.updated_at - queued) / 1000)
            self.metrics.deliveries.labels("delivered").inc()
            self.metrics.latency.observe(latency)
            self.metrics.document_bytes.labels("delivered").inc(size)
            fields["latency_seconds"] = latency
            fields["receipt"] = receipt_json(recipient, entry.receipt)
            self.activity.emit("receipt", **fields)
            log.info(
                "receipt from %s for %s after %.3f s", recipient, root, latency,
                extra={"event": "receipt", "root": str(root), "recipient": str(recipient)},
            )  # fmt: skip
        elif entry.state is OutboxState.FAILED:
            self.metrics.deliveries.labels("failed").inc()
            self.activity.emit("delivery.failed", **fields)
        else:
            self.activity.emit("delivery", **fields)

    def _status_arrived(self, report: StatusReport) -> None:
        self.metrics.status_reports.labels("received").inc()
        self.activity.emit(
            "status.received",
            root=str(report.root),
            document_id=str(report.document_id),
            reporter=str(report.reporter),
            report=report_json(report),
        )

    async def _index_inbox(self) -> None:
        async for item in self.node.inbox():
            await self._index_received(item, announce=True)

    async def _index_received(self, item: InboxItem, *, announce: bool = False) -> None:
        root = str(item.root)
        try:
            await self._store.get_record(RECEIVED_BY_ROOT, root)
            return
        except NotFound:
            pass
        key = _order_key(item.received_at, item.root)
        summary = _received_summary(item)
        await self._store.write(
            [PutRecord(RECEIVED, key, summary), PutRecord(RECEIVED_BY_ROOT, root, key)]
        )
        if announce:
            self._unacked += 1
            self.metrics.received.inc()
            self.metrics.document_bytes.labels("received").inc(item.manifest.total_size)
            self.activity.emit("document.received", **summary)
            log.info(
                "received %s from %s", item.envelope.document_id, item.envelope.sender.code,
                extra={"event": "received", "root": root},
            )  # fmt: skip

    # -- submitting ---------------------------------------------------------------------

    def _is_known(self, agency: AgencyCode) -> bool:
        try:
            self.node.directory.lookup(agency)
        except NetworkError:
            return False
        return True

    def check_submission(
        self, metadata: bytes, files: Sequence[SpooledFile]
    ) -> tuple[Envelope, float | None]:
        """Everything that can refuse a submission, checked before anything is stored.

        Raises:
            DecodeError: the metadata is not JSON.
            InvalidField: a field is missing or wrong, a recipient is unknown, a file name or
                media type is invalid or repeated, or the manifest would be too large.
            PolicyRefused: the classification policy forbids sending it.
            ConfigError: no signer is configured.
        """
        try:
            value = json.loads(metadata)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"metadata is not valid JSON: {exc}") from None
        envelope, deadline = envelope_from_json(
            value, sender=self.node.agency, sender_name=self.agency_name, is_known=self._is_known
        )
        placeholder = Cid.of(Multicodec.RAW, b"")
        entries = []
        for i, spooled in enumerate(files):
            try:
                entries.append(
                    FileEntry(
                        name=spooled.name,
                        media_type=spooled.media_type,
                        size=spooled.size,
                        cid=placeholder,
                    )
                )
            except InvalidValue as exc:
                raise InvalidField(f"files[{i}]", str(exc)) from None
        try:
            manifest = Manifest(envelope=envelope, files=tuple(entries))
            manifest.encode()
        except LimitExceeded as exc:
            raise InvalidField("files", str(exc)) from None
        except InvalidValue as exc:
            raise InvalidField("files", str(exc)) from None
        self._trust.check_outgoing(manifest)
        if self._signers is None:
            raise ConfigError("signers", "no [[signers]] configured: this node cannot sign")
        return envelope, deadline

    async def submit(self, metadata: bytes, files: Sequence[SpooledFile]) -> Json:
        """Check, store, sign and queue a document for its recipients.

        Submitting the same metadata and files again names the same document (its root
        CID) and queues nothing twice.

        Raises:
            As :meth:`check_submission` (nothing stored), or StoreError.
        """
        envelope, deadline = self.check_submission(metadata, files)
        assert self._signers is not None
        sources = [FileSource(f.name, f.media_type, str(f.path)) for f in files]
        document = await self.node.create_document(envelope, sources, signer=self._signers)
        root = document.root
        now = self._clock.now_ms()
        summary: Json = {
            "root": str(root),
            "document_id": str(envelope.document_id),
            "subject": envelope.subject[:200],
            "recipients": [str(r) for r in envelope.recipient_codes],
            "created_at": now,
            "size": document.size,
            "files": len(document.manifest.files),
        }
        # One lookup-then-write at a time: two identical submissions racing (a client
        # retrying while its first request still runs) must index the document once.
        async with self._sent_lock:
            try:
                await self._store.get_record(SENT_BY_ROOT, str(root))
                fresh = False
            except NotFound:
                key = _order_key(now, root)
                await self._store.write(
                    [PutRecord(SENT, key, summary), PutRecord(SENT_BY_ROOT, str(root), key)]
                )
                fresh = True
        await self.node.send(document, deadline=deadline)
        if fresh:
            self.metrics.submitted.inc()
            self.metrics.document_bytes.labels("submitted").inc(document.size)
            self.activity.emit("document.submitted", **summary)
            log.info(
                "queued %s for %s", envelope.document_id,
                ", ".join(str(r) for r in envelope.recipient_codes),
                extra={"event": "submitted", "root": str(root)},
            )  # fmt: skip
        self._watch(root)
        return {**summary, "resubmitted": not fresh}

    # -- sent documents -----------------------------------------------------------------

    async def _page(
        self, table: str, after: str | None, limit: int
    ) -> tuple[list[Json], str | None]:
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._store.list_records(table, after=after, limit=limit)
        items = [dict(value) for _, value in rows if isinstance(value, dict)]
        cursor = rows[-1][0] if len(rows) == limit else None
        return items, cursor

    async def outgoing(self, *, after: str | None = None, limit: int = 50) -> Json:
        """Sent documents, newest first, with each recipient's delivery state."""
        items, cursor = await self._page(SENT, after, limit)
        for item in items:
            entries = await self.node.sent_entries(Cid.parse(str(item["root"])))
            item["deliveries"] = {
                str(r): {
                    "state": e.state.value,
                    "attempts": e.attempts,
                    "last_error": e.last_error,
                    "updated_at": e.updated_at,
                }
                for r, e in sorted(entries.items(), key=lambda kv: str(kv[0]))
            }
            item["state"] = _summary_state([e.state for e in entries.values()])
        return {"items": items, "next": cursor}

    async def _sent_manifest(self, root: Cid) -> Manifest:
        try:
            await self._store.get_record(SENT_BY_ROOT, str(root))
        except NotFound:
            raise NotFound(f"no document {root} was sent from here") from None
        record = await self._store.get_document(root)
        return Manifest.decode(record.manifest, expected=root)

    async def outgoing_detail(self, root_text: str) -> Json:
        """One sent document: envelope, files, per-recipient delivery with history, receipt
        and status trail.

        Raises:
            NotFound: no such document was sent from here.
        """
        root = _parse_root(root_text)
        manifest = await self._sent_manifest(root)
        entries = await self.node.sent_entries(root)
        deliveries: Json = {}
        for recipient in manifest.envelope.recipient_codes:
            entry = entries.get(recipient)
            if entry is None:
                deliveries[str(recipient)] = {"state": "not-queued"}
                continue
            item = entry_json(entry)
            item["receipt"] = (
                receipt_json(recipient, entry.receipt) if entry.receipt is not None else None
            )
            item["status"] = trail_json(
                await self.node.status_trail(root, recipient), evidence=False
            )
            deliveries[str(recipient)] = item
        return {
            "root": str(root),
            "document_id": str(manifest.envelope.document_id),
            "envelope": envelope_to_json(manifest.envelope),
            "files": files_json(manifest),
            "size": manifest.total_size,
            "state": _summary_state([e.state for e in entries.values()]),
            "deliveries": deliveries,
        }

    async def receipts(self, root_text: str) -> Json:
        """The verified receipts of a sent document, by recipient."""
        root = _parse_root(root_text)
        await self._sent_manifest(root)
        entries = await self.node.sent_entries(root)
        return {
            "root": str(root),
            "receipts": [
                receipt_json(r, e.receipt)
                for r, e in sorted(entries.items(), key=lambda kv: str(kv[0]))
                if e.receipt is not None
            ],
        }

    async def all_receipts(self, *, after: str | None = None, limit: int = 50) -> Json:
        """Receipts of sent documents, newest document first (paged by document)."""
        items, cursor = await self._page(SENT, after, limit)
        out: list[Json] = []
        for item in items:
            root = Cid.parse(str(item["root"]))
            for recipient, entry in sorted(
                (await self.node.sent_entries(root)).items(), key=lambda kv: str(kv[0])
            ):
                if entry.receipt is not None:
                    receipt = receipt_json(recipient, entry.receipt)
                    out.append({"root": str(root), "document_id": item["document_id"], **receipt})
        return {"items": out, "next": cursor}

    async def trails(self, root_text: str) -> Json:
        """The status trail of every recipient of a sent document (with evidence)."""
        root = _parse_root(root_text)
        manifest = await self._sent_manifest(root)
        return {
            "root": str(root),
            "trails": {
                str(r): trail_json(await self.node.status_trail(root, r))
                for r in manifest.envelope.recipient_codes
            },
        }

    # -- received documents -------------------------------------------------------------

    def _item_json(self, item: InboxItem, state: InboxState) -> Json:
        return {**_received_summary(item), "state": state.value}

    async def incoming(
        self, *, state: str = "stored", after: str | None = None, limit: int = 50
    ) -> Json:
        """Received documents: ``stored`` (not yet acknowledged, oldest first: the order to
        take them in) or ``all`` (newest first, with their state).

        Raises:
            InvalidField: another ``state``.
        """
        limit = max(1, min(limit, MAX_PAGE))
        if state == "stored":
            pairs = await self.node.pending_inbox(after=after, limit=limit)
            return {
                "items": [self._item_json(item, InboxState.STORED) for _, item in pairs],
                "next": pairs[-1][0] if len(pairs) == limit else None,
            }
        if state != "all":
            raise InvalidField("state", "must be stored or all")
        items, cursor = await self._page(RECEIVED, after, limit)
        for item in items:
            entry = await self.node.inbox_entry(Cid.parse(str(item["root"])))
            item["state"] = entry.state.value if entry is not None else "unknown"
        return {"items": items, "next": cursor}

    async def wait_incoming(self, seconds: float) -> None:
        """Return when a document arrives, or after ``seconds``."""
        last = self.activity.last
        with trio.move_on_after(seconds):
            while True:
                events = await self.activity.wait(last, seconds)
                if any(e["kind"] == "document.received" for e in events):
                    return
                if events:
                    last = int(str(events[-1]["seq"]))

    async def incoming_detail(self, root_text: str) -> Json:
        """One received document: envelope, files, our receipt and our status trail.

        Raises:
            NotFound: no such received document.
        """
        root = _parse_root(root_text)
        item = await self.node.received(root)
        entry = await self.node.inbox_entry(root)
        assert entry is not None
        trail = await self.node.status_trail(root, self.node.agency)
        last = trail.reports[-1].code if trail.reports else None
        return {
            **self._item_json(item, entry.state),
            "envelope": envelope_to_json(item.envelope),
            "files": files_json(item.manifest),
            "sender_peer": str(item.sender_peer),
            "receipt": receipt_json(self.node.agency, item.receipt),
            "status": trail_json(trail, evidence=False),
            "next_status": sorted(c.value for c in ALLOWED_TRANSITIONS.get(last, frozenset())),
        }

    async def attachment(self, root_text: str, name: str) -> tuple[FileEntry, AsyncIterator[bytes]]:
        """A received (or sent) document's file and a stream of its verified bytes.

        Raises:
            NotFound: no such document or file.
        """
        root = _parse_root(root_text)
        try:
            item = await self.node.received(root)
        except NotFound:
            item = None
        if item is not None:
            for entry in item.manifest.files:
                if entry.name == name:
                    return entry, item.open_file(name)
            raise NotFound(f"document {root} has no file {name!r}")
        manifest = await self._sent_manifest(root)
        for entry in manifest.files:
            if entry.name == name:
                return entry, read_file(entry.cid, self._store.get_block)
        raise NotFound(f"document {root} has no file {name!r}")

    async def ack(self, root_text: str) -> Json:
        """Acknowledge a received document (idempotent).

        Raises:
            NotFound: no such received document.
        """
        root = _parse_root(root_text)
        item = await self.node.received(root)
        await self._index_received(item)
        if await self.node.ack(root):
            self._unacked = max(0, self._unacked - 1)
            self.activity.emit("document.acked", root=str(root))
        return {"root": str(root), "state": InboxState.ACKED.value}

    async def post_status(self, root_text: str, value: object) -> Json:
        """Report a processing status on a received document to its sender.

        ``value``: ``{"code": "03", "staff": {"name", "department", "contact"},
        "description": "..."}``.

        Raises:
            NotFound: no such received document.
            InvalidField: a malformed body.
            InvalidValue: the code may not follow the last one reported (the API says 409).
        """
        root = _parse_root(root_text)
        if not isinstance(value, dict):
            raise InvalidField("body", "must be a JSON object")
        for name in value:
            if name not in ("code", "staff", "description"):
                raise InvalidField(str(name), "unknown field", code="unknown_field")
        if "code" not in value:
            raise InvalidField("code", "is required", code="missing_field")
        try:
            code = StatusCode(str(value["code"]))
        except ValueError:
            raise InvalidField(
                "code", f"must be one of {', '.join(c.value for c in StatusCode)}"
            ) from None
        staff_value = value.get("staff", {})
        if not isinstance(staff_value, dict) or any(
            k not in ("name", "department", "contact") or not isinstance(v, str)
            for k, v in staff_value.items()
        ):
            raise InvalidField("staff", "must be an object of name, department and contact texts")
        description = value.get("description", "")
        if not isinstance(description, str) or len(description) > 2000:
            raise InvalidField("description", "must be text of at most 2000 characters")
        try:
            staff = Staff(**staff_value)
        except InvalidValue as exc:
            raise InvalidField("staff", str(exc)) from None
        await self.node.received(root)
        report = await self.node.report_status(root, code, staff=staff, description=description)
        self.metrics.status_reports.labels("posted").inc()
        self.activity.emit("status.posted", root=str(root), report=report_json(report))
        return {"root": str(root), "report": report_json(report)}

    async def own_trail(self, root_text: str) -> Json:
        root = _parse_root(root_text)
        await self.node.received(root)
        return trail_json(await self.node.status_trail(root, self.node.agency))

    # -- health and peers ---------------------------------------------------------------

    def peers(self) -> list[Json]:
        return [peer_json(p) for p in self.node.peers()]

    async def health(self) -> Json:
        """Whether the node is working as it should, and why not."""
        await self.refresh()
        now = self._clock.now_ms()
        now_dt = _dt.datetime.fromtimestamp(now / 1000, _dt.UTC)
        issues: list[str] = []
        age = max(0.0, (now - self.directory_info.updated_ms) / 1000)
        stale = age > self.directory_info.max_age
        if stale:
            issues.append(f"the peer list is {age / 86400:.1f} days old")
        lists = []
        for crl in self._trust.trust.revocation_lists():
            crl_stale = crl.is_stale(now_dt)
            if crl_stale:
                issues.append(f"the revocation list of {crl.issuer} is past its next update")
            lists.append(
                {
                    "issuer": crl.issuer,
                    "version": crl.version,
                    "this_update": crl.this_update.isoformat(),
                    "next_update": crl.next_update.isoformat() if crl.next_update else None,
                    "stale": crl_stale,
                }
            )
        counters = self.node.health()
        gauges = self.gauges()
        certificate: Json | None = None
        if self.certificate_expires is not None:
            days = (self.certificate_expires - now_dt).total_seconds() / 86400
            if days < 30:
                issues.append(f"the node certificate expires in {days:.1f} days")
            certificate = {
                "not_after": self.certificate_expires.isoformat(),
                "expires_in_days": round(days, 2),
            }
        return {
            "status": "ok" if not issues else "degraded",
            "issues": issues,
            "agency": str(self.node.agency),
            "name": self.agency_name,
            "peer": str(self.node.peer),
            "listen_addrs": self.node.listen_addrs,
            "uptime_seconds": max(0.0, (now - self.started_ms) / 1000),
            "directory": {
                "source": self.directory_info.source,
                "peers": len(self.node.directory),
                "updated_at": self.directory_info.updated_ms,
                "age_seconds": age,
                "max_age_seconds": self.directory_info.max_age,
                "stale": stale,
            },
            "revocation_lists": lists,
            "certificate": certificate,
            "deliveries_pending": gauges.pending_by_state,
            "inbox_unacknowledged": self._unacked,
            "peers_connected": gauges.peers_connected,
            "counters": {k: v for k, v in counters.items() if k not in ("agency", "peer")},
        }
