"""Chain validation against the national root, with cached revocation lists.

Goals: one function decides whether a certificate chain is acceptable for a purpose (an
agency node, a document signer, a CA) at a given instant, and every rejection is a typed
:class:`~p2pdoc.errors.CertificateRejected` whose ``reason`` names the rule. Validation
works offline on whatever revocation lists are cached - the mesh keeps delivering while the
CA is unreachable - and every result names the list versions it relied on.
Non-goals: fetching anything (lists arrive through :meth:`TrustStore.add_revocation_list`),
policy OIDs, name constraints, cross-certification between roots.

Why not ``cryptography.x509.verification``: its verifier follows the Web PKI profile. It
refuses certificates signed with Ed25519 ("Forbidden public key algorithm"), our default CA
and node algorithm; it requires serverAuth/clientAuth extended key usage on end entities;
it reports every failure as one untyped ``VerificationError`` with a text message; it has
no revocation lists; and its extension validators see one certificate at a time, so the
parent-child code-subtree rule cannot be expressed. The checks below are explicit instead;
``Certificate.verify_directly_issued_by`` from ``cryptography`` checks each link's issuer
name and signature (Ed25519, ECDSA, RSA PKCS#1 v1.5 and PSS).

Order of checks (the first failure is raised):

1. every certificate parses and follows the profile (:func:`parse_certificate`);
2. a path is built from the leaf to a trusted root, using the chain as given (leaf first,
   each certificate followed by its issuer; the root may be omitted) and, once the chain
   is exhausted, CA certificates the store already knows (``unknown-issuer`` otherwise);
   a certificate of the chain left outside the path rejects it (``unused-certificate``);
3. the root's validity period; then for each certificate from the one below the root down
   to the leaf: its issuer's signature (``bad-signature``), its validity period
   (``expired``, ``not-yet-valid``), the code-subtree rule (``outside-subtree``: a CA
   holding an agency code certifies only codes inside it); if it issued the next
   certificate, its basic constraints (``not-a-ca``), the path length the CAs above it
   allow (``path-length``) and its keyCertSign usage (``wrong-key-usage``); and its issuer's
   revocation list (``revoked``);
4. the leaf's fitness for the purpose: not a CA (``leaf-is-ca``), digitalSignature and the
   purpose's extended key usage (``wrong-key-usage``), an agency code, and for a node an
   Ed25519 key with a peer ID and an X25519 key agreement key.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pdoc.errors import (
    CertificateExpired,
    CertificateMalformed,
    CertificateNotYetValid,
    CertificateRejected,
    CertificateRevoked,
    ChainInvalid,
    InvalidValue,
    OutsideSubtree,
    PeerIdMismatch,
    RevocationListInvalid,
    UnknownIssuer,
    WrongKeyUsage,
)
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.trust.keys import KeyAlgorithm
from p2pdoc.trust.profile import (
    OID_DOCUMENT_SIGNING,
    OID_NODE,
    CertificateInfo,
    parse_certificate,
)
from p2pdoc.trust.revocation import RevocationList

__all__ = [
    "MAX_CHAIN_LENGTH",
    "CertificatePurpose",
    "RevocationCheck",
    "TrustStore",
    "VerifiedChain",
    "VerifiedNode",
    "verify_node_chain",
]

MAX_CHAIN_LENGTH: Final = 4
"""Most certificates accepted in a chain, and longest path from leaf to root."""

_MAX_KNOWN_CAS: Final = 10_000


def require_aware(now: _dt.datetime) -> _dt.datetime:
    """``now`` in UTC; it must be a timezone-aware datetime.

    Raises:
        InvalidValue: a naive datetime or another type.
    """
    if not isinstance(now, _dt.datetime) or now.tzinfo is None:
        raise InvalidValue("now must be a timezone-aware datetime")
    return now.astimezone(_dt.UTC)


class CertificatePurpose(enum.StrEnum):
    """What a validated chain's leaf certificate is accepted for."""

    NODE = "node"
    SIGNER = "signer"
    CA = "ca"


