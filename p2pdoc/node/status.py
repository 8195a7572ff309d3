"""Processing-status reports: made and pushed by the recipient, verified and kept by the sender.

Recipient side: :meth:`StatusDesk.report` checks the edXML transition from the last code it
reported for the document, signs the report (chained to the previous one by digest), stores it
in its own trail and queues it for the sender in ``status-out``. A pusher delivers queued
reports to the sender's node in order, one document at a time, retrying with back-off until
the sender acknowledges.

Sender side: a pushed report is verified (signer chain, signature, that its signer is the
reporting agency and a recipient of a document this node sent), checked against the
predecessor it names, and stored under ``status-log``; a replay of the same report is
acknowledged again, a different report with the same number is refused.

Both sides keep trails under ``status-log`` keys ``"<root>|<reporter>|<seq, 8 digits>"``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import pairwise

import trio

from p2pdoc.codecs.cid import Cid
from p2pdoc.delivery.evidence import Evidence, Staff, StatusCode, StatusReport, verify_evidence
from p2pdoc.errors import (
    DecodeError,
    InvalidValue,
    NotFound,
    P2pdocError,
    StatusTrailBroken,
    VerificationError,
)
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.node.context import NodeContext
from p2pdoc.node.sessions import Sessions
from p2pdoc.protocol.messages import Ack, PushStatus
from p2pdoc.protocol.session import Session
from p2pdoc.store.base import DeleteRecord, PutRecord, WriteOp

__all__ = ["ALLOWED_TRANSITIONS", "StatusDesk", "StatusTrail"]

log = logging.getLogger(__name__)

STATUS_LOG = "status-log"
STATUS_OUT = "status-out"

C = StatusCode
ALLOWED_TRANSITIONS: dict[StatusCode | None, frozenset[StatusCode]] = {
    None: frozenset({C.ARRIVED, C.REJECTED, C.ACCEPTED}),
    C.ARRIVED: frozenset({C.REJECTED, C.ACCEPTED}),
    C.ACCEPTED: frozenset({C.ASSIGNED, C.PROCESSING, C.COMPLETED}),
    C.ASSIGNED: frozenset({C.ASSIGNED, C.PROCESSING, C.COMPLETED}),
    C.PROCESSING: frozenset({C.PROCESSING, C.COMPLETED}),
    C.REJECTED: frozenset(),
    C.COMPLETED: frozenset(),
}
"""Which code may follow which, for the recipient's own reports (recall flows excluded)."""


def _log_key(root: Cid, reporter: AgencyCode, seq: int) -> str:
    return f"{root}|{reporter}|{seq:08d}"


@dataclass(frozen=True, slots=True)
class StatusTrail:
    """A recipient's reports on one document, in order.

    Attributes:
        reports: the verified reports, by ``seq``.
        evidence: each report's encoded evidence (verifiable offline).
        complete: numbers run 1..n without gaps and each names its predecessor's digest.
    """

    reports: tuple[StatusReport, ...]
    evidence: tuple[bytes, ...]
    complete: bool

    @property
    def codes(self) -> list[StatusCode]:
        return [r.code for r in self.reports]


@dataclass(slots=True)
class _Outgoing:
    key: str
    root: Cid
    seq: int
    peer: PeerId
    evidence: bytes
    attempts: int = 0
    next_at: int = 0


