"""Admission: both ends prove who they are before any other message is accepted.

Goals: a peer is admitted only if (1) its certificate chain verifies to a trusted root and
binds an agency code to the peer ID the transport authenticated, and (2) it proves, over a
transcript fresh to this session, possession of the key that certificate names. Neither side
can replay the other's proof into another session, nor claim another peer's certificate.
Non-goals: the certificate rules themselves (the trust layer's ``Gatekeeper`` applies them)
and confidentiality (the transport's job).

Sequence (symmetric; both sides send without waiting)::

    -> Hello(version, nonce_a, agent, limits)      <- Hello(version, nonce_b, agent, limits)
    -> Auth(chain_a, sig_a)                         <- Auth(chain_b, sig_b)
    -> Welcome | Refuse(reason)                     <- Welcome | Refuse(reason)

    sig_a = Sign(key_a, transcript(peer_a, peer_b, nonce_a, nonce_b))
    transcript(signer, verifier, n_s, n_v) = canonical CBOR of
        {"ctx": "p2pdoc/admission/v1", "signer": signer peer ID bytes,
         "verifier": verifier peer ID bytes, "signer_nonce": n_s, "verifier_nonce": n_v}

Each side answers the peer's Auth with ``Welcome`` once it verified it, or ``Refuse(reason)``
and closes. A side is admitted when it has both verified the peer and been welcomed, so
neither end starts a session the other refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from p2pdoc.codecs import cbor
from p2pdoc.errors import AdmissionRefused, RemoteProtocolError
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.protocol.messages import PROTOCOL_VERSION, Auth, Hello

__all__ = [
    "ADMISSION_CONTEXT",
    "AdmittedPeer",
    "Credentials",
    "Gatekeeper",
    "Handshake",
    "transcript",
]

ADMISSION_CONTEXT: Final = "p2pdoc/admission/v1"


@dataclass(frozen=True, slots=True)
class AdmittedPeer:
    """A peer that passed admission.

    Attributes:
        peer: its transport-authenticated peer ID.
        agency: the agency code its certificate binds to that peer ID.
        max_frame_size: the largest frame it accepts.
        max_in_flight: how many of our requests it serves at once.
        agent: its software's self-description (informational only).
        evidence: what the gatekeeper verified (e.g. the trust layer's verified node).
    """

    peer: PeerId
    agency: AgencyCode
    max_frame_size: int
    max_in_flight: int
    agent: str = ""
    evidence: object = field(default=None, compare=False, repr=False)


class Credentials(Protocol):
    """This node's side of admission."""

    @property
    def chain(self) -> tuple[bytes, ...]:
        """Our certificate chain, leaf first, DER."""
        ...

    def sign(self, payload: bytes) -> bytes:
        """Sign with the node key (the one the leaf certificate names)."""
        ...


class Gatekeeper(Protocol):
    """Decides whether a peer may join; implemented over the trust layer."""

    def admit(
        self, chain: Sequence[bytes], peer: PeerId, payload: bytes, signature: bytes
    ) -> tuple[AgencyCode, object]:
        """Verify ``chain`` binds an agency code to ``peer`` and ``signature`` is the leaf
        key's over ``payload``.

        Returns:
            ``(agency code, evidence)``.

        Raises:
            VerificationError: the chain, binding or signature fails (a subclass names why).
        """
        ...


def transcript(
    signer: PeerId, verifier: PeerId, signer_nonce: bytes, verifier_nonce: bytes
) -> bytes:
    """The bytes a side signs to prove key possession to ``verifier`` in one session."""
    return cbor.encode(
        {
            "ctx": ADMISSION_CONTEXT,
            "signer": signer.to_bytes(),
            "verifier": verifier.to_bytes(),
            "signer_nonce": signer_nonce,
            "verifier_nonce": verifier_nonce,
        }
    )


class Handshake:
    """Sans-IO state of one side of admission.

    Use: send :meth:`hello`; on the peer's Hello call :meth:`receive_hello` and send the Auth it
    returns; on the peer's Auth call :meth:`receive_auth`, which returns the admitted peer.
    """

    def __init__(
        self,
        *,
        local: PeerId,
        remote: PeerId,
        credentials: Credentials,
        gatekeeper: Gatekeeper,
        agent: str,
        max_frame_size: int,
        max_in_flight: int,
        nonce: bytes | None = None,
    ) -> None:
        self._local = local
        self._remote = remote
        self._credentials = credentials
        self._gatekeeper = gatekeeper
        self._nonce = nonce if nonce is not None else secrets.token_bytes(32)
        self._hello = Hello(PROTOCOL_VERSION, self._nonce, agent, max_frame_size, max_in_flight)
        self._peer_hello: Hello | None = None

    def hello(self) -> Hello:
        return self._hello

    def receive_hello(self, hello: Hello) -> Auth:
        """Record the peer's Hello and produce our proof.

        Raises:
            RemoteProtocolError: a second Hello, an unsupported version, or unusable limits.
        """
        if self._peer_hello is not None:
            raise RemoteProtocolError("Hello sent twice")
        if hello.version != PROTOCOL_VERSION:
            raise AdmissionRefused(f"unsupported protocol version {hello.version}")
        if hello.max_frame_size < 64 << 10 or hello.max_in_flight < 1:
            raise AdmissionRefused("peer's limits are too small to hold a session")
        if hello.nonce == self._nonce:
            raise AdmissionRefused("peer echoed our nonce")
        self._peer_hello = hello
        payload = transcript(self._local, self._remote, self._nonce, hello.nonce)
        return Auth(self._credentials.chain, self._credentials.sign(payload))

    def receive_auth(self, auth: Auth) -> AdmittedPeer:
        """Verify the peer's proof.

        Raises:
            RemoteProtocolError: Auth before Hello.
            VerificationError: the gatekeeper refused the chain or the signature.
        """
        hello = self._peer_hello
        if hello is None:
            raise RemoteProtocolError("Auth before Hello")
        payload = transcript(self._remote, self._local, hello.nonce, self._nonce)
        agency, evidence = self._gatekeeper.admit(auth.chain, self._remote, payload, auth.signature)
        return AdmittedPeer(
            peer=self._remote,
            agency=agency,
            max_frame_size=hello.max_frame_size,
            max_in_flight=hello.max_in_flight,
            agent=hello.agent,
            evidence=evidence,
        )
