"""A node's identity: its Ed25519 libp2p key, its X25519 key agreement key and its chain;
domain-separated signing of node records (receipts, status reports, admission challenges).

Goals: every signature a node makes is over canonical CBOR of a map that carries a context
string (``"ctx": "p2pdoc/<record>/v<n>"``), so a signature made for one purpose can never be
replayed as another; the same bytes are rebuilt by any verifier from the record's fields.
Non-goals: the admission protocol itself (it calls :func:`verify_node_chain` and
:func:`verify_node_signature`), key rotation.

Files of a node identity in its directory (see :meth:`NodeIdentity.save`):
``node-identity.key`` (Ed25519, PKCS#8 PEM), ``node-agreement.key`` (X25519, PKCS#8 PEM),
both mode 0600 and encrypted when a passphrase is given, and ``node-chain.pem`` (the
certificate chain, leaf first, not secret).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.errors import CertificateRejected, InvalidValue, KeyFileError, SignatureInvalid
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.trust.ca import CertificateAuthority
from p2pdoc.trust.keys import (
    AgreementKey,
    KeyAlgorithm,
    SignatureAlgorithm,
    SigningKey,
    load_agreement_key,
    load_signing_key,
    public_key_id,
    save_key,
    verify_signature,
)
from p2pdoc.trust.profile import CertificateInfo, CertificateKind, parse_certificate
from p2pdoc.trust.validation import TrustStore, VerifiedNode, verify_node_chain

__all__ = [
    "CONTEXT_PATTERN",
    "NodeIdentity",
    "signed_bytes",
    "verify_node_signature",
]

CONTEXT_PATTERN: Final = re.compile(r"p2pdoc/[a-z0-9][a-z0-9-]{0,62}/v[1-9][0-9]{0,3}")
"""Context strings: ``p2pdoc/<record kind>/v<version>``."""

_KEY_FILE: Final = "node-identity.key"
_AGREEMENT_FILE: Final = "node-agreement.key"
_CHAIN_FILE: Final = "node-chain.pem"
_MAX_CHAIN_FILE: Final = 64 * 1024


def signed_bytes(context: str, fields: Mapping[str, Value]) -> bytes:
    """The exact bytes a node signs: canonical CBOR of ``fields`` plus ``"ctx": context``.

    Raises:
        InvalidValue: a malformed context, a ``"ctx"`` key in ``fields``, or a value
            outside the canonical CBOR data model.
    """
    if not isinstance(context, str) or not CONTEXT_PATTERN.fullmatch(context):
        raise InvalidValue(f"context {context!r} must look like 'p2pdoc/<record>/v<n>'")
    if "ctx" in fields:
        raise InvalidValue("the field name 'ctx' is reserved for the context string")
    return cbor.encode({**fields, "ctx": context})


def verify_node_signature(
    node: VerifiedNode, context: str, fields: Mapping[str, Value], signature: bytes
) -> None:
    """Check a node's signature over ``fields`` in ``context``.

    Args:
        node: the signer, as admitted by :func:`verify_node_chain`.

    Raises:
        SignatureInvalid: the signature does not verify (wrong node, context or fields).
        InvalidValue: malformed context or fields.
    """
    data = signed_bytes(context, fields)
    try:
        verify_signature(node.public_key, SignatureAlgorithm.ED25519, data, signature)
    except SignatureInvalid:
        raise SignatureInvalid(
            f"{context} signature does not verify under node {node.peer} ({node.agency})"
        ) from None


class NodeIdentity:
    """A node's private keys and certificate chain.

    The Ed25519 signing key is also the node's libp2p identity key, so the peer ID the
    certificate binds is the one its connections present.
    """

    __slots__ = ("_agreement_key", "_chain", "_info", "_signing_key")

    _signing_key: SigningKey
    _agreement_key: AgreementKey
    _chain: tuple[bytes, ...]
    _info: CertificateInfo

    def __init__(
        self, *, signing_key: SigningKey, agreement_key: AgreementKey, chain: Sequence[bytes]
    ) -> None:
        """Pair keys with the chain that certifies them.

        Raises:
            InvalidValue: the chain is empty, its leaf is not a node certificate, or does
                not certify these two keys.
            CertificateMalformed: the leaf does not parse.
        """
        chain = tuple(bytes(c) for c in chain)
        if not chain:
            raise InvalidValue("a node identity needs its certificate chain")
        info = parse_certificate(chain[0])
        if info.kind is not CertificateKind.NODE or info.agency is None or info.peer is None:
            raise InvalidValue("the chain's leaf is not a node certificate")
        if signing_key.algorithm is not KeyAlgorithm.ED25519:
            raise InvalidValue("a node's signing key is its Ed25519 libp2p identity key")
        if info.public_key is None or public_key_id(info.public_key) != signing_key.key_id:
            raise InvalidValue("the node certificate does not certify this signing key")
        if info.x25519_public != agreement_key.public_bytes:
            raise InvalidValue("the node certificate does not certify this agreement key")
        self._signing_key = signing_key
        self._agreement_key = agreement_key
        self._chain = chain
        self._info = info

    @classmethod
    def issue(
        cls,
        ca: CertificateAuthority,
        *,
        agency: AgencyCode,
        name: str,
        now: _dt.datetime,
        organization: str = "",
    ) -> NodeIdentity:
        """Generate fresh node keys and have ``ca`` certify them (for tests, simulations
        and single-operator setups; production nodes send only public keys to their CA).

        Raises:
            OutsideSubtree: ``agency`` is outside ``ca``'s subtree.
        """
        signing_key = SigningKey.generate(KeyAlgorithm.ED25519)
        agreement_key = AgreementKey.generate()
        public = signing_key.public_key
        assert isinstance(public, ed25519.Ed25519PublicKey)
        chain = ca.issue_node(
            agency=agency,
            name=name,
            node_key=public,
            x25519_public=agreement_key.public_bytes,
            now=now,
            organization=organization,
        )
        return cls(signing_key=signing_key, agreement_key=agreement_key, chain=chain)

    # -- accessors ------------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        return self._signing_key

    @property
    def agreement_key(self) -> AgreementKey:
        return self._agreement_key

    @property
    def chain(self) -> tuple[bytes, ...]:
        """Leaf first, root excluded: what the node presents at admission."""
        return self._chain

    @property
    def peer_id(self) -> PeerId:
        assert self._info.peer is not None
        return self._info.peer

    @property
    def agency(self) -> AgencyCode:
        assert self._info.agency is not None
        return self._info.agency

    @property
    def x25519_public(self) -> bytes:
        return self._agreement_key.public_bytes

    @property
    def certificate(self) -> CertificateInfo:
        return self._info

    def __repr__(self) -> str:
        return f"NodeIdentity({self.agency}, {self.peer_id!r})"

    # -- use ------------------------------------------------------------------------------

    def sign(self, context: str, fields: Mapping[str, Value]) -> bytes:
        """Sign ``fields`` under ``context`` (see :func:`signed_bytes`); 64 bytes."""
        return self._signing_key.sign(signed_bytes(context, fields))

    def validate(self, *, trust: TrustStore, now: _dt.datetime) -> VerifiedNode:
        """Check the own chain as peers will (e.g. at start-up, to warn before expiry).

        Raises:
            CertificateRejected: as :func:`verify_node_chain`.
        """
        return verify_node_chain(self._chain, expected_peer=self.peer_id, trust=trust, now=now)

    # -- persistence ----------------------------------------------------------------------

    def save(
        self,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes | str | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write the two keys (mode 0600, encrypted under ``passphrase`` if given) and the
        chain into ``directory``.

        Raises:
            KeyFileError: a file exists (without ``overwrite``; then nothing is written) or
                cannot be written.
        """
        folder = Path(directory)
        if not overwrite:
            for name in (_KEY_FILE, _AGREEMENT_FILE, _CHAIN_FILE):
                if (folder / name).exists():
                    raise KeyFileError(str(folder / name), "already exists; refusing to overwrite")
        save_key(folder / _KEY_FILE, self._signing_key, passphrase=passphrase, overwrite=overwrite)
        save_key(
            folder / _AGREEMENT_FILE,
            self._agreement_key,
            passphrase=passphrase,
            overwrite=overwrite,
        )
        pem = b"".join(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            for der in self._chain
        )
        chain_path = folder / _CHAIN_FILE
        tmp = folder / f".{_CHAIN_FILE}.tmp"
        try:
            tmp.write_bytes(pem)
            os.replace(tmp, chain_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KeyFileError(str(chain_path), f"cannot write: {exc.strerror}") from None

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, passphrase: bytes | str | None = None
    ) -> NodeIdentity:
        """Read an identity written by :meth:`save`.

        Raises:
            KeyFileError: a key file is missing, readable by group or others, needs another
                passphrase, or the chain does not certify the keys.
        """
        folder = Path(directory)
        signing_key = load_signing_key(folder / _KEY_FILE, passphrase=passphrase)
        agreement_key = load_agreement_key(folder / _AGREEMENT_FILE, passphrase=passphrase)
        chain_path = folder / _CHAIN_FILE
        try:
            with open(chain_path, "rb") as handle:
                pem = handle.read(_MAX_CHAIN_FILE + 1)
        except OSError as exc:
            raise KeyFileError(str(chain_path), f"cannot read: {exc.strerror}") from None
        if len(pem) > _MAX_CHAIN_FILE:
            raise KeyFileError(str(chain_path), f"is larger than {_MAX_CHAIN_FILE} bytes")
        try:
            certs = x509.load_pem_x509_certificates(pem)
            chain = [c.public_bytes(serialization.Encoding.DER) for c in certs]
            return cls(signing_key=signing_key, agreement_key=agreement_key, chain=chain)
        except (ValueError, CertificateRejected) as exc:
            raise KeyFileError(str(chain_path), f"unusable chain: {exc}") from None