@dataclass(frozen=True, slots=True)
class RevocationCheck:
    """Which revocation list a validation relied on for one issuer.

    Attributes:
        issuer: the issuing CA's name (RFC 4514).
        issuer_key_id: its key identifier.
        version: the list version consulted; None when no list of that CA was known.
        next_update: when that list promised a successor (None if unknown).
    """

    issuer: str
    issuer_key_id: bytes
    version: int | None
    next_update: _dt.datetime | None

    def is_stale(self, now: _dt.datetime) -> bool:
        """True when no list was known, or the one used is past its next update.

        Raises:
            InvalidValue: ``now`` is not a timezone-aware datetime.
        """
        now = require_aware(now)
        return self.version is None or (self.next_update is not None and now > self.next_update)


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedChain:
    """A chain that passed validation.

    Attributes:
        purpose: what it was validated for.
        path: the certificates from the leaf to the trusted root.
        fingerprints: SHA-256 of each certificate of the path, leaf to root.
        revocation: one entry per issuer on the path, nearest first.
        valid_from, valid_until: the instants between which every certificate of the path
            is within its validity period (so the result may be reused in that window).
        generation: the trust store generation it was computed under.
    """

    purpose: CertificatePurpose
    path: tuple[CertificateInfo, ...]
    fingerprints: tuple[bytes, ...]
    revocation: tuple[RevocationCheck, ...]
    valid_from: _dt.datetime
    valid_until: _dt.datetime
    generation: int

    @property
    def leaf(self) -> CertificateInfo:
        return self.path[0]

    @property
    def agency(self) -> AgencyCode:
        """The leaf's agency code (always present for node and signer chains)."""
        if self.leaf.agency is None:
            raise InvalidValue("this chain's leaf names no agency code")
        return self.leaf.agency


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedNode:
    """An agency node admitted by :func:`verify_node_chain`.

    Attributes:
        agency: the agency code the node serves.
        peer: its libp2p peer ID (equal to the connection's).
        x25519_public: its key agreement key, to seal documents to it.
        public_key: its Ed25519 identity key, to verify what it signs.
        name: the certificate's common name.
        fingerprints: SHA-256 of each certificate, leaf to root.
        revocation: the revocation list versions relied on.
        valid_until: when the node certificate (or one above it) expires.
        chain: the DER certificates validated, leaf first (to validate them again later,
            e.g. when a newer revocation list arrives).
    """

    agency: AgencyCode
    peer: PeerId
    x25519_public: bytes
    public_key: ed25519.Ed25519PublicKey
    name: str
    fingerprints: tuple[bytes, ...]
    revocation: tuple[RevocationCheck, ...]
    valid_until: _dt.datetime
    chain: tuple[bytes, ...] = field(default=(), repr=False)


