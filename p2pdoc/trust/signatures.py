"""Document signatures: any number per document, each over the document's root CID.

Goals: a signer signs the manifest's CID once, with a role; N signatures cost N signs and N
verifies whatever the number of attachments and appendices (their CIDs are inside the
manifest the root CID names). Signatures travel beside the manifest (in a
:class:`SignatureSet`), never inside it, so adding a signature does not change the document
version. Verification is cached, so a document seen twice costs nothing the second time.
Non-goals: detached CMS/PAdES signatures, trusted timestamps, counter-signatures.

What is signed (canonical CBOR, see ``docs/trust-model.md``)::

    {"ctx": "p2pdoc/document-signature/v1", "root": <CID>, "role": <role>,
     "time": <signing time, ms since the Unix epoch>, "alg": <algorithm name>,
     "cert": <SHA-256 of the signer's DER certificate>}

Binding the certificate's hash (as CAdES's signing-certificate attribute does) means a
signature cannot be re-attributed to another certificate holding the same key; binding
the algorithm stops PKCS#1 v1.5 / PSS substitution.

Travelling form (:meth:`SignatureSet.encode`)::

    {"v": 1, "signatures": [{"root": CID, "role": text, "time": uint, "alg": text,
                              "chain": [DER, ...], "sig": bytes}, ...]}
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import hashlib
import re
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import (
    DecodeError,
    InvalidValue,
    SignatureInvalid,
    SignatureRootMismatch,
    SignerNotAuthorised,
)
from p2pdoc.model.ids import AgencyCode
from p2pdoc.trust.keys import SignatureAlgorithm, SigningKey, public_key_id, verify_signature
from p2pdoc.trust.profile import (
    MAX_CERTIFICATE_SIZE,
    CertificateInfo,
    CertificateKind,
    parse_certificate,
)
from p2pdoc.trust.validation import (
    MAX_CHAIN_LENGTH,
    CertificatePurpose,
    RevocationCheck,
    TrustStore,
    VerifiedChain,
    require_aware,
)

__all__ = [
    "DOCUMENT_SIGNATURE_CONTEXT",
    "MAX_CLOCK_SKEW",
    "MAX_SIGNATURES",
    "MAX_SIGNATURE_SET_SIZE",
    "DocumentRole",
    "DocumentSignature",
    "SignatureSet",
    "SignerIdentity",
    "VerificationCache",
    "VerifiedSignature",
    "document_signature_payload",
    "sign_document",
    "verify_document_signatures",
]

DOCUMENT_SIGNATURE_CONTEXT: Final = "p2pdoc/document-signature/v1"
MAX_SIGNATURES: Final = 64
MAX_SIGNATURE_SET_SIZE: Final = 1 << 20
MAX_SIGNATURE_BYTES: Final = 2048  # an RSA-16384 signature
MAX_CLOCK_SKEW: Final = _dt.timedelta(minutes=5)
"""How far in the future a signing time may lie, for clocks that disagree."""

_SET_VERSION: Final = 1
_ROLE_RE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MAX_MS: Final = (1 << 63) - 1


class DocumentRole(enum.StrEnum):
    """The documented signature roles. Other roles matching ``[a-z0-9][a-z0-9.-]{0,62}``
    are allowed (e.g. ``"x-province.review"``) and carried as they are."""

    COMPETENT_SIGNER = "competent-signer"
    """The official with authority to sign (người có thẩm quyền ký)."""
    ORGANISATION = "organisation"
    """The agency's own signature, in place of its seal (chữ ký số của cơ quan, tổ chức)."""
    NUMBER = "number"
    """The clerk who registered the document's number and notation."""
    DATE = "date"
    """The clerk who certified the promulgation date."""
    APPENDIX = "appendix"
    """The agency's signature over the appendices."""
    COPY = "copy"
    """Certifies an electronic copy (sao y) of another document."""
    APPROVAL = "approval"
    """A reviewer's initials before the competent signer signs (ký nháy)."""


def _check_role(role: object) -> str:
    if not isinstance(role, str) or not _ROLE_RE.fullmatch(role):
        raise InvalidValue(f"role {str(role)[:70]!r} must match [a-z0-9][a-z0-9.-]{{0,62}}")
    return role


def _to_ms(when: _dt.datetime) -> int:
    when = require_aware(when)
    delta = when - _EPOCH
    ms = delta // _dt.timedelta(milliseconds=1)
    if not 0 <= ms <= _MAX_MS:
        raise InvalidValue("signing time out of range")
    return ms


def _from_ms(ms: int) -> _dt.datetime:
    try:
        return _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        raise InvalidValue("signing time out of range") from None


