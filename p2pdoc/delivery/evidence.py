"""Signed evidence: delivery receipts and status reports, batch-signed through a Merkle tree.

Goals: every receipt and status report is verifiable on its own, offline, years later, by
anyone holding the root certificate: it carries its body, the signer's certificate chain and
the proof that ties its body to one signature. A node signs many records with one signature
(a batch), so a thousand receipts a second cost a few signatures, not a thousand.
Non-goals: trusted time-stamping (``signed_at`` is the signer's own clock, checked against its
certificate's validity).

Record bodies are canonical CBOR maps whose ``ctx`` names their kind (``p2pdoc/receipt/v1``,
``p2pdoc/status/v1``). A batch of n bodies is signed as::

    leaf_i     = SHA-256(0x00 || body_i)
    node(l, r) = SHA-256(0x01 || l || r)           (the RFC 6962 / RFC 9162 Merkle tree)
    payload    = canonical CBOR {"ctx": "p2pdoc/evidence-batch/v1", "root": tree head,
                                 "size": n, "signed_at": ms, "peer": signer peer ID bytes}
    signature  = Sign(node key, payload)

and each record travels as canonical CBOR::

    {"v": 1, "body": body_i, "index": i, "size": n, "path": [audit path hashes],
     "signed_at": ms, "peer": signer peer ID bytes, "chain": [certificate DER, ...],
     "sig": signature}

A single record is a batch of one (empty path).
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, Self, TypeVar

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import DecodeError, InvalidValue, VerificationError
from p2pdoc.model.envelope import text
from p2pdoc.model.ids import AgencyCode, DocumentId, PeerId

__all__ = [
    "BATCH_CONTEXT",
    "Evidence",
    "EvidenceSigner",
    "NodeVerifier",
    "Receipt",
    "Staff",
    "StatusCode",
    "StatusReport",
    "VerifiedEvidence",
    "merkle_audit_path",
    "merkle_root",
    "root_from_audit_path",
    "sign_batch",
    "verify_evidence",
]

BATCH_CONTEXT: Final = "p2pdoc/evidence-batch/v1"
RECEIPT_CONTEXT: Final = "p2pdoc/receipt/v1"
STATUS_CONTEXT: Final = "p2pdoc/status/v1"
MAX_EVIDENCE_SIZE: Final = 64 << 10
MAX_BATCH: Final = 1 << 16
MAX_SIGNED_AT: Final = 253_402_300_799_999
"""The last millisecond of the year 9999: later (or negative) times are not dates."""
_EVIDENCE_KEYS: Final = frozenset(
    {"v", "body", "index", "size", "path", "signed_at", "peer", "chain", "sig"}
)


# -- Merkle tree (RFC 9162 section 2.1) ---------------------------------------------------


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def merkle_root(bodies: Sequence[bytes]) -> bytes:
    """The tree head over ``bodies`` (at least one)."""
    if not bodies:
        raise InvalidValue("a Merkle tree needs at least one leaf")
    return _mth([_leaf(b) for b in bodies])


def _path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(index, leaves[:k]), _mth(leaves[k:])]
    return [*_path(index - k, leaves[k:]), _mth(leaves[:k])]


def _all_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The tree head and every leaf's audit path, each subtree hashed once (n log n hashes,
    where :func:`_path` per leaf would take n hashes each)."""
    if len(leaves) == 1:
        return leaves[0], [[]]
    k = _split(len(leaves))
    left, left_paths = _all_paths(leaves[:k])
    right, right_paths = _all_paths(leaves[k:])
    for path in left_paths:
        path.append(right)
    for path in right_paths:
        path.append(left)
    return _node(left, right), left_paths + right_paths


def merkle_audit_path(index: int, bodies: Sequence[bytes]) -> list[bytes]:
    """The audit path proving ``bodies[index]`` is in the tree over ``bodies``."""
    if not 0 <= index < len(bodies):
        raise InvalidValue("leaf index out of range")
    return _path(index, [_leaf(b) for b in bodies])