class TrustStore:
    """Trust anchors, known CA certificates, cached revocation lists and validated chains.

    The store is a cache, not a source of truth: it keeps the newest verified revocation
    list of each CA and never discards one for being old, so validation goes on with cached
    lists when no newer one can be fetched. Validated chains are cached (bounded, LRU) and
    reused only within their validity window and while no revocation list has changed
    (:attr:`generation`).

    Not thread-safe; use it from one thread (the node's trio thread).
    """

    __slots__ = (
        "_cas",
        "_chain_cache",
        "_generation",
        "_lists",
        "_max_cached_chains",
        "_require_lists",
        "_roots",
    )

    def __init__(
        self,
        roots: Iterable[bytes],
        *,
        require_revocation_lists: bool = False,
        max_cached_chains: int = 4096,
    ) -> None:
        """Create a store trusting ``roots`` (DER self-signed CA certificates).

        Args:
            require_revocation_lists: reject a chain when no revocation list of one of its
                issuers is cached (reason ``revocation-unknown``). Off by default: a node
                must keep working on what it has.
            max_cached_chains: bound on the validated-chain cache (0 disables it).

        Raises:
            InvalidValue: no roots, a root that is not a self-signed CA certificate, or a
                negative ``max_cached_chains``.
            CertificateMalformed: a root does not parse.
        """
        if max_cached_chains < 0:
            raise InvalidValue("max_cached_chains must not be negative")
        self._roots: dict[bytes, CertificateInfo] = {}
        for der in roots:
            info = parse_certificate(der)
            if not (info.is_ca and info.key_cert_sign):
                raise InvalidValue(f"{info.describe()} is not a CA certificate")
            try:
                info.certificate.verify_directly_issued_by(info.certificate)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                raise InvalidValue(f"{info.describe()} is not self-signed") from None
            self._roots[info.fingerprint] = info
        if not self._roots:
            raise InvalidValue("a trust store needs at least one root certificate")
        self._cas: OrderedDict[bytes, CertificateInfo] = OrderedDict()
        self._lists: dict[bytes, RevocationList] = {}
        self._chain_cache: OrderedDict[tuple[object, ...], VerifiedChain] = OrderedDict()
        self._max_cached_chains = max_cached_chains
        self._require_lists = require_revocation_lists
        self._generation = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def roots(self) -> tuple[bytes, ...]:
        return tuple(info.der for info in self._roots.values())

    @property
    def generation(self) -> int:
        """Increases whenever the revocation state changes; cached results older than it
        are recomputed."""
        return self._generation

    def known_cas(self) -> tuple[bytes, ...]:
        """CA certificates (other than roots) this store has validated, as DER."""
        return tuple(info.der for info in self._cas.values())

    def revocation_lists(self) -> tuple[RevocationList, ...]:
        """The newest verified list of every CA: what a node persists and passes on."""
        return tuple(self._lists.values())

    def revocation_list(self, issuer_key_id: bytes) -> RevocationList | None:
        return self._lists.get(issuer_key_id)

    # -- updates --------------------------------------------------------------------------

    def add_ca(self, chain: Sequence[bytes], *, now: _dt.datetime) -> CertificateInfo:
        """Validate a sub-CA chain (the CA first) and remember its certificates, so that
        truncated chains through it can be completed and its revocation lists checked.

        Raises:
            CertificateRejected: the chain does not validate as a CA chain.
        """
        verified = self.validate(chain, purpose=CertificatePurpose.CA, now=now)
        return verified.leaf

    def _remember_cas(self, path: Sequence[CertificateInfo]) -> None:
        for info in path:
            if info.is_ca and info.fingerprint not in self._roots:
                self._cas[info.fingerprint] = info
                self._cas.move_to_end(info.fingerprint)
        while len(self._cas) > _MAX_KNOWN_CAS:
            self._cas.popitem(last=False)

    def _issuer_by_key_id(self, key_id: bytes) -> CertificateInfo | None:
        for info in self._roots.values():
            if info.key_id == key_id:
                return info
        for info in reversed(self._cas.values()):
            if info.key_id == key_id:
                return info
        return None

    def add_revocation_list(
        self,
        revocation_list: RevocationList | bytes,
        *,
        now: _dt.datetime,
        issuer_chain: Sequence[bytes] = (),
    ) -> bool:
        """Verify a revocation list and merge it into the cache (the newer version wins).

        Args:
            revocation_list: a parsed list or its DER bytes (e.g. received from a peer).
            issuer_chain: the issuing sub-CA's chain, when the store may not know it yet.

        Returns:
            True if the cache changed (a new CA, or a newer version); False for a version
            already held or older.

        Raises:
            DecodeError: undecodable bytes.
            CertificateRejected: ``issuer_chain`` does not validate.
            RevocationListInvalid: the issuing CA is unknown, the signature does not verify,
                or a different list with the same version is already held. The cache is
                unchanged on any error.
        """
        now = require_aware(now)
        if not isinstance(revocation_list, RevocationList):
            revocation_list = RevocationList.from_bytes(revocation_list)
        if issuer_chain:
            self.add_ca(issuer_chain, now=now)
        issuer = self._issuer_by_key_id(revocation_list.issuer_key_id)
        if issuer is None:
            raise RevocationListInvalid(
                f"revocation list of {revocation_list.issuer} is from a CA this node does "
                "not know; pass the CA's chain"
            )
        revocation_list.verify(issuer)
        current = self._lists.get(revocation_list.issuer_key_id)
        merged = revocation_list if current is None else current.merge(revocation_list)
        if merged is current:
            return False
        self._lists[revocation_list.issuer_key_id] = merged
        self._generation += 1
        self._chain_cache.clear()
        return True

    # -- validation -----------------------------------------------------------------------

    def validate(
        self, chain: Sequence[bytes], *, purpose: CertificatePurpose, now: _dt.datetime
    ) -> VerifiedChain:
        """Validate ``chain`` (leaf first; the root may be omitted) for ``purpose`` at ``now``.

        Returns:
            The verified chain, possibly from the cache.

        Raises:
            CertificateRejected: a subclass naming the rule (see the module docstring);
                ``reason`` is its token.
            InvalidValue: ``now`` is naive.
        """
        now = require_aware(now)
        if isinstance(chain, (bytes, bytearray, memoryview)) or not isinstance(chain, Sequence):
            raise CertificateMalformed("a chain is a sequence of DER certificates")
        if not chain:
            raise CertificateMalformed("empty certificate chain")
        if len(chain) > MAX_CHAIN_LENGTH:
            raise ChainInvalid(
                f"chain of {len(chain)} certificates exceeds {MAX_CHAIN_LENGTH}", reason="too-long"
            )
        # bytes() of an int would allocate that many bytes: accept only bytes-like items.
        if not all(isinstance(c, (bytes, bytearray, memoryview)) for c in chain):
            raise CertificateMalformed("a chain is a sequence of DER certificates")
        return self._validate(tuple(bytes(c) for c in chain), purpose, now)

    def _validate(
        self, chain: tuple[bytes, ...], purpose: CertificatePurpose, now: _dt.datetime
    ) -> VerifiedChain:
        """:meth:`validate` for a checked tuple of 1..MAX_CHAIN_LENGTH bytes and aware UTC
        ``now`` (the verification hot path calls it directly)."""
        key = (purpose, *chain)
        cached = self._chain_cache.get(key)
        if (
            cached is not None
            and cached.generation == self._generation
            and cached.valid_from <= now <= cached.valid_until
        ):
            self._chain_cache.move_to_end(key)
            return cached
        parsed = [parse_certificate(c) for c in chain]
        path = self._build_path(parsed)
        revocation = self._check_path(path, now)
        _check_leaf(path[0], purpose)
        verified = VerifiedChain(
            purpose=purpose,
            path=tuple(path),
            fingerprints=tuple(c.fingerprint for c in path),
            revocation=tuple(revocation),
            valid_from=max(c.not_before for c in path),
            valid_until=min(c.not_after for c in path),
            generation=self._generation,
        )
        self._remember_cas(path[1:] if purpose is not CertificatePurpose.CA else path)
        self._chain_cache[key] = verified
        while len(self._chain_cache) > self._max_cached_chains:
            self._chain_cache.popitem(last=False)
        return verified

    def _build_path(self, chain: list[CertificateInfo]) -> list[CertificateInfo]:
        """Leaf to trusted root. The chain must be in order (each certificate followed by
        its issuer); known CAs complete a truncated chain; every certificate given must be
        used (a trailing copy of the root counts as used)."""
        path = [chain[0]]
        rest = chain[1:]
        while path[-1].fingerprint not in self._roots:
            if len(path) >= MAX_CHAIN_LENGTH:
                raise ChainInvalid("no trusted root within the path length", reason="too-long")
            current = path[-1]
            issuer = self._find_issuer(current, rest)
            if issuer is None:
                raise UnknownIssuer(
                    f"issuer {current.issuer_name.rfc4514_string()!r} is neither a "
                    "trusted root nor a known CA, nor the next certificate of the chain",
                    subject=current.describe(),
                )
            if rest and rest[0].fingerprint == issuer.fingerprint:
                rest = rest[1:]
            path.append(issuer)
        if rest:
            raise ChainInvalid(
                f"the chain holds {len(rest)} certificate(s) outside the path to the root",
                subject=chain[0].describe(),
                reason="unused-certificate",
            )
        return path

    def _find_issuer(
        self, current: CertificateInfo, rest: list[CertificateInfo]
    ) -> CertificateInfo | None:
        issuer_name = current.issuer_name
        hint = current.authority_key_id

        def matches(candidate: CertificateInfo) -> bool:
            return candidate.subject_name == issuer_name and (
                hint is None or candidate.key_id == hint
            )

        for root in self._roots.values():
            if matches(root):
                return root
        if rest:
            # The chain goes on: its next certificate must be the issuer.
            return rest[0] if rest[0].subject_name == issuer_name else None
        for known in reversed(self._cas.values()):
            if matches(known):
                return known
        return None

    def _check_path(self, path: list[CertificateInfo], now: _dt.datetime) -> list[RevocationCheck]:
        anchor = path[-1]
        _check_validity(anchor, now)
        checks: list[RevocationCheck] = []
        # CA levels still allowed below the current certificate (RFC 5280 max_path_length).
        budget = anchor.path_length if anchor.path_length is not None else MAX_CHAIN_LENGTH
        for index in range(len(path) - 2, -1, -1):
            child, issuer = path[index], path[index + 1]
            try:
                child.certificate.verify_directly_issued_by(issuer.certificate)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                raise ChainInvalid(
                    f"is not signed by {issuer.describe()}",
                    subject=child.describe(),
                    reason="bad-signature",
                ) from None
            _check_validity(child, now)
            if issuer.agency is not None and (
                child.agency is None or not issuer.agency.contains(child.agency)
            ):
                raise OutsideSubtree(
                    f"{issuer.describe()} may certify only agencies inside {issuer.agency}",
                    subject=child.describe(),
                )
            if index > 0:
                # The child certifies the next certificate down: it must be a CA within
                # the path length left by the CAs above it, with keyCertSign (RFC 5280
                # 6.1.4 k-n; the trust anchor's rights were checked when configured).
                if not child.is_ca:
                    raise ChainInvalid(
                        "is not a CA but issued a certificate",
                        subject=child.describe(),
                        reason="not-a-ca",
                    )
                if budget <= 0:
                    raise ChainInvalid(
                        f"a CA above it allows no further CA levels below {issuer.describe()}",
                        subject=child.describe(),
                        reason="path-length",
                    )
                budget -= 1
                if child.path_length is not None:
                    budget = min(budget, child.path_length)
                if not child.key_cert_sign:
                    raise WrongKeyUsage(
                        "lacks the keyCertSign key usage but issued a certificate",
                        subject=child.describe(),
                    )
            checks.append(self._check_revocation(child, issuer))
        checks.reverse()  # nearest issuer first
        return checks

    def _check_revocation(self, child: CertificateInfo, issuer: CertificateInfo) -> RevocationCheck:
        revocation_list = self._lists.get(issuer.key_id)
        if revocation_list is None:
            if self._require_lists:
                raise CertificateRejected(
                    f"no revocation list of {issuer.describe()} is known",
                    subject=child.describe(),
                    reason="revocation-unknown",
                )
            return RevocationCheck(issuer.subject, issuer.key_id, None, None)
        if revocation_list.is_revoked(child.serial):
            raise CertificateRevoked(
                f"revoked (revocation list version {revocation_list.version} of "
                f"{issuer.describe()})",
                subject=child.describe(),
            )
        return RevocationCheck(
            issuer.subject, issuer.key_id, revocation_list.version, revocation_list.next_update
        )