# -- the signed bytes ---------------------------------------------------------------------
# Built by hand for speed (it sits on the verification hot path); a test checks that it is
# byte-identical to cbor.encode() of the same map. Keys in canonical order: shorter first,
# then bytewise: alg, ctx, cert, role, root, time.


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _head(3, len(data)) + data


_P_ALG: Final = b"\xa6" + _text("alg")
_P_CTX_CERT: Final = _text("ctx") + _text(DOCUMENT_SIGNATURE_CONTEXT) + _text("cert") + b"\x58\x20"
_P_ROLE: Final = _text("role")
_P_ROOT: Final = _text("root") + b"\xd8\x2a"
_P_TIME: Final = _text("time")


_cached_text = functools.lru_cache(maxsize=256)(_text)  # roles and algorithm names repeat


def _payload(root: Cid, role: str, ms: int, algorithm: str, cert_sha256: bytes) -> bytes:
    link = root.to_bytes()
    return b"".join(
        (
            _P_ALG,
            _cached_text(algorithm),
            _P_CTX_CERT,
            cert_sha256,
            _P_ROLE,
            _cached_text(role),
            _P_ROOT,
            _head(2, len(link) + 1),
            b"\x00",
            link,
            _P_TIME,
            _head(0, ms),
        )
    )


def document_signature_payload(
    *,
    root: Cid,
    role: str,
    signed_at: _dt.datetime,
    algorithm: SignatureAlgorithm,
    signer_certificate: bytes,
) -> bytes:
    """The exact bytes a signer signs (exposed so external tools, e.g. ``openssl dgst``,
    can produce signatures p2pdoc verifies).

    Raises:
        InvalidValue: bad root, role, time, algorithm or certificate type.
    """
    if not isinstance(root, Cid):
        raise InvalidValue("root must be a Cid")
    if not isinstance(signer_certificate, (bytes, bytearray, memoryview)):
        raise InvalidValue("the signer certificate must be DER bytes")
    try:
        algorithm_name = SignatureAlgorithm(algorithm).value
    except ValueError:
        raise InvalidValue(f"unknown signature algorithm {str(algorithm)[:40]!r}") from None
    return _payload(
        root,
        _check_role(role),
        _to_ms(signed_at),
        algorithm_name,
        hashlib.sha256(signer_certificate).digest(),
    )


# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentSignature:
    """One signature over a document root, with the chain that certifies its signer.

    Attributes:
        root: the document version's manifest CID.
        role: what the signer attests (a :class:`DocumentRole` or a free-form role).
        signed_at: claimed signing time (UTC, millisecond precision).
        algorithm: how ``signature`` was computed.
        chain: the signer's certificate first, then its CAs (the root may be omitted).
        signature: the signature over :meth:`payload`.
    """

    root: Cid
    role: str
    signed_at: _dt.datetime
    algorithm: SignatureAlgorithm
    chain: tuple[bytes, ...]
    signature: bytes
    signed_at_ms: int = field(init=False, repr=False, compare=False)
    """``signed_at`` in milliseconds since the Unix epoch, as signed."""

    def __post_init__(self) -> None:
        if not isinstance(self.root, Cid):
            raise InvalidValue("root must be a Cid")
        _check_role(self.role)
        ms = _to_ms(self.signed_at)
        object.__setattr__(self, "signed_at", _from_ms(ms))
        object.__setattr__(self, "signed_at_ms", ms)
        try:
            object.__setattr__(self, "algorithm", SignatureAlgorithm(self.algorithm))
        except ValueError:
            raise InvalidValue(f"unknown signature algorithm {self.algorithm!r}") from None
        chain = tuple(self.chain)
        if not 1 <= len(chain) <= MAX_CHAIN_LENGTH:
            raise InvalidValue(f"a signer chain holds 1..{MAX_CHAIN_LENGTH} certificates")
        if not all(isinstance(c, bytes) and 0 < len(c) <= MAX_CERTIFICATE_SIZE for c in chain):
            raise InvalidValue(f"certificates are DER bytes of at most {MAX_CERTIFICATE_SIZE}")
        object.__setattr__(self, "chain", chain)
        if (
            not isinstance(self.signature, bytes)
            or not 0 < len(self.signature) <= MAX_SIGNATURE_BYTES
        ):
            raise InvalidValue(f"a signature is 1..{MAX_SIGNATURE_BYTES} bytes")

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return _payload(
            self.root,
            self.role,
            self.signed_at_ms,
            self.algorithm.value,
            hashlib.sha256(self.chain[0]).digest(),
        )

    def to_value(self) -> Value:
        return {
            "root": self.root,
            "role": self.role,
            "time": self.signed_at_ms,
            "alg": self.algorithm.value,
            "chain": list(self.chain),
            "sig": self.signature,
        }

    @classmethod
    def from_value(cls, value: Value) -> DocumentSignature:
        """Rebuild from :meth:`to_value` output.

        Raises:
            InvalidValue: missing, unknown or invalid fields.
        """
        keys = {"root", "role", "time", "alg", "chain", "sig"}
        if not isinstance(value, dict) or set(value) != keys:
            raise InvalidValue(f"a signature has exactly the fields {sorted(keys)}")
        time = value["time"]
        chain = value["chain"]
        if type(time) is not int or time < 0:
            raise InvalidValue("signature time must be a non-negative integer")
        if not isinstance(chain, list):
            raise InvalidValue("signature chain must be a list")
        algorithm = value["alg"]
        if not isinstance(algorithm, str):
            raise InvalidValue("signature algorithm must be text")
        try:
            parsed_algorithm = SignatureAlgorithm(algorithm)
        except ValueError:
            raise InvalidValue(f"unknown signature algorithm {algorithm[:40]!r}") from None
        return cls(
            root=value["root"],
            role=value["role"],
            signed_at=_from_ms(time),
            algorithm=parsed_algorithm,
            chain=tuple(chain[: MAX_CHAIN_LENGTH + 1]),
            signature=value["sig"],
        )


