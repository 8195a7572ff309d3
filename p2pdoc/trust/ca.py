"""Certificate authority operations: the national root, delegated sub-CAs, and the agency
node and signer certificates they issue.

Goals: issuance is a library call (the daemon's CLI wraps it); a sub-CA holds a level-1
code and can certify only agencies inside that code's subtree, so provinces and ministries
issue for their own units without waiting on the centre and without any power outside
their subtree; every certificate follows :mod:`p2pdoc.trust.profile`.
Non-goals: certificate requests over the network, persistence of issued serials (the
operator keeps a register; serial numbers are random, 159 bits).

Issuance refuses what validation would reject, raising the same typed errors
(:class:`~p2pdoc.errors.OutsideSubtree` for a code outside the CA's subtree,
:class:`~p2pdoc.errors.ChainInvalid` with reason ``path-length`` for a sub-CA below a
sub-CA). Validity periods start :data:`ISSUANCE_BACKDATE` before ``now`` (tolerating clock
skew between nodes) and never outlast the issuing CA's own certificate.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.x509.oid import NameOID

from p2pdoc.errors import ChainInvalid, InvalidValue, OutsideSubtree
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.trust.keys import PublicKey, SigningKey, key_algorithm_of, public_key_id
from p2pdoc.trust.profile import (
    AGENCY_URI_PREFIX,
    OID_DOCUMENT_SIGNING,
    OID_KEY_AGREEMENT,
    OID_NODE,
    PEER_URI_PREFIX,
    CertificateInfo,
    parse_certificate,
)
from p2pdoc.trust.revocation import RevocationList, signature_hash_for

__all__ = [
    "DEFAULT_CA_LIFETIME",
    "DEFAULT_LEAF_LIFETIME",
    "DEFAULT_ROOT_LIFETIME",
    "ISSUANCE_BACKDATE",
    "CertificateAuthority",
    "build_certificate",
]

DEFAULT_ROOT_LIFETIME: Final = _dt.timedelta(days=20 * 365)
DEFAULT_CA_LIFETIME: Final = _dt.timedelta(days=10 * 365)
DEFAULT_LEAF_LIFETIME: Final = _dt.timedelta(days=2 * 365)
ISSUANCE_BACKDATE: Final = _dt.timedelta(minutes=5)


def _aware(when: _dt.datetime) -> _dt.datetime:
    if not isinstance(when, _dt.datetime) or when.tzinfo is None:
        raise InvalidValue("times must be timezone-aware datetimes")
    return when.astimezone(_dt.UTC)


def _name(common_name: str, *, title: str = "", organization: str = "") -> x509.Name:
    if not isinstance(common_name, str) or not common_name.strip() or len(common_name) > 64:
        raise InvalidValue("a certificate common name must be 1..64 characters")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if title:
        if len(title) > 64:
            raise InvalidValue("a position (title) must be at most 64 characters")
        attributes.append(x509.NameAttribute(NameOID.TITLE, title))
    if organization:
        if len(organization) > 64:
            raise InvalidValue("an organization name must be at most 64 characters")
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, ca: bool, content_commitment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def build_certificate(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    issuer_name: x509.Name,
    issuer_key: SigningKey,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    ca: bool,
    path_length: int | None = None,
    key_usage: x509.KeyUsage | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] = (),
    uris: Sequence[str] = (),
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    serial: int | None = None,
) -> bytes:
    """Build and sign one certificate, without any policy check; returns DER.

    This is the low-level builder behind :class:`CertificateAuthority`; it is public so
    that tests and tools can build certificates that break the rules on purpose.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(key_usage or _key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key),
            critical=False,
        )
    )
    if extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False
        )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(issuer_key._private(), signature_hash_for(issuer_key))
    return cert.public_bytes(serialization.Encoding.DER)