def _check_validity(info: CertificateInfo, now: _dt.datetime) -> None:
    if now < info.not_before:
        raise CertificateNotYetValid(
            f"not valid before {info.not_before.isoformat()}", subject=info.describe()
        )
    if now > info.not_after:
        raise CertificateExpired(f"expired {info.not_after.isoformat()}", subject=info.describe())


_PURPOSE_EKU: Final = {
    CertificatePurpose.NODE: OID_NODE.dotted_string,
    CertificatePurpose.SIGNER: OID_DOCUMENT_SIGNING.dotted_string,
}


def _check_leaf(leaf: CertificateInfo, purpose: CertificatePurpose) -> None:
    subject = leaf.describe()
    if purpose is CertificatePurpose.CA:
        if not leaf.is_ca:
            raise ChainInvalid("is not a CA certificate", subject=subject, reason="not-a-ca")
        if not (leaf.key_cert_sign and leaf.crl_sign):
            raise WrongKeyUsage("a CA needs keyCertSign and cRLSign", subject=subject)
        return
    if leaf.is_ca:
        raise ChainInvalid(
            f"a CA certificate cannot serve as a {purpose} certificate",
            subject=subject,
            reason="leaf-is-ca",
        )
    if not leaf.digital_signature:
        raise WrongKeyUsage("lacks the digitalSignature key usage", subject=subject)
    if _PURPOSE_EKU[purpose] not in leaf.extended_key_usages:
        raise WrongKeyUsage(f"is not certified for use as a {purpose}", subject=subject)
    if leaf.agency is None:
        raise CertificateMalformed("names no agency code", subject=subject)
    if leaf.public_key is None:
        raise ChainInvalid(
            "its key type or size is not supported", subject=subject, reason="unsupported-key"
        )
    if purpose is CertificatePurpose.NODE:
        if leaf.key_algorithm is not KeyAlgorithm.ED25519:
            raise ChainInvalid(
                "a node key must be Ed25519 (the libp2p identity key)",
                subject=subject,
                reason="unsupported-key",
            )
        if leaf.peer is None:
            raise CertificateMalformed("names no peer ID", subject=subject)
        if leaf.x25519_public is None:
            raise CertificateMalformed("has no key agreement key", subject=subject)
    elif not leaf.common_name.strip():
        raise CertificateMalformed("names no signer", subject=subject)