def _signed_twice(signatures: Sequence[DocumentSignature]) -> str | None:
    """The role of the first signature whose certificate already signed in that role
    (None when every (signer certificate, role) pair is unique)."""
    seen: set[tuple[bytes, str]] = set()
    for signature in signatures:
        pair = (signature.chain[0], signature.role)
        if pair in seen:
            return signature.role
        seen.add(pair)
    return None


@dataclass(frozen=True, slots=True)
class SignatureSet:
    """The signatures of one document version: what travels beside its manifest.

    All signatures name the same root; the same signature never appears twice, and one
    signer certificate signs each role at most once (so a count of signatures is a count
    of distinct attestations).
    """

    signatures: tuple[DocumentSignature, ...] = ()

    def __post_init__(self) -> None:
        signatures = tuple(self.signatures)
        if len(signatures) > MAX_SIGNATURES:
            raise InvalidValue(f"more than {MAX_SIGNATURES} signatures")
        if not all(isinstance(s, DocumentSignature) for s in signatures):
            raise InvalidValue("a signature set holds DocumentSignature values")
        if len({s.root for s in signatures}) > 1:
            raise InvalidValue("all signatures of a set must name the same document root")
        if len({s.signature for s in signatures}) != len(signatures):
            raise InvalidValue("the same signature appears twice")
        twice = _signed_twice(signatures)
        if twice is not None:
            raise InvalidValue(f"one certificate signs the {twice} role twice")
        object.__setattr__(self, "signatures", signatures)

    @property
    def root(self) -> Cid | None:
        return self.signatures[0].root if self.signatures else None

    def __len__(self) -> int:
        return len(self.signatures)

    def with_signature(self, signature: DocumentSignature) -> SignatureSet:
        """A new set with ``signature`` added (e.g. by the next signer in the workflow)."""
        return SignatureSet((*self.signatures, signature))

    def encode(self) -> bytes:
        """Canonical CBOR: the bytes stored in ``DocumentRecord.signatures``."""
        return cbor.encode(
            {"v": _SET_VERSION, "signatures": [s.to_value() for s in self.signatures]}
        )

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_SIGNATURE_SET_SIZE
    ) -> SignatureSet:
        """Parse :meth:`encode` output (signatures are not verified here).

        Raises:
            LimitExceeded: over ``max_size`` bytes.
            DecodeError: not canonical CBOR, unknown version, or invalid signatures.
        """
        value = cbor.decode(data, max_size=max_size, max_depth=4)
        if not isinstance(value, dict) or set(value) != {"v", "signatures"}:
            raise DecodeError("a signature set has exactly v and signatures")
        if type(value["v"]) is not int or value["v"] != _SET_VERSION:
            raise DecodeError(f"unsupported signature set version {value['v']!r}")
        items = value["signatures"]
        if not isinstance(items, list):
            raise DecodeError("signatures must be a list")
        if len(items) > MAX_SIGNATURES:
            raise DecodeError(f"more than {MAX_SIGNATURES} signatures")
        try:
            return cls(tuple(DocumentSignature.from_value(item) for item in items))
        except InvalidValue as exc:
            raise DecodeError(f"invalid signature set: {exc}") from exc


# -- signing ------------------------------------------------------------------------------


