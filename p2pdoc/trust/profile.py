"""The p2pdoc certificate profile: where each binding lives in an X.509 certificate.

Goals: every p2pdoc binding (agency code, libp2p peer ID, X25519 key agreement key, purpose)
sits in a standard X.509 place that ordinary tools display, and parsing a certificate from
the wire either yields a complete :class:`CertificateInfo` or raises a typed error.
Non-goals: general-purpose X.509 (name constraints, policies, CRL distribution points,
OCSP); those extensions are refused when critical and ignored otherwise.

The profile (also in ``docs/trust-model.md``):

=====================  ==========================================================
agency code            subjectAltName URI ``urn:p2pdoc:agency:<code>``
                       (e.g. ``urn:p2pdoc:agency:000.05.00.H49``); on a CA it is the
                       subtree the CA may certify
peer ID                subjectAltName URI ``urn:p2pdoc:peer:<base58 peer ID>``; it must be
                       the peer ID of the certificate's own Ed25519 key
X25519 key             non-critical extension ``id-p2pdoc-ext-keyAgreement``, whose value is
                       the DER SubjectPublicKeyInfo of the X25519 key (RFC 8410)
purpose                extendedKeyUsage ``id-p2pdoc-kp-node`` or
                       ``id-p2pdoc-kp-documentSigning``
official               subject commonName = full name, title = position,
                       organizationName = agency name
=====================  ==========================================================

p2pdoc OIDs sit under ``2.25.322680527869817890961567933357691833303``, an OID derived
from a UUID (ITU-T X.667), which needs no registration.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import hashlib
import warnings
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID, NameOID

from p2pdoc.errors import CertificateMalformed, ChainInvalid, InvalidValue
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.trust.keys import KeyAlgorithm, PublicKey, key_algorithm_of

__all__ = [
    "AGENCY_URI_PREFIX",
    "MAX_CERTIFICATE_SIZE",
    "OID_DOCUMENT_SIGNING",
    "OID_KEY_AGREEMENT",
    "OID_NODE",
    "P2PDOC_OID_ARC",
    "PEER_URI_PREFIX",
    "CertificateInfo",
    "CertificateKind",
    "parse_certificate",
]

P2PDOC_OID_ARC: Final = "2.25.322680527869817890961567933357691833303"
OID_KEY_AGREEMENT: Final = x509.ObjectIdentifier(P2PDOC_OID_ARC + ".1.1")
"""Extension holding the node's X25519 SubjectPublicKeyInfo."""
OID_NODE: Final = x509.ObjectIdentifier(P2PDOC_OID_ARC + ".2.1")
"""Extended key usage of an agency node certificate."""
OID_DOCUMENT_SIGNING: Final = x509.ObjectIdentifier(P2PDOC_OID_ARC + ".2.2")
"""Extended key usage of an official's (signer's) certificate."""

AGENCY_URI_PREFIX: Final = "urn:p2pdoc:agency:"
PEER_URI_PREFIX: Final = "urn:p2pdoc:peer:"

MAX_CERTIFICATE_SIZE: Final = 16 * 1024

# Extensions the validator processes; any other critical extension rejects the certificate
# (RFC 5280 section 4.2).
_UNDERSTOOD_CRITICAL: Final = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)
_PARSE_ERRORS: Final = (
    CryptographyDeprecationWarning,  # e.g. a serial number that is not positive
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)
_ACCEPTED_HASHES: Final = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


class CertificateKind(enum.StrEnum):
    """What a certificate is for, read from basic constraints and extended key usage."""

    CA = "ca"
    NODE = "node"
    SIGNER = "signer"
    OTHER = "other"