def verify_node_chain(
    chain: Sequence[bytes],
    *,
    expected_peer: PeerId,
    trust: TrustStore,
    now: _dt.datetime,
) -> VerifiedNode:
    """Admission check: is ``chain`` a valid agency node chain for the connected peer?

    Called after the libp2p handshake, once both sides exchanged chains. The peer ID bound
    by the leaf is compared with the connection's first (a cheap check that stops a peer
    replaying someone else's chain before any signature is verified), then the chain is
    validated for :attr:`CertificatePurpose.NODE`.

    Returns:
        The admitted node's agency, peer ID, key agreement key and the revocation list
        versions relied on.

    Raises:
        PeerIdMismatch: the certificate binds another peer ID than ``expected_peer``.
        CertificateRejected: any other rule (subclass and ``reason`` name it).
    """
    now = require_aware(now)
    if isinstance(chain, (bytes, bytearray, memoryview)) or not isinstance(chain, Sequence):
        raise CertificateMalformed("a chain is a sequence of DER certificates")
    if not chain:
        raise CertificateMalformed("empty certificate chain")
    leaf = parse_certificate(chain[0])
    if leaf.peer is not None and leaf.peer != expected_peer:
        raise PeerIdMismatch(
            f"certifies peer {leaf.peer} but the connection is from {expected_peer}",
            subject=leaf.describe(),
        )
    verified = trust.validate(chain, purpose=CertificatePurpose.NODE, now=now)
    leaf = verified.leaf
    assert leaf.peer is not None and leaf.x25519_public is not None
    public_key = leaf.public_key
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    return VerifiedNode(
        agency=verified.agency,
        peer=leaf.peer,
        x25519_public=leaf.x25519_public,
        public_key=public_key,
        name=leaf.common_name,
        fingerprints=verified.fingerprints,
        revocation=verified.revocation,
        valid_until=verified.valid_until,
        chain=tuple(bytes(c) for c in chain),
    )