def sign_document(
    root: Cid,
    *,
    role: str,
    key: SigningKey,
    chain: Sequence[bytes],
    now: _dt.datetime,
    algorithm: SignatureAlgorithm | None = None,
) -> DocumentSignature:
    """Sign a document root as the holder of ``chain``'s leaf certificate.

    Args:
        chain: the signer certificate first (as returned by
            :meth:`CertificateAuthority.issue_signer`).
        now: the signing time recorded (truncated to milliseconds).
        algorithm: defaults to the key's default (Ed25519, ECDSA, RSA-PSS).

    Raises:
        InvalidValue: the leaf is not a signer certificate of ``key``, or a bad role.
    """
    chain = tuple(bytes(c) for c in chain)
    if not chain:
        raise InvalidValue("a signer needs its certificate chain")
    leaf = parse_certificate(chain[0])
    if leaf.kind is not CertificateKind.SIGNER:
        raise InvalidValue("the chain's leaf is not a signer certificate")
    if leaf.public_key is None or public_key_id(leaf.public_key) != key.key_id:
        raise InvalidValue("the signer certificate does not certify this key")
    algorithm = algorithm or key.default_signature_algorithm
    signed_at = _from_ms(_to_ms(now))
    payload = document_signature_payload(
        root=root, role=role, signed_at=signed_at, algorithm=algorithm, signer_certificate=chain[0]
    )
    return DocumentSignature(
        root=root,
        role=role,
        signed_at=signed_at,
        algorithm=algorithm,
        chain=chain,
        signature=key.sign(payload, algorithm),
    )


# -- verification -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignerIdentity:
    """Who signed, as certified: agency, full name, position, agency name."""

    agency: AgencyCode
    full_name: str
    position: str
    organization: str


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedSignature:
    """A signature that verified, and what it relied on.

    Attributes:
        role: the role signed.
        signer: the certified official.
        signed_at: the claimed signing time.
        algorithm: the signature algorithm.
        fingerprints: SHA-256 of each certificate of the signer's path, leaf to root.
        revocation: the revocation list versions relied on, nearest issuer first.
    """

    role: str
    signer: SignerIdentity
    signed_at: _dt.datetime
    algorithm: SignatureAlgorithm
    fingerprints: tuple[bytes, ...]
    revocation: tuple[RevocationCheck, ...]


@dataclass(frozen=True, slots=True, eq=False)
class _CacheEntry:
    result: VerifiedSignature
    trust: TrustStore
    generation: int
    valid_from: _dt.datetime
    valid_until: _dt.datetime


class VerificationCache:
    """Remembers verified signatures (bounded, least recently used evicted first).

    An entry is reused only with the same trust store, while no revocation list changed
    (same :attr:`TrustStore.generation`) and while ``now`` lies within the validity window
    of the signer's path; anything else verifies again.
    """

    __slots__ = ("_entries", "_max_entries", "hits", "misses")

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise InvalidValue("a verification cache holds at least one entry")
        self._entries: OrderedDict[DocumentSignature, _CacheEntry] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _get(
        self, signature: DocumentSignature, trust: TrustStore, now: _dt.datetime
    ) -> VerifiedSignature | None:
        entry = self._entries.get(signature)
        if (
            entry is None
            or entry.trust is not trust
            or entry.generation != trust.generation
            or not entry.valid_from <= now <= entry.valid_until
        ):
            self.misses += 1
            return None
        self._entries.move_to_end(signature)
        self.hits += 1
        return entry.result

    def _put(
        self,
        signature: DocumentSignature,
        result: VerifiedSignature,
        trust: TrustStore,
        chain: VerifiedChain,
    ) -> None:
        self._entries[signature] = _CacheEntry(
            result, trust, chain.generation, chain.valid_from, chain.valid_until
        )
        self._entries.move_to_end(signature)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


@functools.lru_cache(maxsize=4096)
def _signer_of(leaf: CertificateInfo) -> SignerIdentity:
    assert leaf.agency is not None  # validation requires it for signer certificates
    return SignerIdentity(
        agency=leaf.agency,
        full_name=leaf.common_name,
        position=leaf.title,
        organization=leaf.organization,
    )


def _certified(
    root: Cid,
    signature: DocumentSignature,
    trust: TrustStore,
    now: _dt.datetime,
    latest: _dt.datetime,
) -> tuple[VerifiedChain, bytes]:
    """Checks before the signature itself: chain and signing time; returns the chain and
    the signed bytes."""
    chain = trust._validate(signature.chain, CertificatePurpose.SIGNER, now)
    leaf = chain.leaf
    if signature.signed_at > latest:
        raise SignatureInvalid(
            f"{signature.role} signature claims a signing time in the future "
            f"({signature.signed_at.isoformat()})"
        )
    if signature.signed_at < leaf.not_before:
        raise SignatureInvalid(
            f"{signature.role} signature claims a time before its certificate was valid"
        )
    payload = _payload(
        root, signature.role, signature.signed_at_ms, signature.algorithm.value, leaf.fingerprint
    )
    return chain, payload


