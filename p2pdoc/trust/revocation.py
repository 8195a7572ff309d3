"""Revocation lists: X.509 CRLs, one per issuing CA key, versioned by their CRL number.

Goals: a list is a standard DER CRL (``openssl crl -inform DER`` reads it), signed by the
CA whose key issued the certificates it lists, identified by that key (authorityKeyIdentifier)
and versioned by ``cRLNumber``. Lists are cumulative: each version lists every certificate
the CA ever revoked that has not yet expired, so two versions merge by keeping the higher
one, and a cached list stays useful for as long as no newer one arrives (``nextUpdate`` is
advisory: a stale list is reported, never fatal).

Non-goals: delta CRLs, indirect CRLs, revocation reasons other than informational, OCSP,
un-revoking (``removeFromCRL``/certificate hold).

Decoding is bounded (:data:`MAX_REVOCATION_LIST_SIZE`, :data:`MAX_REVOKED_ENTRIES`) and
raises :class:`~p2pdoc.errors.DecodeError`; signatures are checked with :meth:`verify`,
which raises :class:`~p2pdoc.errors.RevocationListInvalid`. A list is trusted only after
:class:`~p2pdoc.trust.validation.TrustStore` has verified it against its CA certificate.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID

from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded, RevocationListInvalid
from p2pdoc.trust.keys import SigningKey, public_key_id
from p2pdoc.trust.profile import CertificateInfo

__all__ = ["MAX_REVOCATION_LIST_SIZE", "MAX_REVOKED_ENTRIES", "RevocationList"]

MAX_REVOCATION_LIST_SIZE: Final = 4 * 1024 * 1024
MAX_REVOKED_ENTRIES: Final = 100_000
_MAX_VERSION: Final = (1 << 63) - 1
_UNDERSTOOD_CRITICAL: Final = frozenset(
    {ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER}
)


def _aware(when: _dt.datetime, what: str) -> _dt.datetime:
    if not isinstance(when, _dt.datetime) or when.tzinfo is None:
        raise InvalidValue(f"{what} must be a timezone-aware datetime")
    return when.astimezone(_dt.UTC)


def signature_hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash a CA key signs certificates and lists with (None for Ed25519)."""
    private = key._private()
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