def root_from_audit_path(index: int, size: int, body: bytes, path: Sequence[bytes]) -> bytes:
    """Recompute the tree head from one leaf and its audit path (RFC 9162 2.1.3.2).

    Raises:
        VerificationError: the path does not fit a tree of ``size`` leaves.
    """
    if not 0 <= index < size:
        raise VerificationError("leaf index outside the batch")
    fn, sn = index, size - 1
    result = _leaf(body)
    for sibling in path:
        if sn == 0:
            raise VerificationError("audit path longer than the tree")
        if fn & 1 or fn == sn:
            result = _node(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = _node(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("audit path shorter than the tree")
    return result


def _batch_payload(root: bytes, size: int, signed_at: int, peer: PeerId) -> bytes:
    return cbor.encode(
        {
            "ctx": BATCH_CONTEXT,
            "root": root,
            "size": size,
            "signed_at": signed_at,
            "peer": peer.to_bytes(),
        }
    )


# -- signing and verifying ------------------------------------------------------------------


class EvidenceSigner(Protocol):
    """A node able to sign evidence with its node key."""

    @property
    def peer(self) -> PeerId: ...

    @property
    def chain(self) -> tuple[bytes, ...]: ...

    def sign(self, payload: bytes) -> bytes: ...


class NodeVerifier(Protocol):
    """Checks a node certificate chain and signatures by its key (the trust layer)."""

    def verify_node(
        self, chain: Sequence[bytes], peer: PeerId, at: _dt.datetime
    ) -> tuple[AgencyCode, Callable[[bytes, bytes], None]]:
        """Validate ``chain`` as a node certificate for ``peer`` at time ``at``.

        Returns:
            ``(agency code, verify)`` where ``verify(signature, payload)`` raises
            SignatureInvalid unless the node key signed ``payload``.

        Raises:
            VerificationError: the chain does not validate (a subclass names why).
        """
        ...


@dataclass(frozen=True, slots=True)
class Evidence:
    """One signed record as it travels and is stored (see the module docstring)."""

    body: bytes
    index: int
    size: int
    path: tuple[bytes, ...]
    signed_at: int
    peer: PeerId
    chain: tuple[bytes, ...]
    signature: bytes

    def encode(self) -> bytes:
        return cbor.encode(
            {
                "v": 1,
                "body": self.body,
                "index": self.index,
                "size": self.size,
                "path": list(self.path),
                "signed_at": self.signed_at,
                "peer": self.peer.to_bytes(),
                "chain": list(self.chain),
                "sig": self.signature,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        """Parse without verifying.

        Raises:
            DecodeError: not canonical CBOR or not the evidence shape.
        """
        value = cbor.decode(data, max_size=MAX_EVIDENCE_SIZE)
        if (
            not isinstance(value, dict)
            or set(value) != _EVIDENCE_KEYS
            or type(value["v"]) is not int
            or value["v"] != 1
        ):
            raise DecodeError(
                "evidence must be a map of exactly v, body, index, size, path, signed_at, "
                "peer, chain and sig"
            )
        try:
            evidence = cls(
                body=_typed(value["body"], bytes),
                index=_typed(value["index"], int),
                size=_typed(value["size"], int),
                path=tuple(_typed(p, bytes) for p in _typed(value["path"], list)),
                signed_at=_typed(value["signed_at"], int),
                peer=PeerId(_typed(value["peer"], bytes)),
                chain=tuple(_typed(c, bytes) for c in _typed(value["chain"], list)),
                signature=_typed(value["sig"], bytes),
            )
        except InvalidValue as exc:
            raise DecodeError(f"invalid evidence: {exc}") from exc
        if not 0 < evidence.size <= MAX_BATCH or len(evidence.path) > 20 or not evidence.chain:
            raise DecodeError("evidence batch size, path or chain out of bounds")
        if any(len(p) != 32 for p in evidence.path):
            raise DecodeError("audit path hashes must be 32 bytes")
        if not 0 <= evidence.signed_at <= MAX_SIGNED_AT:
            raise DecodeError(f"evidence signing time {evidence.signed_at} is not a date")
        return evidence


_T = TypeVar("_T")


def _typed(value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidValue(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def sign_batch(bodies: Sequence[bytes], signer: EvidenceSigner, signed_at: int) -> list[bytes]:
    """Sign ``bodies`` with one signature; returns each one's encoded evidence, in order."""
    if not 0 < len(bodies) <= MAX_BATCH:
        raise InvalidValue(f"a batch holds 1..{MAX_BATCH} records")
    root, paths = _all_paths([_leaf(b) for b in bodies])
    signature = signer.sign(_batch_payload(root, len(bodies), signed_at, signer.peer))
    chain = tuple(signer.chain)
    return [
        Evidence(
            body=body,
            index=i,
            size=len(bodies),
            path=tuple(paths[i]),
            signed_at=signed_at,
            peer=signer.peer,
            chain=chain,
            signature=signature,
        ).encode()
        for i, body in enumerate(bodies)
    ]


@dataclass(frozen=True, slots=True)
class VerifiedEvidence:
    """Evidence whose signature and chain verified."""

    evidence: Evidence
    signer: AgencyCode


def verify_evidence(data: bytes, verifier: NodeVerifier) -> VerifiedEvidence:
    """Verify encoded evidence: decode, recompute the batch head, check the signer's chain at
    ``signed_at`` and its signature over the batch.

    Raises:
        DecodeError: malformed.
        VerificationError: the path, the chain or the signature fails (a subclass names why).
    """
    evidence = Evidence.decode(data)
    root = root_from_audit_path(evidence.index, evidence.size, evidence.body, evidence.path)
    at = _dt.datetime.fromtimestamp(evidence.signed_at / 1000, _dt.UTC)
    agency, verify = verifier.verify_node(evidence.chain, evidence.peer, at)
    verify(
        evidence.signature, _batch_payload(root, evidence.size, evidence.signed_at, evidence.peer)
    )
    return VerifiedEvidence(evidence, agency)


# -- record bodies --------------------------------------------------------------------------

_RECEIPT_KEYS: Final = frozenset(
    {"ctx", "root", "document_id", "sender", "recipient", "node", "received_at", "files",
     "signatures_digest"}
)  # fmt: skip
_STATUS_KEYS: Final = frozenset(
    {"ctx", "root", "document_id", "sender", "reporter", "node", "seq", "prev", "code", "at",
     "staff", "description"}
)  # fmt: skip


def _record(body: bytes, context: str, keys: frozenset[str], what: str) -> dict[str, Value]:
    """Decode a record body: canonical CBOR, exactly ``keys``, ``ctx`` equal to ``context``.

    Raises:
        DecodeError: naming ``what`` it is not.
    """
    value = cbor.decode(body, max_size=MAX_EVIDENCE_SIZE)
    if not isinstance(value, dict) or set(value) != keys or value["ctx"] != context:
        raise DecodeError(f"not {what} body")
    return value


# -- receipts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """The body of a delivery receipt: what the recipient got, verified and when.

    Like AS4's non-repudiation of receipt, it names the digests of every part: the manifest
    (``root``), each file's root CID, and the SHA-256 of the signature set it verified.
    """

    root: Cid
    document_id: DocumentId
    sender: AgencyCode
    recipient: AgencyCode
    node: PeerId
    received_at: int
    files: tuple[Cid, ...]
    signatures_digest: bytes

    def encode(self) -> bytes:
        return cbor.encode(
            {
                "ctx": RECEIPT_CONTEXT,
                "root": self.root,
                "document_id": str(self.document_id),
                "sender": str(self.sender),
                "recipient": str(self.recipient),
                "node": self.node.to_bytes(),
                "received_at": self.received_at,
                "files": list(self.files),
                "signatures_digest": self.signatures_digest,
            }
        )

    @classmethod
    def decode(cls, body: bytes) -> Receipt:
        value = _record(body, RECEIPT_CONTEXT, _RECEIPT_KEYS, "a receipt")
        try:
            receipt = cls(
                root=_typed(value["root"], Cid),
                document_id=DocumentId.parse(_typed(value["document_id"], str)),
                sender=AgencyCode(_typed(value["sender"], str)),
                recipient=AgencyCode(_typed(value["recipient"], str)),
                node=PeerId(_typed(value["node"], bytes)),
                received_at=_typed(value["received_at"], int),
                files=tuple(_typed(c, Cid) for c in _typed(value["files"], list)),
                signatures_digest=_typed(value["signatures_digest"], bytes),
            )
        except InvalidValue as exc:
            raise DecodeError(f"invalid receipt body: {exc}") from exc
        if receipt.encode() != body:
            raise DecodeError("receipt body is not canonical")
        return receipt


# -- status reports -------------------------------------------------------------------------


class StatusCode(enum.StrEnum):
    """edXML processing status codes."""

    ARRIVED = "01"
    REJECTED = "02"
    ACCEPTED = "03"
    ASSIGNED = "04"
    PROCESSING = "05"
    COMPLETED = "06"
    RECALL_REQUESTED = "13"
    RECALL_AGREED = "15"
    RECALL_REFUSED = "16"


@dataclass(frozen=True, slots=True, kw_only=True)
class Staff:
    """Who handled the document: name, department and contact."""

    name: str = ""
    department: str = ""
    contact: str = ""

    def __post_init__(self) -> None:
        for name in ("name", "department", "contact"):
            object.__setattr__(self, name, text(getattr(self, name), f"staff {name}"))

    def to_value(self) -> Value:
        return {"name": self.name, "department": self.department, "contact": self.contact}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """The body of a processing-status report from a recipient to the sender.

    ``seq`` counts reports for this document and reporter from 1; ``prev`` is the SHA-256 of
    the previous report's body (None for the first), so the trail is tamper-evident.
    """

    root: Cid
    document_id: DocumentId
    sender: AgencyCode
    reporter: AgencyCode
    node: PeerId
    seq: int
    prev: bytes | None
    code: StatusCode
    at: int
    staff: Staff = field(default_factory=Staff)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int) or self.seq < 1:
            raise InvalidValue("status seq starts at 1")
        if (self.seq == 1) != (self.prev is None):
            raise InvalidValue("only the first status report has no predecessor")
        if self.prev is not None and len(self.prev) != 32:
            raise InvalidValue("prev must be a SHA-256 digest")
        object.__setattr__(self, "code", StatusCode(self.code))
        object.__setattr__(self, "description", text(self.description, "description", limit=2000))

    def encode(self) -> bytes:
        return cbor.encode(
            {
                "ctx": STATUS_CONTEXT,
                "root": self.root,
                "document_id": str(self.document_id),
                "sender": str(self.sender),
                "reporter": str(self.reporter),
                "node": self.node.to_bytes(),
                "seq": self.seq,
                "prev": self.prev,
                "code": self.code.value,
                "at": self.at,
                "staff": self.staff.to_value(),
                "description": self.description,
            }
        )

    def digest(self) -> bytes:
        """What the next report names as ``prev``."""
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        value = _record(body, STATUS_CONTEXT, _STATUS_KEYS, "a status report")
        try:
            staff = _typed(value["staff"], dict)
            if set(staff) != {"name", "department", "contact"}:
                raise InvalidValue("staff must have name, department and contact")
            report = cls(
                root=_typed(value["root"], Cid),
                document_id=DocumentId.parse(_typed(value["document_id"], str)),
                sender=AgencyCode(_typed(value["sender"], str)),
                reporter=AgencyCode(_typed(value["reporter"], str)),
                node=PeerId(_typed(value["node"], bytes)),
                seq=_typed(value["seq"], int),
                prev=None if value["prev"] is None else _typed(value["prev"], bytes),
                code=StatusCode(_typed(value["code"], str)),
                at=_typed(value["at"], int),
                staff=Staff(**staff),
                description=_typed(value["description"], str),
            )
        except (InvalidValue, ValueError, TypeError) as exc:
            raise DecodeError(f"invalid status report body: {exc}") from exc
        if report.encode() != body:
            raise DecodeError("status report body is not canonical")
        return report