def verify_document_signatures(
    root: Cid,
    signatures: SignatureSet | Iterable[DocumentSignature],
    *,
    trust: TrustStore,
    now: _dt.datetime,
    cache: VerificationCache | None = None,
    sender: AgencyCode | None = None,
    min_signatures: int = 1,
    required_roles: Collection[str] = (),
) -> list[VerifiedSignature]:
    """Verify every signature of a document version.

    Checks, each over all signatures in order before the next: (1) every signature names
    ``root`` (else :class:`SignatureRootMismatch`) and no signer certificate signs one role
    twice (else :class:`SignatureInvalid`); (2) a signature found in ``cache`` is
    taken from it; for the others, (3) the chain validates for document signing at ``now``
    (:class:`CertificateRejected` subclasses) and (4) the signing time is not in the future
    beyond :data:`MAX_CLOCK_SKEW` nor before the certificate (:class:`SignatureInvalid`);
    (5) the signatures verify over their signed bytes, back to back (:class:`SignatureInvalid`);
    (6) with ``sender``, every signer's agency lies in the sender's subtree
    (:class:`SignerNotAuthorised`); (7) the set holds ``min_signatures`` and every role of
    ``required_roles`` (:class:`SignatureInvalid`).

    Args:
        root: the document version's manifest CID.
        cache: reuse earlier results (see :class:`VerificationCache`).
        sender: the document's sending agency, when known.

    Returns:
        One :class:`VerifiedSignature` per signature, in order.

    Raises:
        VerificationError: the first rule that failed, as above.
        InvalidValue: ``now`` is naive.
    """
    now = require_aware(now)
    latest = now + MAX_CLOCK_SKEW
    items = signatures.signatures if isinstance(signatures, SignatureSet) else tuple(signatures)
    if not all(isinstance(s, DocumentSignature) for s in items):
        raise InvalidValue("signatures must be DocumentSignature values")
    for signature in items:
        if signature.root != root:
            raise SignatureRootMismatch(
                f"{signature.role} signature is over document {signature.root}, not {root}"
            )
    twice = _signed_twice(items)
    if twice is not None:
        raise SignatureInvalid(f"one certificate signs the {twice} role twice")
    results: list[VerifiedSignature | None] = []
    pending: list[tuple[int, DocumentSignature, VerifiedChain, bytes]] = []
    for index, signature in enumerate(items):
        cached = cache._get(signature, trust, now) if cache is not None else None
        if cached is not None and signature.signed_at > latest:
            raise SignatureInvalid(f"{signature.role} signature claims a future signing time")
        results.append(cached)
        if cached is None:
            chain, payload = _certified(root, signature, trust, now, latest)
            pending.append((index, signature, chain, payload))
    # The signatures proper, back to back: the primitive's tables stay in the CPU caches.
    for _, signature, chain, payload in pending:
        leaf = chain.leaf
        assert leaf.public_key is not None  # checked by validation
        try:
            verify_signature(leaf.public_key, signature.algorithm, payload, signature.signature)
        except SignatureInvalid as exc:
            raise SignatureInvalid(
                f"{signature.role} signature does not verify under {leaf.describe()}: {exc}"
            ) from None
    for index, signature, chain, _ in pending:
        result = VerifiedSignature(
            role=signature.role,
            signer=_signer_of(chain.leaf),
            signed_at=signature.signed_at,
            algorithm=signature.algorithm,
            fingerprints=chain.fingerprints,
            revocation=chain.revocation,
        )
        results[index] = result
        if cache is not None:
            cache._put(signature, result, trust, chain)
    verified = [r for r in results if r is not None]
    assert len(verified) == len(items)
    if sender is not None:
        for result in verified:
            if not sender.contains(result.signer.agency):
                raise SignerNotAuthorised(
                    f"{result.role} signer {result.signer.full_name!r} of "
                    f"{result.signer.agency} may not sign for {sender}"
                )
    if len(verified) < min_signatures:
        raise SignatureInvalid(
            f"the document carries {len(verified)} signatures; {min_signatures} are required"
        )
    missing = sorted(set(required_roles) - {r.role for r in verified})
    if missing:
        raise SignatureInvalid(f"no signature with role {', '.join(missing)}")
    return verified