@dataclass(frozen=True, slots=True, eq=False)
class CertificateInfo:
    """A parsed certificate with the p2pdoc bindings extracted.

    Attributes:
        der: the DER bytes.
        certificate: the ``cryptography`` certificate object.
        fingerprint: SHA-256 of ``der``.
        key_id: the RFC 5280 key identifier of the subject key (SHA-1 of the key bits),
            computed from the key, not read from the extension; revocation lists name
            their issuer by it.
        authority_key_id: the issuer's key identifier as this certificate states it
            (authorityKeyIdentifier), None if absent; a hint for finding the issuer.
        kind: CA, node, signer or other.
        is_ca, path_length: basic constraints (``path_length`` None = unlimited).
        key_cert_sign, crl_sign, digital_signature: key usage bits (all false when absent).
        extended_key_usages: dotted OIDs.
        agency: the agency code URI, if any.
        peer: the peer ID URI, if any.
        x25519_public: the raw key agreement key, if any.
        public_key: the subject key (None if its type is not a supported signature key).
        key_algorithm: its type, None if unsupported.
        common_name, title, organization: subject attributes ("" when absent).
        subject: the subject DN in RFC 4514 text.
        subject_name, issuer_name: the parsed subject and issuer DNs.
        serial: the serial number.
        not_before, not_after: validity period (aware UTC).
    """

    der: bytes
    certificate: x509.Certificate
    fingerprint: bytes
    key_id: bytes
    authority_key_id: bytes | None
    kind: CertificateKind
    is_ca: bool
    path_length: int | None
    key_cert_sign: bool
    crl_sign: bool
    digital_signature: bool
    extended_key_usages: frozenset[str]
    agency: AgencyCode | None
    peer: PeerId | None
    x25519_public: bytes | None
    public_key: PublicKey | None
    key_algorithm: KeyAlgorithm | None
    common_name: str
    title: str
    organization: str
    subject: str
    subject_name: x509.Name
    issuer_name: x509.Name
    serial: int
    not_before: _dt.datetime
    not_after: _dt.datetime

    def describe(self) -> str:
        """A short human description for error messages."""
        name = self.common_name or self.subject
        code = f" [{self.agency}]" if self.agency is not None else ""
        return f"{self.kind} certificate {name!r}{code}"


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _san_bindings(
    extension: x509.SubjectAlternativeName,
) -> tuple[AgencyCode | None, PeerId | None]:
    agency: AgencyCode | None = None
    peer: PeerId | None = None
    for uri in extension.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(AGENCY_URI_PREFIX):
            if agency is not None:
                raise CertificateMalformed("more than one agency code URI")
            try:
                agency = AgencyCode(uri[len(AGENCY_URI_PREFIX) :])
            except InvalidValue as exc:
                raise CertificateMalformed(f"bad agency code URI: {exc}") from None
        elif uri.startswith(PEER_URI_PREFIX):
            if peer is not None:
                raise CertificateMalformed("more than one peer ID URI")
            try:
                peer = PeerId.parse(uri[len(PEER_URI_PREFIX) :])
            except InvalidValue as exc:
                raise CertificateMalformed(f"bad peer ID URI: {exc}") from None
    return agency, peer


def _x25519_from_extension(value: bytes) -> bytes:
    try:
        key = serialization.load_der_public_key(value)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateMalformed("key agreement extension is not a public key") from None
    if not isinstance(key, x25519.X25519PublicKey):
        raise CertificateMalformed("key agreement extension is not an X25519 key")
    return key.public_bytes_raw()


def parse_certificate(der: bytes) -> CertificateInfo:
    """Parse a DER certificate of the p2pdoc profile (cached by its bytes).

    Raises:
        CertificateMalformed: over :data:`MAX_CERTIFICATE_SIZE`, not DER X.509 v3, a
            serial number that is not positive,
            duplicate or malformed extensions, bad agency code or peer ID URIs, a peer ID
            that is not the certificate's own key, a malformed key agreement extension.
        ChainInvalid: an unknown critical extension (``unknown-critical-extension``) or a
            signature hash weaker than SHA-256 (``weak-algorithm``).
    """
    if not isinstance(der, (bytes, bytearray, memoryview)):
        raise CertificateMalformed("a certificate must be DER bytes")
    if len(der) > MAX_CERTIFICATE_SIZE:
        raise CertificateMalformed(
            f"certificate of {len(der)} bytes exceeds {MAX_CERTIFICATE_SIZE}"
        )
    return _parse_cached(bytes(der))