class StatusDesk:
    """Makes, pushes, receives and reads status reports."""

    def __init__(self, ctx: NodeContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._last: dict[Cid, StatusReport] = {}
        self._queue: dict[Cid, list[_Outgoing]] = {}
        self._wakeup = trio.Event()
        self._changed: dict[Cid, trio.Event] = {}
        self.pushed = 0
        self.received = 0
        self.listeners: list[Callable[[StatusReport], None]] = []
        """Called with each report a recipient sends us once it is verified and kept (a
        replayed report may be passed again). Must not block or raise."""

    # -- recipient side -----------------------------------------------------------------

    def _report(
        self,
        root: Cid,
        envelope: Envelope,
        last: StatusReport | None,
        code: StatusCode,
        staff: Staff,
        description: str,
    ) -> StatusReport:
        """This node's report following ``last`` (None: the first report)."""
        return StatusReport(
            root=root,
            document_id=envelope.document_id,
            sender=envelope.sender.code,
            reporter=self._ctx.agency,
            node=self._ctx.credentials.peer,
            seq=last.seq + 1 if last else 1,
            prev=last.digest() if last else None,
            code=code,
            at=self._ctx.clock.now_ms(),
            staff=staff,
            description=description,
        )

    def arrival_report(self, root: Cid, envelope: Envelope) -> StatusReport:
        """Status 01 for a document being stored now (the first report)."""
        return self._report(
            root, envelope, None, StatusCode.ARRIVED, Staff(), "Văn bản đã đến hệ thống"
        )

    async def next_report(
        self, root: Cid, envelope: Envelope, code: StatusCode, staff: Staff, description: str
    ) -> StatusReport:
        """The report that would follow this node's last one on ``root``.

        Raises:
            InvalidValue: ``code`` may not follow the last code reported.
        """
        last = await self._last_report(root)
        allowed = ALLOWED_TRANSITIONS.get(last.code if last else None, frozenset())
        if code not in allowed:
            previous = last.code.value if last else "none"
            raise InvalidValue(
                f"status {code.value} cannot follow {previous}; allowed: "
                f"{', '.join(sorted(c.value for c in allowed)) or 'nothing (final)'}"
            )
        return self._report(root, envelope, last, code, staff, description)

    async def _last_report(self, root: Cid) -> StatusReport | None:
        last = self._last.get(root)
        if last is None:
            trail = await self.trail(root, self._ctx.agency)
            if trail.reports:
                last = trail.reports[-1]
                self._last[root] = last
        return last

    def own_ops(self, report: StatusReport, evidence: bytes) -> list[WriteOp]:
        """Writes that keep one of our reports in our own trail only (the arrival report,
        which travels with the receipt instead of being pushed)."""
        return [PutRecord(STATUS_LOG, _log_key(report.root, report.reporter, report.seq), evidence)]

    def remember_own(self, report: StatusReport) -> None:
        """After :meth:`own_ops` were written."""
        self._last[report.root] = report

    async def own_arrival(self, root: Cid) -> bytes | None:
        """Our arrival report's evidence for ``root`` (to answer a repeated offer), if any."""
        try:
            value = await self._ctx.store.get_record(
                STATUS_LOG, _log_key(root, self._ctx.agency, 1)
            )
        except NotFound:
            return None
        return value if isinstance(value, bytes) else None

    def record_ops(
        self, report: StatusReport, evidence: bytes, sender_peer: PeerId
    ) -> list[WriteOp]:
        """Writes that keep ``report`` in our trail and queue it for the sender."""
        key = f"{report.root}|{report.seq:08d}"
        return [
            PutRecord(STATUS_LOG, _log_key(report.root, report.reporter, report.seq), evidence),
            PutRecord(
                STATUS_OUT,
                key,
                {"peer": str(sender_peer), "evidence": evidence, "attempts": 0, "next_at": 0},
            ),
        ]

    def recorded(self, report: StatusReport, evidence: bytes, sender_peer: PeerId) -> None:
        """After :meth:`record_ops` were written: remember and push."""
        self._last[report.root] = report
        key = f"{report.root}|{report.seq:08d}"
        self._queue.setdefault(report.root, []).append(
            _Outgoing(key, report.root, report.seq, sender_peer, evidence)
        )
        self._wakeup.set()

    async def resume(self) -> int:
        """Load reports still to push (after a start or crash). Returns how many."""
        count = 0
        after: str | None = None
        while page := await self._ctx.store.list_records(STATUS_OUT, after=after, limit=1000):
            for key, value in page:
                root_text, seq = key.split("|")
                root = Cid.parse(root_text)
                item = _Outgoing(
                    key, root, int(seq), PeerId.parse(value["peer"]), value["evidence"],
                    value["attempts"], value["next_at"],
                )  # fmt: skip
                self._queue.setdefault(root, []).append(item)
                count += 1
            after = page[-1][0]
        for items in self._queue.values():
            items.sort(key=lambda i: i.seq)
        self._wakeup.set()
        return count

    def pending(self) -> int:
        return sum(len(v) for v in self._queue.values())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Push queued reports, each document's in order, until cancelled."""
        busy: set[Cid] = set()
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                now = self._ctx.clock.now_ms()
                soonest = None
                for root, items in list(self._queue.items()):
                    if not items:
                        del self._queue[root]
                        continue
                    if root in busy:
                        continue
                    if items[0].next_at <= now:
                        busy.add(root)
                        nursery.start_soon(self._push, root, busy)
                    elif soonest is None or items[0].next_at < soonest:
                        soonest = items[0].next_at
                wait = (soonest - now) / 1000 if soonest is not None else float("inf")
                with trio.move_on_after(wait):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()

    async def _push(self, root: Cid, busy: set[Cid]) -> None:
        ctx = self._ctx
        try:
            items = self._queue.get(root, [])
            while items:
                item = items[0]
                try:
                    session = await self._sessions.get(item.peer)
                    with trio.fail_after(ctx.config.delivery.offer_timeout):
                        await session.push_status(item.evidence)
                except (P2pdocError, trio.TooSlowError) as exc:
                    item.attempts += 1
                    now = ctx.clock.now_ms()
                    item.next_at = ctx.config.delivery.retry.retry_at(item.attempts, now, ctx.rng)
                    value = {
                        "peer": str(item.peer),
                        "evidence": item.evidence,
                        "attempts": item.attempts,
                        "next_at": item.next_at,
                    }
                    await ctx.store.write([PutRecord(STATUS_OUT, item.key, value)])
                    log.info(
                        "status report %s to %s not delivered yet: %s", item.key, item.peer, exc
                    )
                    return
                await ctx.store.write([DeleteRecord(STATUS_OUT, item.key)])
                items.pop(0)
                self.pushed += 1
        finally:
            busy.discard(root)
            self._wakeup.set()

    # -- sender side --------------------------------------------------------------------

    async def receive(
        self,
        session: Session,
        request: PushStatus,
        is_recipient: Callable[[Cid, AgencyCode], Awaitable[bool]],
    ) -> Ack:
        """Verify and keep a pushed report.

        Raises:
            StatusTrailBroken: the report does not verify, concerns no document we sent to its
                reporter, or conflicts with a report already kept.
        """
        report, ops = await self.check(request.report, is_recipient)
        if ops:
            await self._ctx.store.write(ops)
        self.kept(report, new=bool(ops))
        return Ack(request.rid)

    async def check(
        self, evidence: bytes, is_recipient: Callable[[Cid, AgencyCode], Awaitable[bool]]
    ) -> tuple[StatusReport, list[WriteOp]]:
        """Verify a report from a recipient (pushed, or carried with its receipt).

        Returns:
            The report and the writes that keep it (none if it is kept already); call
            :meth:`kept` once they are written.

        Raises:
            StatusTrailBroken: as :meth:`receive`.
        """
        try:
            verified = verify_evidence(evidence, self._ctx.trust)
            report = StatusReport.decode(verified.evidence.body)
        except (DecodeError, VerificationError) as exc:
            raise StatusTrailBroken(f"status report does not verify: {exc}") from exc
        if verified.signer != report.reporter or report.node != verified.evidence.peer:
            raise StatusTrailBroken("status report signed by another agency or node than it names")
        known = await is_recipient(report.root, report.reporter)
        if report.sender != self._ctx.agency or not known:
            raise StatusTrailBroken(
                f"no document {report.root} was sent to {report.reporter} from here"
            )
        store = self._ctx.store
        key = _log_key(report.root, report.reporter, report.seq)
        try:
            kept = await store.get_record(STATUS_LOG, key)
        except NotFound:
            kept = None
        if kept is not None:
            if StatusReport.decode(_body(kept)) != report:
                raise StatusTrailBroken(
                    f"a different report {report.seq} from {report.reporter} is already kept"
                )
            return report, []
        if report.seq > 1:
            previous_key = _log_key(report.root, report.reporter, report.seq - 1)
            try:
                previous = StatusReport.decode(
                    _body(await store.get_record(STATUS_LOG, previous_key))
                )
            except NotFound:
                previous = None
            if previous is not None and previous.digest() != report.prev:
                raise StatusTrailBroken(
                    f"report {report.seq} from {report.reporter} does not follow "
                    f"report {report.seq - 1}"
                )
        return report, [PutRecord(STATUS_LOG, key, evidence)]

    def kept(self, report: StatusReport, *, new: bool) -> None:
        """A report from a recipient is stored: wake waiters and tell the listeners."""
        if new:
            self.received += 1
        event = self._changed.pop(report.root, None)
        if event is not None:
            event.set()
        for listener in tuple(self.listeners):
            listener(report)

    async def wait_changed(self, root: Cid) -> None:
        await self._changed.setdefault(root, trio.Event()).wait()

    async def trail(self, root: Cid, reporter: AgencyCode) -> StatusTrail:
        """``reporter``'s reports on ``root`` as kept here, verified again."""
        rows = await self._ctx.store.list_records(
            STATUS_LOG, prefix=f"{root}|{reporter}|", limit=10_000
        )
        reports = []
        evidence = []
        for _, value in rows:
            verified = verify_evidence(value, self._ctx.trust)
            reports.append(StatusReport.decode(verified.evidence.body))
            evidence.append(value)
        complete = all(r.seq == i for i, r in enumerate(reports, start=1)) and all(
            later.prev == earlier.digest() for earlier, later in pairwise(reports)
        )
        return StatusTrail(tuple(reports), tuple(evidence), complete)


def _body(evidence: bytes) -> bytes:
    return Evidence.decode(evidence).body