class CertificateAuthority:
    """A CA: its signing key and its chain.

    ``chain`` is the CA's own certificate first, then its issuers, excluding the
    self-signed root (which every verifier already holds); for the root CA itself it is
    just the root certificate. Every ``issue_*`` method returns the new certificate's chain
    in the same form - the new certificate first, then this CA's chain (without the root) -
    ready to be handed to its owner and sent over the wire.
    """

    __slots__ = ("_chain", "_info", "_key")

    _key: SigningKey
    _chain: tuple[bytes, ...]
    _info: CertificateInfo

    def __init__(self, key: SigningKey, chain: Sequence[bytes]) -> None:
        """Pair a CA key with its certificate chain.

        Raises:
            InvalidValue: the chain is empty, its first certificate is not a CA certificate
                with keyCertSign and cRLSign, or ``key`` is not that certificate's key.
            CertificateMalformed: a certificate does not parse.
        """
        chain = tuple(bytes(c) for c in chain)
        if not chain:
            raise InvalidValue("a CA needs its certificate chain")
        info = parse_certificate(chain[0])
        if not (info.is_ca and info.key_cert_sign and info.crl_sign):
            raise InvalidValue("not a CA certificate with keyCertSign and cRLSign")
        if info.public_key is None or public_key_id(info.public_key) != key.key_id:
            raise InvalidValue("the key does not belong to the CA certificate")
        self._key = key
        self._chain = chain
        self._info = info

    @classmethod
    def create_root(
        cls,
        *,
        name: str,
        key: SigningKey,
        now: _dt.datetime,
        lifetime: _dt.timedelta = DEFAULT_ROOT_LIFETIME,
        path_length: int = 1,
    ) -> CertificateAuthority:
        """Create the national root CA (self-signed, no agency code: unconstrained).

        Args:
            path_length: how many sub-CA levels may sit below the root (1: sub-CAs issue
                only node and signer certificates).
        """
        now = _aware(now)
        subject = _name(name, organization=name[:64])
        der = build_certificate(
            subject=subject,
            public_key=key.public_key,
            issuer_name=subject,
            issuer_key=key,
            not_before=now - ISSUANCE_BACKDATE,
            not_after=now + lifetime,
            ca=True,
            path_length=path_length,
        )
        return cls(key, (der,))

    # -- accessors ------------------------------------------------------------------------

    @property
    def key(self) -> SigningKey:
        return self._key

    @property
    def certificate(self) -> bytes:
        """This CA's own certificate (DER)."""
        return self._chain[0]

    @property
    def info(self) -> CertificateInfo:
        return self._info

    @property
    def chain(self) -> tuple[bytes, ...]:
        return self._chain

    @property
    def agency(self) -> AgencyCode | None:
        """The subtree this CA may certify; None for an unconstrained root."""
        return self._info.agency

    @property
    def is_root(self) -> bool:
        return self._info.issuer_name == self._info.subject_name

    def __repr__(self) -> str:
        scope = str(self.agency) if self.agency is not None else "unconstrained"
        return f"CertificateAuthority({self._info.common_name!r}, {scope})"

    # -- issuance -------------------------------------------------------------------------

    def _check_subtree(self, agency: AgencyCode) -> None:
        if not isinstance(agency, AgencyCode):
            raise InvalidValue("agency must be an AgencyCode")
        if self.agency is not None and not self.agency.contains(agency):
            raise OutsideSubtree(
                f"may certify only agencies inside {self.agency}, not {agency}",
                subject=self._info.describe(),
            )

    def _validity(
        self, now: _dt.datetime, lifetime: _dt.timedelta
    ) -> tuple[_dt.datetime, _dt.datetime]:
        now = _aware(now)
        if lifetime <= _dt.timedelta(0):
            raise InvalidValue("a certificate lifetime must be positive")
        not_before = max(now - ISSUANCE_BACKDATE, self._info.not_before)
        not_after = min(now + lifetime, self._info.not_after)
        if not_after <= not_before:
            raise InvalidValue("the CA certificate expires before the new one would start")
        return not_before, not_after

    def _certify(
        self,
        *,
        subject: x509.Name,
        public_key: PublicKey,
        now: _dt.datetime,
        lifetime: _dt.timedelta,
        ca: bool,
        path_length: int | None = None,
        key_usage: x509.KeyUsage | None = None,
        extended_key_usage: Sequence[x509.ObjectIdentifier] = (),
        uris: Sequence[str] = (),
        extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> tuple[bytes, ...]:
        """Sign one certificate as this CA, valid from ``now`` for ``lifetime`` within this
        CA's own validity; returns the new certificate's chain (see the class docstring)."""
        not_before, not_after = self._validity(now, lifetime)
        der = build_certificate(
            subject=subject,
            public_key=public_key,
            issuer_name=self._info.subject_name,
            issuer_key=self._key,
            not_before=not_before,
            not_after=not_after,
            ca=ca,
            path_length=path_length,
            key_usage=key_usage,
            extended_key_usage=extended_key_usage,
            uris=uris,
            extra=extra,
        )
        return (der,) if self.is_root else (der, *self._chain)

    def issue_sub_ca(
        self,
        *,
        agency: AgencyCode,
        name: str,
        public_key: PublicKey,
        now: _dt.datetime,
        lifetime: _dt.timedelta = DEFAULT_CA_LIFETIME,
    ) -> tuple[bytes, ...]:
        """Certify a sub-CA for ``agency``'s subtree (a ministry or province: level 1).

        The sub-CA may certify ``agency`` and every code below it, nothing else, and may
        not create further sub-CAs unless this CA's path length leaves room.

        Raises:
            OutsideSubtree: ``agency`` is outside this CA's own subtree.
            ChainInvalid: this CA may not certify further CAs (``path-length``).
            InvalidValue: unsupported key or bad name.
        """
        self._check_subtree(agency)
        if key_algorithm_of(public_key) is None:
            raise InvalidValue("unsupported CA key type, curve or size")
        parent_length = self._info.path_length
        if parent_length is not None and parent_length < 1:
            raise ChainInvalid(
                "may not certify further CAs", subject=self._info.describe(), reason="path-length"
            )
        return self._certify(
            subject=_name(name),
            public_key=public_key,
            now=now,
            lifetime=lifetime,
            ca=True,
            path_length=None if parent_length is None else parent_length - 1,
            uris=(AGENCY_URI_PREFIX + str(agency),),
        )

    def issue_node(
        self,
        *,
        agency: AgencyCode,
        name: str,
        node_key: ed25519.Ed25519PublicKey,
        x25519_public: bytes,
        now: _dt.datetime,
        organization: str = "",
        lifetime: _dt.timedelta = DEFAULT_LEAF_LIFETIME,
    ) -> tuple[bytes, ...]:
        """Certify an agency node: binds ``agency`` to the peer ID of ``node_key`` (the
        node's libp2p identity key) and to its X25519 key agreement key for sealing.

        Raises:
            OutsideSubtree: ``agency`` is outside this CA's subtree.
            InvalidValue: ``node_key`` is not Ed25519 or ``x25519_public`` not 32 bytes.
        """
        self._check_subtree(agency)
        if not isinstance(node_key, ed25519.Ed25519PublicKey):
            raise InvalidValue("a node key is the node's Ed25519 libp2p identity key")
        try:
            agreement = x25519.X25519PublicKey.from_public_bytes(bytes(x25519_public))
        except ValueError:
            raise InvalidValue("an X25519 public key is 32 bytes") from None
        spki = agreement.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        peer = PeerId.from_ed25519(node_key.public_bytes_raw())
        return self._certify(
            subject=_name(name, organization=organization),
            public_key=node_key,
            now=now,
            lifetime=lifetime,
            ca=False,
            extended_key_usage=(OID_NODE,),
            uris=(AGENCY_URI_PREFIX + str(agency), PEER_URI_PREFIX + str(peer)),
            extra=((x509.UnrecognizedExtension(OID_KEY_AGREEMENT, spki), False),),
        )

    def issue_signer(
        self,
        *,
        agency: AgencyCode,
        full_name: str,
        public_key: PublicKey,
        now: _dt.datetime,
        position: str = "",
        organization: str = "",
        lifetime: _dt.timedelta = DEFAULT_LEAF_LIFETIME,
    ) -> tuple[bytes, ...]:
        """Certify an official (or an organisation seal) who signs documents for ``agency``.

        Args:
            full_name: the official's full name (subject commonName).
            position: the position held (subject title); a new post means a new certificate.
            organization: the agency's name (subject organizationName).

        Raises:
            OutsideSubtree: ``agency`` is outside this CA's subtree.
            InvalidValue: unsupported key type or size (RSA below 2048 bits...), bad names.
        """
        self._check_subtree(agency)
        if key_algorithm_of(public_key) is None:
            raise InvalidValue("unsupported signer key type, curve or size")
        return self._certify(
            subject=_name(full_name, title=position, organization=organization),
            public_key=public_key,
            now=now,
            lifetime=lifetime,
            ca=False,
            key_usage=_key_usage(ca=False, content_commitment=True),
            extended_key_usage=(OID_DOCUMENT_SIGNING,),
            uris=(AGENCY_URI_PREFIX + str(agency),),
        )

    def issue_revocation_list(
        self,
        *,
        revoked: Mapping[int, _dt.datetime] | Iterable[int],
        now: _dt.datetime,
        previous: RevocationList | None = None,
        version: int | None = None,
        next_update: _dt.timedelta = _dt.timedelta(days=7),
    ) -> RevocationList:
        """Sign this CA's revocation list.

        Args:
            revoked: serial numbers newly revoked (or serial -> revocation time).
            previous: this CA's latest list; its entries are carried over (lists are
                cumulative) and the version defaults to its version + 1.
            version: the CRL number (defaults to 1, or ``previous.version + 1``).
            next_update: when a newer list is promised (advisory).

        Raises:
            InvalidValue: ``previous`` belongs to another CA, or ``version`` does not exceed
                ``previous.version``.
        """
        now = _aware(now)
        entries: dict[int, _dt.datetime] = {}
        if previous is not None:
            if previous.issuer_key_id != self._info.key_id:
                raise InvalidValue("the previous list belongs to another CA")
            entries.update(previous.entries)
        if isinstance(revoked, Mapping):
            entries.update(revoked)
        else:
            for serial in revoked:
                entries.setdefault(serial, now)
        if version is None:
            version = previous.version + 1 if previous is not None else 1
        elif previous is not None and version <= previous.version:
            raise InvalidValue("a new revocation list needs a higher version than the previous")
        return RevocationList.issue(
            key=self._key,
            issuer=self._info,
            revoked=entries,
            version=version,
            now=now,
            next_update=now + next_update,
        )