@functools.lru_cache(maxsize=2048)
def _parse_cached(der: bytes) -> CertificateInfo:
    try:
        with warnings.catch_warnings():
            # cryptography warns (and will later refuse) on RFC 5280 violations it still
            # tolerates; a certificate that triggers one is refused now.
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
            return _extract(der, cert)
    except _PARSE_ERRORS as exc:
        raise CertificateMalformed(f"not a valid certificate ({type(exc).__name__})") from None


def _extract(der: bytes, cert: x509.Certificate) -> CertificateInfo:
    if cert.version is not x509.Version.v3:
        raise CertificateMalformed("certificate is not X.509 v3")
    if cert.serial_number <= 0:
        raise CertificateMalformed("certificate serial number is not positive")
    hash_algorithm = cert.signature_hash_algorithm
    if hash_algorithm is not None and not isinstance(hash_algorithm, _ACCEPTED_HASHES):
        raise ChainInvalid(
            f"signature hash {hash_algorithm.name} is too weak", reason="weak-algorithm"
        )
    is_ca = False
    path_length: int | None = None
    key_cert_sign = crl_sign = digital_signature = False
    ekus: frozenset[str] = frozenset()
    agency: AgencyCode | None = None
    peer: PeerId | None = None
    x25519_public: bytes | None = None
    authority_key_id: bytes | None = None
    for extension in cert.extensions:
        value = extension.value
        if extension.critical and extension.oid not in _UNDERSTOOD_CRITICAL:
            raise ChainInvalid(
                f"unknown critical extension {extension.oid.dotted_string}",
                reason="unknown-critical-extension",
            )
        if isinstance(value, x509.BasicConstraints):
            is_ca = value.ca
            path_length = value.path_length
        elif isinstance(value, x509.KeyUsage):
            key_cert_sign = value.key_cert_sign
            crl_sign = value.crl_sign
            digital_signature = value.digital_signature
        elif isinstance(value, x509.ExtendedKeyUsage):
            ekus = frozenset(oid.dotted_string for oid in value)
        elif isinstance(value, x509.SubjectAlternativeName):
            agency, peer = _san_bindings(value)
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            authority_key_id = value.key_identifier
        elif extension.oid == OID_KEY_AGREEMENT and isinstance(value, x509.UnrecognizedExtension):
            x25519_public = _x25519_from_extension(value.value)
    raw_key = cert.public_key()
    algorithm = key_algorithm_of(raw_key)
    public_key: PublicKey | None = raw_key if algorithm is not None else None  # type: ignore[assignment]
    if peer is not None:
        own = (
            PeerId.from_ed25519(raw_key.public_bytes_raw())
            if algorithm is KeyAlgorithm.ED25519 and hasattr(raw_key, "public_bytes_raw")
            else None
        )
        if own != peer:
            raise CertificateMalformed("the peer ID URI is not the peer ID of the certificate key")
    if is_ca:
        kind = CertificateKind.CA
    elif OID_NODE.dotted_string in ekus:
        kind = CertificateKind.NODE
    elif OID_DOCUMENT_SIGNING.dotted_string in ekus:
        kind = CertificateKind.SIGNER
    else:
        kind = CertificateKind.OTHER
    key_id = x509.SubjectKeyIdentifier.from_public_key(raw_key).digest
    # Names are parsed lazily by cryptography; parse both here so that a malformed name is
    # a CertificateMalformed now rather than a ValueError later.
    subject = cert.subject
    issuer = cert.issuer
    issuer.rfc4514_string()
    return CertificateInfo(
        der=der,
        certificate=cert,
        fingerprint=hashlib.sha256(der).digest(),
        key_id=key_id,
        authority_key_id=authority_key_id,
        kind=kind,
        is_ca=is_ca,
        path_length=path_length,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        digital_signature=digital_signature,
        extended_key_usages=ekus,
        agency=agency,
        peer=peer,
        x25519_public=x25519_public,
        public_key=public_key,
        key_algorithm=algorithm,
        common_name=_attribute(subject, NameOID.COMMON_NAME),
        title=_attribute(subject, NameOID.TITLE),
        organization=_attribute(subject, NameOID.ORGANIZATION_NAME),
        subject=subject.rfc4514_string(),
        subject_name=subject,
        issuer_name=issuer,
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )
