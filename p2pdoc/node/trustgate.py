"""The node's trust decisions, made with :mod:`p2pdoc.trust`: admission, evidence signers,
document signatures and the classification policy."""

from __future__ import annotations

import datetime as _dt
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import VerificationError
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.model.manifest import Manifest
from p2pdoc.node.clock import Clock, to_datetime
from p2pdoc.trust.identity import NodeIdentity
from p2pdoc.trust.keys import SignatureAlgorithm, SigningKey, verify_signature
from p2pdoc.trust.policy import ClassificationPolicy, Handling
from p2pdoc.trust.sealing import OpenedSeal, open_sealed_manifest
from p2pdoc.trust.signatures import (
    SignatureSet,
    VerificationCache,
    sign_document,
    verify_document_signatures,
)
from p2pdoc.trust.validation import TrustStore, VerifiedNode, verify_node_chain

__all__ = ["DocumentSigners", "IdentityCredentials", "SignaturePolicy", "TrustGate"]

_VERIFIED_MEMORY = 8192


class IdentityCredentials:
    """A :class:`~p2pdoc.trust.NodeIdentity` as the node's credentials."""

    def __init__(self, identity: NodeIdentity) -> None:
        self.identity = identity

    @property
    def agency(self) -> AgencyCode:
        return self.identity.agency

    @property
    def peer(self) -> PeerId:
        return self.identity.peer_id

    @property
    def chain(self) -> tuple[bytes, ...]:
        return self.identity.chain

    @property
    def x25519_public(self) -> bytes:
        return self.identity.x25519_public

    def sign(self, payload: bytes) -> bytes:
        """Sign ``payload`` with the node key; payloads carry their own ``ctx`` field."""
        return self.identity.signing_key.sign(payload, SignatureAlgorithm.ED25519)

    def open_seal(self, manifest: Manifest) -> OpenedSeal:
        return open_sealed_manifest(
            manifest, agency=self.identity.agency, key=self.identity.agreement_key
        )

    def __repr__(self) -> str:
        return f"IdentityCredentials({self.agency})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignaturePolicy:
    """What a received document's signature set must hold."""

    min_signatures: int = 1
    """Fewest signatures accepted."""
    required_roles: tuple[str, ...] = ()
    """Roles that must each be signed (e.g. the competent signer and the organisation)."""


@dataclass(slots=True)
class TrustGate:
    """Implements the node's trust interface over a trust store.

    Args:
        trust: roots, known CAs and cached revocation lists.
        clock: the node's clock (admission validates chains at its current time).
        policy: classification handling.
        signatures: what every received document's signature set must hold.
    """

    trust: TrustStore
    clock: Clock
    policy: ClassificationPolicy = field(default_factory=ClassificationPolicy)
    signatures: SignaturePolicy = field(default_factory=SignaturePolicy)
    cache: VerificationCache = field(default_factory=VerificationCache)
    _verified: OrderedDict[tuple[bytes, bytes, bytes], None] = field(default_factory=OrderedDict)

    def admit(
        self, chain: Sequence[bytes], peer: PeerId, payload: bytes, signature: bytes
    ) -> tuple[AgencyCode, object]:
        node = verify_node_chain(
            chain, expected_peer=peer, trust=self.trust, now=to_datetime(self.clock.now_ms())
        )
        verify_signature(node.public_key, SignatureAlgorithm.ED25519, payload, signature)
        return node.agency, node

    def readmit(self, evidence: object) -> str | None:
        if not isinstance(evidence, VerifiedNode) or not evidence.chain:
            return None
        try:
            verify_node_chain(
                evidence.chain,
                expected_peer=evidence.peer,
                trust=self.trust,
                now=to_datetime(self.clock.now_ms()),
            )
        except VerificationError as exc:
            return str(exc)
        return None

    def verify_node(
        self, chain: Sequence[bytes], peer: PeerId, at: _dt.datetime
    ) -> tuple[AgencyCode, Callable[[bytes, bytes], None]]:
        node = verify_node_chain(chain, expected_peer=peer, trust=self.trust, now=at)
        return node.agency, self._verifier(node)

    def _verifier(self, node: VerifiedNode) -> Callable[[bytes, bytes], None]:
        key = node.peer.to_bytes()

        def verify(signature: bytes, payload: bytes) -> None:
            # One batch signature covers many records: verify it once.
            memo = (key, signature, payload)
            if memo in self._verified:
                self._verified.move_to_end(memo)
                return
            verify_signature(node.public_key, SignatureAlgorithm.ED25519, payload, signature)
            self._verified[memo] = None
            if len(self._verified) > _VERIFIED_MEMORY:
                self._verified.popitem(last=False)

        return verify

    def verify_document(
        self, root: Cid, signatures: bytes, manifest: Manifest, at: _dt.datetime
    ) -> None:
        self.policy.check_manifest(manifest)
        verify_document_signatures(
            root,
            SignatureSet.decode(signatures),
            trust=self.trust,
            now=at,
            cache=self.cache,
            sender=manifest.envelope.sender.code,
            min_signatures=self.signatures.min_signatures,
            required_roles=self.signatures.required_roles,
        )

    def sealing_required(self, envelope: Envelope) -> bool:
        return self.policy.handling(envelope.classification) is Handling.SEALED

    def check_outgoing(self, manifest: Manifest) -> None:
        self.policy.check_manifest(manifest)


@dataclass(frozen=True, slots=True)
class DocumentSigners:
    """Officials signing a document, each with a role: ``(role, key, certificate chain)``."""

    signers: tuple[tuple[str, SigningKey, tuple[bytes, ...]], ...]

    def sign_document(self, root: Cid, at: _dt.datetime) -> bytes:
        return SignatureSet(
            tuple(
                sign_document(root, role=role, key=key, chain=chain, now=at)
                for role, key, chain in self.signers
            )
        ).encode()
