"""Delivery state machines: one table per machine, pure transitions, no I/O.

Outbox: one entry per (document version, recipient) at the sender::

    QUEUED ──attempt──> OFFERING ──blocks requested──> TRANSFERRING ──all served──> AWAITING_RECEIPT
       ^                   │  │                              │                          │
       │                   │  └────────── receipt ───────────┴──────────┬───────────────┘
       │                   │                                            v
       └─ RETRY_WAIT <─────┴──── failure (retryable, before deadline)  DELIVERED
                   │
                   └── deadline passed / refused for good ──> FAILED

Inbox: one entry per (sender, document id, root) at the recipient::

    RECEIVING ──all blocks stored and verified, receipt signed──> STORED ──app ack──> ACKED

Events are frozen values; :func:`advance_outbox` and :func:`advance_inbox` are the only places
that decide a next state, each from one table. An event that the table does not allow in the
current state raises :class:`~p2pdoc.errors.LocalProtocolError` (a bug in the caller).

What is persisted: QUEUED, RETRY_WAIT, DELIVERED and FAILED are written to the store; the
in-flight states live in memory only and a restart resumes them as due retries, which the
recipient's duplicate detection makes safe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from p2pdoc.codecs.cbor import Value
from p2pdoc.errors import DecodeError, InvalidValue, LocalProtocolError

__all__ = [
    "Acked",
    "AttemptFailed",
    "AttemptStarted",
    "BlocksServed",
    "DeadlinePassed",
    "InboxEntry",
    "InboxEvent",
    "InboxState",
    "OutboxEntry",
    "OutboxEvent",
    "OutboxState",
    "ReceiptAccepted",
    "Stored",
    "advance_inbox",
    "advance_outbox",
]

MAX_HISTORY: Final = 32


class OutboxState(enum.StrEnum):
    QUEUED = "queued"
    OFFERING = "offering"
    TRANSFERRING = "transferring"
    AWAITING_RECEIPT = "awaiting-receipt"
    RETRY_WAIT = "retry-wait"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (OutboxState.DELIVERED, OutboxState.FAILED)

    @property
    def in_flight(self) -> bool:
        return self in (
            OutboxState.OFFERING,
            OutboxState.TRANSFERRING,
            OutboxState.AWAITING_RECEIPT,
        )


class InboxState(enum.StrEnum):
    RECEIVING = "receiving"
    STORED = "stored"
    ACKED = "acked"


# -- outbox events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """The scheduler starts an attempt (connect and offer)."""

    now: int


@dataclass(frozen=True, slots=True)
class BlocksServed:
    """The recipient fetched ``served`` of the ``total`` blocks it may need from us."""

    now: int
    served: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.served <= self.total:
            raise InvalidValue("served blocks must be within 0..total")


@dataclass(frozen=True, slots=True)
class ReceiptAccepted:
    """A receipt arrived and verified."""

    now: int
    receipt: bytes


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """The attempt ended without a receipt.

    Attributes:
        retry_at: when to try again, or None if the recipient refused for good.
    """

    now: int
    reason: str
    retry_at: int | None


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    now: int


OutboxEvent: TypeAlias = (
    AttemptStarted | BlocksServed | ReceiptAccepted | AttemptFailed | DeadlinePassed
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """Delivery of one document version to one recipient, as the sender sees it.

    Times are milliseconds since the Unix epoch from the node's clock.
    """

    state: OutboxState = OutboxState.QUEUED
    attempts: int = 0
    next_at: int = 0
    deadline: int
    last_error: str = ""
    receipt: bytes | None = None
    updated_at: int = 0
    history: tuple[tuple[int, str, str], ...] = ()
    """(time, state, note) for every transition, the most recent MAX_HISTORY."""

    def to_value(self) -> Value:
        return {
            "state": self.state.value,
            "attempts": self.attempts,
            "next_at": self.next_at,
            "deadline": self.deadline,
            "last_error": self.last_error,
            "receipt": self.receipt,
            "updated_at": self.updated_at,
            "history": [list(h) for h in self.history],
        }

    @classmethod
    def from_value(cls, value: Value) -> OutboxEntry:
        try:
            return cls(
                state=OutboxState(value["state"]),
                attempts=int(value["attempts"]),
                next_at=int(value["next_at"]),
                deadline=int(value["deadline"]),
                last_error=str(value["last_error"]),
                receipt=value["receipt"],
                updated_at=int(value["updated_at"]),
                history=tuple((int(t), str(s), str(n)) for t, s, n in value["history"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"invalid outbox entry: {exc!r}") from exc


_S = OutboxState
_OUTBOX_TABLE: Final[dict[tuple[OutboxState, type], OutboxState | None]] = {
    # (state, event type) -> next state; None means "computed by the event" (see below)
    (_S.QUEUED, AttemptStarted): _S.OFFERING,
    (_S.RETRY_WAIT, AttemptStarted): _S.OFFERING,
    (_S.OFFERING, BlocksServed): None,
    (_S.TRANSFERRING, BlocksServed): None,
    (_S.AWAITING_RECEIPT, BlocksServed): _S.AWAITING_RECEIPT,
    (_S.OFFERING, ReceiptAccepted): _S.DELIVERED,
    (_S.TRANSFERRING, ReceiptAccepted): _S.DELIVERED,
    (_S.AWAITING_RECEIPT, ReceiptAccepted): _S.DELIVERED,
    (_S.OFFERING, AttemptFailed): None,
    (_S.TRANSFERRING, AttemptFailed): None,
    (_S.AWAITING_RECEIPT, AttemptFailed): None,
    (_S.QUEUED, DeadlinePassed): _S.FAILED,
    (_S.RETRY_WAIT, DeadlinePassed): _S.FAILED,
    (_S.OFFERING, DeadlinePassed): _S.FAILED,
    (_S.TRANSFERRING, DeadlinePassed): _S.FAILED,
    (_S.AWAITING_RECEIPT, DeadlinePassed): _S.FAILED,
}


def _note(
    entry: OutboxEntry, now: int, state: OutboxState, note: str
) -> tuple[tuple[int, str, str], ...]:
    return (*entry.history, (now, state.value, note))[-MAX_HISTORY:]


def advance_outbox(entry: OutboxEntry, event: OutboxEvent) -> OutboxEntry:
    """The entry after ``event``.

    Raises:
        LocalProtocolError: the event is not allowed in the entry's state.
    """
    key = (entry.state, type(event))
    if key not in _OUTBOX_TABLE:
        raise LocalProtocolError(
            f"outbox: {type(event).__name__} not allowed in state {entry.state}"
        )
    target = _OUTBOX_TABLE[key]
    match event:
        case AttemptStarted(now):
            assert target is not None
            return replace(
                entry,
                state=target,
                attempts=entry.attempts + 1,
                next_at=0,
                updated_at=now,
                history=_note(entry, now, target, f"attempt {entry.attempts + 1}"),
            )
        case BlocksServed(now, served, total):
            if target is None:
                target = _S.AWAITING_RECEIPT if served >= total else _S.TRANSFERRING
            if target is entry.state:
                return replace(entry, updated_at=now)
            return replace(
                entry,
                state=target,
                updated_at=now,
                history=_note(entry, now, target, f"{served}/{total} blocks"),
            )
        case ReceiptAccepted(now, receipt):
            assert target is not None
            return replace(
                entry,
                state=target,
                receipt=receipt,
                last_error="",
                next_at=0,
                updated_at=now,
                history=_note(entry, now, target, "receipt verified"),
            )
        case AttemptFailed(now, reason, retry_at):
            if retry_at is None:
                target, note = _S.FAILED, f"refused: {reason}"
            elif retry_at > entry.deadline:
                target, note = _S.FAILED, f"deadline would pass before the next attempt: {reason}"
            else:
                target, note = _S.RETRY_WAIT, reason
            return replace(
                entry,
                state=target,
                last_error=reason,
                next_at=retry_at if target is _S.RETRY_WAIT and retry_at is not None else 0,
                updated_at=now,
                history=_note(entry, now, target, note),
            )
        case DeadlinePassed(now):
            assert target is not None
            reason = entry.last_error or "no receipt before the deadline"
            return replace(
                entry,
                state=target,
                last_error=f"deadline passed: {reason}",
                next_at=0,
                updated_at=now,
                history=_note(entry, now, target, "deadline passed"),
            )
    raise LocalProtocolError(f"unknown outbox event {event!r}")  # pragma: no cover


# -- inbox --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """Every block stored and verified; the receipt is signed."""

    now: int
    receipt: bytes


@dataclass(frozen=True, slots=True)
class Acked:
    """The application took the document."""

    now: int


InboxEvent: TypeAlias = Stored | Acked

_I = InboxState
_INBOX_TABLE: Final[dict[tuple[InboxState, type], InboxState]] = {
    (_I.RECEIVING, Stored): _I.STORED,
    (_I.STORED, Acked): _I.ACKED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEntry:
    """One received document version, as the recipient sees it.

    Attributes:
        root: the manifest CID text.
        sender: the sending agency code text.
        sender_peer: the sending node's peer ID text (status reports go back to it).
        document_id: edXML document id text.
        received_at: when the offer was first accepted (ms).
        receipt: the signed receipt once STORED.
        seq: order of arrival in this inbox; the application sees entries in this order.
    """

    state: InboxState = InboxState.RECEIVING
    root: str
    sender: str
    sender_peer: str
    document_id: str
    received_at: int
    seq: int
    receipt: bytes | None = None
    updated_at: int = 0

    def to_value(self) -> Value:
        return {
            "state": self.state.value,
            "root": self.root,
            "sender": self.sender,
            "sender_peer": self.sender_peer,
            "document_id": self.document_id,
            "received_at": self.received_at,
            "seq": self.seq,
            "receipt": self.receipt,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_value(cls, value: Value) -> InboxEntry:
        try:
            return cls(
                state=InboxState(value["state"]),
                root=str(value["root"]),
                sender=str(value["sender"]),
                sender_peer=str(value["sender_peer"]),
                document_id=str(value["document_id"]),
                received_at=int(value["received_at"]),
                seq=int(value["seq"]),
                receipt=value["receipt"],
                updated_at=int(value["updated_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"invalid inbox entry: {exc!r}") from exc


def advance_inbox(entry: InboxEntry, event: InboxEvent) -> InboxEntry:
    """The entry after ``event``.

    Raises:
        LocalProtocolError: the event is not allowed in the entry's state.
    """
    target = _INBOX_TABLE.get((entry.state, type(event)))
    if target is None:
        raise LocalProtocolError(
            f"inbox: {type(event).__name__} not allowed in state {entry.state}"
        )
    if isinstance(event, Stored):
        return replace(entry, state=target, receipt=event.receipt, updated_at=event.now)
    return replace(entry, state=target, updated_at=event.now)