class RevocationList:
    """A parsed revocation list (immutable). Build one with :meth:`issue`, read one with
    :meth:`from_bytes`.

    Attributes:
        issuer_key_id: the issuing CA's key identifier (authorityKeyIdentifier).
        issuer: the issuer name in RFC 4514 text.
        version: the CRL number; higher is newer.
        this_update: when the CA issued it.
        next_update: when the CA promised a newer one (None if it did not say).
        revoked: serial numbers of the revoked certificates.
    """

    __slots__ = (
        "_crl",
        "_der",
        "_digest",
        "_revoked",
        "issuer",
        "issuer_key_id",
        "next_update",
        "this_update",
        "version",
    )

    _der: bytes
    _crl: x509.CertificateRevocationList
    _digest: bytes
    _revoked: dict[int, _dt.datetime]
    issuer_key_id: bytes
    issuer: str
    version: int
    this_update: _dt.datetime
    next_update: _dt.datetime | None

    def __init__(self, der: bytes) -> None:
        """Parse DER bytes; prefer :meth:`from_bytes`, which names the limit."""
        parsed = self._parse(der)
        self._der, self._crl, self.issuer_key_id, self.version = parsed[:4]
        self._revoked = parsed[4]
        self._digest = hashlib.sha256(der).digest()
        self.issuer = self._crl.issuer.rfc4514_string()
        self.this_update = self._crl.last_update_utc
        self.next_update = self._crl.next_update_utc

    @staticmethod
    def _parse(
        der: bytes,
    ) -> tuple[bytes, x509.CertificateRevocationList, bytes, int, dict[int, _dt.datetime]]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", CryptographyDeprecationWarning)
                return RevocationList._parse_strict(der)
        except DecodeError:
            raise
        except (
            CryptographyDeprecationWarning,
            ValueError,
            TypeError,
            UnsupportedAlgorithm,
            x509.DuplicateExtension,
            x509.InvalidVersion,
        ) as exc:
            raise DecodeError(f"not a valid revocation list ({type(exc).__name__})") from None

    @staticmethod
    def _parse_strict(
        der: bytes,
    ) -> tuple[bytes, x509.CertificateRevocationList, bytes, int, dict[int, _dt.datetime]]:
        crl = x509.load_der_x509_crl(der)
        key_id: bytes | None = None
        version: int | None = None
        for extension in crl.extensions:
            if extension.critical and extension.oid not in _UNDERSTOOD_CRITICAL:
                raise DecodeError(
                    f"revocation list has unknown critical extension {extension.oid.dotted_string}"
                )
            if isinstance(extension.value, x509.CRLNumber):
                version = extension.value.crl_number
            elif isinstance(extension.value, x509.AuthorityKeyIdentifier):
                key_id = extension.value.key_identifier
        if version is None or not 1 <= version <= _MAX_VERSION:
            raise DecodeError("revocation list has no CRL number in 1..2**63-1")
        if not key_id:
            raise DecodeError("revocation list does not name its issuer key")
        revoked: dict[int, _dt.datetime] = {}
        for count, entry in enumerate(crl, start=1):
            if count > MAX_REVOKED_ENTRIES:
                raise LimitExceeded("revoked entries", count, MAX_REVOKED_ENTRIES)
            for entry_extension in entry.extensions:
                if entry_extension.critical:
                    raise DecodeError("revocation entry has a critical extension")
            revoked[entry.serial_number] = entry.revocation_date_utc
        # Touch the remaining lazily parsed fields so that errors surface here.
        crl.last_update_utc  # noqa: B018
        crl.next_update_utc  # noqa: B018
        crl.issuer.rfc4514_string()
        return der, crl, key_id, version, revoked

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_REVOCATION_LIST_SIZE
    ) -> RevocationList:
        """Parse a DER revocation list (signature not checked: see :meth:`verify`).

        Raises:
            LimitExceeded: over ``max_size`` bytes or :data:`MAX_REVOKED_ENTRIES` entries.
            DecodeError: not a DER CRL, no CRL number or issuer key identifier, or an
                unknown critical extension.
        """
        if len(data) > max_size:
            raise LimitExceeded("revocation list", len(data), max_size)
        return cls(bytes(data))

    @classmethod
    def issue(
        cls,
        *,
        key: SigningKey,
        issuer: CertificateInfo,
        revoked: Mapping[int, _dt.datetime] | Iterable[int],
        version: int,
        now: _dt.datetime,
        next_update: _dt.datetime | None = None,
    ) -> RevocationList:
        """Sign a list as the CA ``issuer`` with its ``key``.

        Args:
            revoked: serial numbers, or serial -> revocation time (default ``now``).
            version: the CRL number, 1 or more; must exceed every earlier version.

        Raises:
            InvalidValue: ``key`` is not the issuer certificate's key, the issuer is not a
                CA with the cRLSign key usage, or the version is out of range.
        """
        now = _aware(now, "now")
        if issuer.public_key is None or key.key_id != public_key_id(issuer.public_key):
            raise InvalidValue("the signing key is not the issuer certificate's key")
        if not (issuer.is_ca and issuer.crl_sign):
            raise InvalidValue("only a CA certificate with cRLSign may issue revocation lists")
        if not isinstance(version, int) or not 1 <= version <= _MAX_VERSION:
            raise InvalidValue("a revocation list version must be 1..2**63-1")
        entries = dict(revoked) if isinstance(revoked, Mapping) else dict.fromkeys(revoked, now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject_name)
            .last_update(now)
            .next_update(
                _aware(next_update, "next update") if next_update else now + _dt.timedelta(days=7)
            )
            .add_extension(x509.CRLNumber(version), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier(issuer.key_id, None, None), critical=False)
        )
        for serial, when in sorted(entries.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(_aware(when, "revocation time"))
                .build()
            )
        crl = builder.sign(key._private(), signature_hash_for(key))
        return cls(crl.public_bytes(serialization.Encoding.DER))

    # -- accessors ------------------------------------------------------------------------

    @property
    def revoked(self) -> frozenset[int]:
        return frozenset(self._revoked)

    @property
    def entries(self) -> dict[int, _dt.datetime]:
        """Serial -> revocation time (a copy)."""
        return dict(self._revoked)

    def is_revoked(self, serial: int) -> bool:
        return serial in self._revoked

    def is_stale(self, now: _dt.datetime) -> bool:
        """True once ``now`` is past the promised next update.

        Raises:
            InvalidValue: ``now`` is not a timezone-aware datetime.
        """
        if not isinstance(now, _dt.datetime) or now.tzinfo is None:
            raise InvalidValue("now must be a timezone-aware datetime")
        return self.next_update is not None and now > self.next_update

    def to_bytes(self) -> bytes:
        """The DER bytes, exactly as signed."""
        return self._der

    # -- checks ---------------------------------------------------------------------------

    def verify(self, issuer: CertificateInfo) -> None:
        """Check that the CA certificate ``issuer`` signed this list.

        Raises:
            RevocationListInvalid: another issuer key or name, the issuer is not a CA with
                cRLSign, or the signature does not verify.
        """
        if self.issuer_key_id != issuer.key_id:
            raise RevocationListInvalid(
                f"revocation list of key {self.issuer_key_id.hex()[:12]} is not from "
                f"{issuer.describe()}"
            )
        if self._crl.issuer != issuer.subject_name:
            raise RevocationListInvalid("revocation list issuer name differs from its CA")
        if not (issuer.is_ca and issuer.crl_sign):
            raise RevocationListInvalid(f"{issuer.describe()} may not sign revocation lists")
        try:
            valid = self._crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
        except (ValueError, TypeError, UnsupportedAlgorithm):
            valid = False
        if not valid:
            raise RevocationListInvalid(
                f"revocation list version {self.version} is not signed by {issuer.describe()}"
            )

    def merge(self, other: RevocationList) -> RevocationList:
        """The newer of two verified lists of the same CA key.

        Merging is commutative, associative and idempotent, so lists may arrive in any
        order and any number of times.

        Raises:
            RevocationListInvalid: different issuers, or two different lists with the same
                version (the CA signed conflicting lists; the one already held is kept).
        """
        if other.issuer_key_id != self.issuer_key_id:
            raise RevocationListInvalid("cannot merge revocation lists of different CAs")
        if other.version == self.version:
            if other._digest != self._digest:
                raise RevocationListInvalid(
                    f"two different revocation lists carry version {self.version}"
                )
            return self
        return other if other.version > self.version else self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RevocationList) and other._digest == self._digest

    def __hash__(self) -> int:
        return hash(self._digest)

    def __repr__(self) -> str:
        return (
            f"RevocationList(issuer={self.issuer_key_id.hex()[:12]}, v{self.version}, "
            f"{len(self._revoked)} revoked)"
        )
