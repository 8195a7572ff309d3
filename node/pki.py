"""Enrolment requests, CA directories and trust files: the PKI as files an operator handles.

Goals: a node's (or an official's) keys never leave the machine that generated them: what
goes to the CA is a PKCS#10 request (CSR) signed by the key it certifies; a CA is a directory
holding its key (mode 0600, optionally encrypted), its chain, the root certificate to hand
out, a register of what it issued and its latest revocation list; every issuance goes
through :class:`~p2pdoc.trust.CertificateAuthority`, so the files here only carry what the
trust layer decided. Non-goals: CSRs for keys of other types than Ed25519 (the daemon
generates its own keys), requests over the network, hardware tokens.

A node request carries, signed by the node's Ed25519 key: subject commonName (the agency's
name), subjectAltName URIs ``urn:p2pdoc:agency:<code>`` and ``urn:p2pdoc:peer:<peer ID>`` and
the X25519 key agreement key in the same extension the certificate will carry. A signer
request carries the official's full name (commonName), position (title), agency name
(organizationName) and the agency URI.

CA directory files: ``ca.key``, ``ca-chain.pem`` (this CA's certificate, then its issuers
without the root), ``root.pem``, ``issued.jsonl`` (one JSON object per certificate issued) and
``crl.pem`` (the latest revocation list followed by this CA's chain, the file nodes install).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.x509.oid import NameOID

from p2pdoc.errors import (
    ConfigError,
    DecodeError,
    InvalidValue,
    KeyFileError,
    SignatureInvalid,
    VerificationError,
)
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.trust.ca import DEFAULT_LEAF_LIFETIME, CertificateAuthority
from p2pdoc.trust.keys import (
    AgreementKey,
    PublicKey,
    SigningKey,
    key_algorithm_of,
    load_signing_key,
    save_key,
)
from p2pdoc.trust.profile import (
    AGENCY_URI_PREFIX,
    OID_KEY_AGREEMENT,
    PEER_URI_PREFIX,
    parse_certificate,
)
from p2pdoc.trust.revocation import RevocationList
from p2pdoc.trust.validation import TrustStore

log = logging.getLogger(__name__)

__all__ = [
    "CA_CHAIN_FILE",
    "CA_KEY_FILE",
    "CRL_FILE",
    "REGISTER_FILE",
    "ROOT_FILE",
    "CaDirectory",
    "EnrolmentRequest",
    "Issued",
    "create_identity_keys",
    "create_signer_key",
    "load_trust_store",
    "node_request",
    "parse_request",
    "read_certificates",
    "read_passphrase",
    "read_revocation_bundle",
    "revocation_files",
    "signer_request",
    "write_pem_chain",
]

CA_KEY_FILE: Final = "ca.key"
CA_CHAIN_FILE: Final = "ca-chain.pem"
ROOT_FILE: Final = "root.pem"
REGISTER_FILE: Final = "issued.jsonl"
CRL_FILE: Final = "crl.pem"
NODE_KEY_FILE: Final = "node-identity.key"
AGREEMENT_KEY_FILE: Final = "node-agreement.key"
NODE_CHAIN_FILE: Final = "node-chain.pem"
NODE_REQUEST_FILE: Final = "node-request.csr"
MAX_PEM_FILE: Final = 1 << 20
_PEM_BLOCK: Final = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL
)


# -- files ----------------------------------------------------------------------------------


def _read_limited(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_FILE + 1)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read {what}: {exc.strerror}") from None
    if len(data) > MAX_PEM_FILE:
        raise ConfigError(str(path), f"{what} is larger than {MAX_PEM_FILE} bytes")
    return data


def _write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_pem_chain(path: str | os.PathLike[str], chain: Sequence[bytes]) -> None:
    """Write DER certificates as one PEM file (atomically, mode 0644: not secret)."""
    pem = b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in chain
    )
    _write_atomic(Path(path), pem)


def read_certificates(path: str | os.PathLike[str]) -> list[bytes]:
    """Every certificate of a PEM file, as DER, in file order.

    Raises:
        ConfigError: unreadable, too large, or a certificate block does not parse.
    """
    target = Path(path)
    data = _read_limited(target, "certificates")
    try:
        return [
            c.public_bytes(serialization.Encoding.DER)
            for c in x509.load_pem_x509_certificates(data)
        ]
    except ValueError as exc:
        raise ConfigError(str(target), f"not a PEM certificate file: {exc}") from None


def read_revocation_bundle(path: str | os.PathLike[str]) -> tuple[RevocationList, list[bytes]]:
    """A revocation list file as ``ca revoke`` writes it: the list, then its CA's chain.

    Raises:
        ConfigError: unreadable, no ``X509 CRL`` block, or a block does not parse.
    """
    target = Path(path)
    data = _read_limited(target, "a revocation list")
    crl: RevocationList | None = None
    chain: list[bytes] = []
    try:
        for match in _PEM_BLOCK.finditer(data):
            kind = match.group(1)
            if kind == b"X509 CRL" and crl is None:
                der = x509.load_pem_x509_crl(match.group(0)).public_bytes(
                    serialization.Encoding.DER
                )
                crl = RevocationList.from_bytes(der)
            elif kind == b"CERTIFICATE":
                chain.append(
                    x509.load_pem_x509_certificate(match.group(0)).public_bytes(
                        serialization.Encoding.DER
                    )
                )
    except (ValueError, DecodeError) as exc:
        raise ConfigError(str(target), f"not a revocation list file: {exc}") from None
    if crl is None:
        raise ConfigError(str(target), "holds no revocation list (X509 CRL block)")
    return crl, chain


def revocation_files(paths: Sequence[Path]) -> list[Path]:
    """The files named: each file itself, each directory's ``*.pem`` files (sorted); paths
    that do not exist are skipped (a node may have no list yet), and so are directories that
    cannot be listed now (with a warning: the lists already loaded stay in force)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                out += sorted(p for p in path.iterdir() if p.suffix == ".pem" and p.is_file())
            except OSError as exc:
                log.warning("revocation lists in %s not read: %s", path, exc)
        elif path.exists():
            out.append(path)
    return out


def load_trust_store(
    roots: Sequence[Path],
    revocation_lists: Sequence[Path],
    *,
    now: _dt.datetime,
    require_revocation_lists: bool = False,
) -> TrustStore:
    """A trust store with the root certificates and every revocation list found.

    Raises:
        ConfigError: a root or list file is unusable (``key`` names the file).
    """
    certificates: list[bytes] = []
    for path in roots:
        certificates += read_certificates(path)
    try:
        store = TrustStore(certificates, require_revocation_lists=require_revocation_lists)
    except InvalidValue as exc:
        raise ConfigError("trust.roots", str(exc)) from None
    for path in revocation_files(revocation_lists):
        add_revocation_file(store, path, now=now)
    return store


def add_revocation_file(store: TrustStore, path: Path, *, now: _dt.datetime) -> bool:
    """Verify and cache the revocation list in ``path``; True if it was new.

    Raises:
        ConfigError: the file is unusable or the list does not verify.
    """
    crl, chain = read_revocation_bundle(path)
    issuer_chain = [c for c in chain if c not in store.roots]
    try:
        return store.add_revocation_list(crl, now=now, issuer_chain=issuer_chain)
    except (InvalidValue, DecodeError, VerificationError) as exc:
        raise ConfigError(str(path), f"revocation list refused: {exc}") from None


def read_passphrase(
    env_name: str, file: Path | None, *, environ: Mapping[str, str] | None = None, what: str
) -> str | None:
    """The passphrase named by an environment variable or a file (its first line); None if
    neither is set.

    Raises:
        ConfigError: the variable is unset or empty, or the file cannot be read.
    """
    environ = os.environ if environ is None else environ
    if env_name:
        value = environ.get(env_name, "")
        if not value:
            raise ConfigError(what, f"the environment variable {env_name} is not set")
        return value
    if file is not None:
        data = _read_limited(file, "the passphrase file")
        line = data.decode("utf-8", "replace").splitlines()[0] if data else ""
        if not line:
            raise ConfigError(str(file), "the passphrase file is empty")
        return line
    return None


# -- enrolment requests ---------------------------------------------------------------------


def _name(common_name: str, *, title: str = "", organization: str = "") -> x509.Name:
    if not common_name.strip() or len(common_name) > 64:
        raise InvalidValue("a name must be 1..64 characters")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if title:
        attributes.append(x509.NameAttribute(NameOID.TITLE, title[:64]))
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]))
    return x509.Name(attributes)


def node_request(
    node_key: ed25519.Ed25519PrivateKey,
    agreement_public: bytes,
    *,
    agency: AgencyCode,
    name: str,
) -> bytes:
    """A PEM CSR for a node certificate, signed by the node key (see the module docstring)."""
    raw = node_key.public_key().public_bytes_raw()
    peer = PeerId.from_ed25519(raw)
    spki = x25519.X25519PublicKey.from_public_bytes(agreement_public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(name, organization=name))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + str(agency)),
                    x509.UniformResourceIdentifier(PEER_URI_PREFIX + str(peer)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.UnrecognizedExtension(OID_KEY_AGREEMENT, spki), critical=False)
        .sign(node_key, None)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def signer_request(
    signer_key: ed25519.Ed25519PrivateKey,
    *,
    agency: AgencyCode,
    full_name: str,
    position: str = "",
    organization: str = "",
) -> bytes:
    """A PEM CSR for an official's document-signing certificate, signed by the official's key."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(full_name, title=position, organization=organization))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + str(agency))]
            ),
            critical=False,
        )
        .sign(signer_key, None)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    """A parsed, signature-checked CSR.

    Attributes:
        kind: ``"node"`` (it names a peer ID) or ``"signer"``.
        agency: the agency code it asks to be certified for.
        name: subject commonName (the agency's name, or the official's full name).
        position: subject title (officials).
        organization: subject organizationName.
        public_key: the key to certify.
        peer: the peer ID (nodes; it is the peer ID of ``public_key``).
        x25519_public: the key agreement key (nodes).
    """

    kind: Literal["node", "signer"]
    agency: AgencyCode
    name: str
    position: str
    organization: str
    public_key: PublicKey
    peer: PeerId | None
    x25519_public: bytes | None


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def parse_request(data: bytes) -> EnrolmentRequest:
    """Parse and check a PEM (or DER) CSR written by :func:`node_request` or
    :func:`signer_request`.

    Raises:
        DecodeError: not a CSR, over 64 KiB, or missing or malformed p2pdoc fields.
        SignatureInvalid: the request is not signed by the key it names.
    """
    if len(data) > 64 << 10:
        raise DecodeError("an enrolment request is at most 64 KiB")
    try:
        csr = (
            x509.load_pem_x509_csr(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_csr(data)
        )
        valid = csr.is_signature_valid
        public_key = csr.public_key()
        subject = csr.subject
        extensions = list(csr.extensions)
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature) as exc:
        raise DecodeError(f"not a certificate signing request: {type(exc).__name__}") from None
    if not valid:
        raise SignatureInvalid("the request is not signed by the key it names")
    if key_algorithm_of(public_key) is None:
        raise DecodeError("the request's key type is not supported")
    agency: AgencyCode | None = None
    peer: PeerId | None = None
    x25519_public: bytes | None = None
    try:
        for extension in extensions:
            value = extension.value
            if isinstance(value, x509.SubjectAlternativeName):
                for uri in value.get_values_for_type(x509.UniformResourceIdentifier):
                    if uri.startswith(AGENCY_URI_PREFIX):
                        agency = AgencyCode(uri[len(AGENCY_URI_PREFIX) :])
                    elif uri.startswith(PEER_URI_PREFIX):
                        peer = PeerId.parse(uri[len(PEER_URI_PREFIX) :])
            elif extension.oid == OID_KEY_AGREEMENT and isinstance(
                value, x509.UnrecognizedExtension
            ):
                key = serialization.load_der_public_key(value.value)
                if not isinstance(key, x25519.X25519PublicKey):
                    raise DecodeError("the key agreement extension is not an X25519 key")
                x25519_public = key.public_bytes_raw()
    except (InvalidValue, ValueError, UnsupportedAlgorithm) as exc:
        raise DecodeError(f"malformed enrolment request: {exc}") from None
    if agency is None:
        raise DecodeError("the request names no agency code (urn:p2pdoc:agency:...)")
    name = _attribute(subject, NameOID.COMMON_NAME)
    if not name:
        raise DecodeError("the request has no subject common name")
    if peer is not None:
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise DecodeError("a node request must carry the node's Ed25519 key")
        if PeerId.from_ed25519(public_key.public_bytes_raw()) != peer:
            raise DecodeError("the request's peer ID is not the peer ID of its key")
        if x25519_public is None:
            raise DecodeError("a node request must carry its X25519 key agreement key")
    return EnrolmentRequest(
        kind="node" if peer is not None else "signer",
        agency=agency,
        name=name,
        position=_attribute(subject, NameOID.TITLE),
        organization=_attribute(subject, NameOID.ORGANIZATION_NAME),
        public_key=public_key,  # type: ignore[arg-type]
        peer=peer,
        x25519_public=x25519_public,
    )


def create_identity_keys(
    key_dir: Path, *, agency: AgencyCode, name: str, passphrase: str | None
) -> tuple[PeerId, bytes]:
    """Generate the node's Ed25519 and X25519 keys into ``key_dir`` (mode 0600, encrypted
    under ``passphrase`` if given) and write its enrolment request there.

    Returns:
        The node's peer ID and the request (PEM), also written to ``node-request.csr``.

    Raises:
        KeyFileError: a key file already exists or cannot be written.
    """
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    node_key = ed25519.Ed25519PrivateKey.generate()
    agreement = AgreementKey.generate()
    save_key(key_dir / NODE_KEY_FILE, SigningKey(node_key), passphrase=passphrase)
    save_key(key_dir / AGREEMENT_KEY_FILE, agreement, passphrase=passphrase)
    request = node_request(node_key, agreement.public_bytes, agency=agency, name=name)
    _write_atomic(key_dir / NODE_REQUEST_FILE, request)
    return PeerId.from_ed25519(node_key.public_key().public_bytes_raw()), request


def create_signer_key(
    key_path: Path,
    *,
    agency: AgencyCode,
    full_name: str,
    position: str = "",
    organization: str = "",
    passphrase: str | None,
) -> bytes:
    """Generate an official's Ed25519 key at ``key_path`` and write its request beside it
    (``.csr``). Returns the request (PEM).

    Raises:
        KeyFileError: the key file exists or cannot be written.
    """
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    save_key(key_path, SigningKey(key), passphrase=passphrase)
    request = signer_request(
        key, agency=agency, full_name=full_name, position=position, organization=organization
    )
    _write_atomic(key_path.with_suffix(".csr"), request)
    return request


# -- CA directories -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    """One line of a CA's register."""

    serial: int
    kind: str
    agency: str
    subject: str
    peer: str
    not_after: str
    issued_at: str
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "serial": f"{self.serial:x}",
                "kind": self.kind,
                "agency": self.agency,
                "subject": self.subject,
                "peer": self.peer,
                "not_after": self.not_after,
                "issued_at": self.issued_at,
                "fingerprint": self.fingerprint,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str) -> Issued:
        value = json.loads(line)
        return cls(
            serial=int(value["serial"], 16),
            kind=value["kind"],
            agency=value["agency"],
            subject=value["subject"],
            peer=value["peer"],
            not_after=value["not_after"],
            issued_at=value["issued_at"],
            fingerprint=value["fingerprint"],
        )


class CaDirectory:
    """A certificate authority kept in a directory (see the module docstring)."""

    def __init__(self, path: Path, authority: CertificateAuthority, root: bytes) -> None:
        self.path = path
        self.authority = authority
        self.root = root

    def __repr__(self) -> str:
        return f"CaDirectory({str(self.path)!r}, {self.authority!r})"

    @staticmethod
    def _prepare(path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (path / CA_KEY_FILE).exists():
            raise KeyFileError(str(path / CA_KEY_FILE), "already exists; refusing to overwrite")

    @classmethod
    def create_root(
        cls, path: Path, *, name: str, now: _dt.datetime, passphrase: str | None = None
    ) -> CaDirectory:
        """Create the national root CA in ``path``.

        Raises:
            KeyFileError: ``path`` already holds a CA key.
            InvalidValue: a bad name.
        """
        cls._prepare(path)
        key = SigningKey(ed25519.Ed25519PrivateKey.generate())
        authority = CertificateAuthority.create_root(name=name, key=key, now=now)
        save_key(path / CA_KEY_FILE, key, passphrase=passphrase)
        write_pem_chain(path / CA_CHAIN_FILE, authority.chain)
        write_pem_chain(path / ROOT_FILE, [authority.certificate])
        return cls(path, authority, authority.certificate)

    @classmethod
    def create_sub(
        cls,
        path: Path,
        parent: CaDirectory,
        *,
        agency: AgencyCode,
        name: str,
        now: _dt.datetime,
        passphrase: str | None = None,
    ) -> CaDirectory:
        """Create a sub-CA for ``agency``'s subtree in ``path``, certified by ``parent``.

        Raises:
            KeyFileError: ``path`` already holds a CA key.
            OutsideSubtree, ChainInvalid: ``parent`` may not certify it.
        """
        cls._prepare(path)
        key = SigningKey(ed25519.Ed25519PrivateKey.generate())
        chain = parent.authority.issue_sub_ca(
            agency=agency, name=name, public_key=key.public_key, now=now
        )
        authority = CertificateAuthority(key, chain)
        save_key(path / CA_KEY_FILE, key, passphrase=passphrase)
        write_pem_chain(path / CA_CHAIN_FILE, chain)
        write_pem_chain(path / ROOT_FILE, [parent.root])
        parent._register(chain[0], now)
        return cls(path, authority, parent.root)

    @classmethod
    def open(cls, path: Path, *, passphrase: str | None = None) -> CaDirectory:
        """Load the CA in ``path``.

        Raises:
            KeyFileError: the key is missing, readable by others, or needs another passphrase.
            ConfigError: the chain or root file is unusable.
        """
        key = load_signing_key(path / CA_KEY_FILE, passphrase=passphrase)
        chain = read_certificates(path / CA_CHAIN_FILE)
        roots = read_certificates(path / ROOT_FILE)
        if not roots:
            raise ConfigError(str(path / ROOT_FILE), "holds no certificate")
        try:
            authority = CertificateAuthority(key, chain)
        except InvalidValue as exc:
            raise ConfigError(str(path / CA_CHAIN_FILE), str(exc)) from None
        return cls(path, authority, roots[0])

    # -- issuing ------------------------------------------------------------------------

    def _register(self, der: bytes, now: _dt.datetime) -> Issued:
        info = parse_certificate(der)
        entry = Issued(
            serial=info.serial,
            kind=str(info.kind),
            agency=str(info.agency) if info.agency is not None else "",
            subject=info.subject,
            peer=str(info.peer) if info.peer is not None else "",
            not_after=info.not_after.isoformat(),
            issued_at=now.isoformat(),
            fingerprint=info.fingerprint.hex(),
        )
        with open(self.path / REGISTER_FILE, "a", encoding="utf-8") as handle:
            handle.write(entry.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def issue(
        self,
        request: EnrolmentRequest,
        *,
        now: _dt.datetime,
        lifetime: _dt.timedelta = DEFAULT_LEAF_LIFETIME,
    ) -> tuple[tuple[bytes, ...], Issued]:
        """Certify a checked request; returns the new chain (leaf first) and its register line.

        Raises:
            OutsideSubtree: the agency is outside this CA's subtree.
            InvalidValue: the request cannot be certified (key type, names).
        """
        if request.kind == "node":
            assert request.x25519_public is not None
            node_key = request.public_key
            if not isinstance(node_key, ed25519.Ed25519PublicKey):
                raise InvalidValue("a node key must be Ed25519")
            chain = self.authority.issue_node(
                agency=request.agency,
                name=request.name,
                node_key=node_key,
                x25519_public=request.x25519_public,
                now=now,
                organization=request.organization,
                lifetime=lifetime,
            )
        else:
            chain = self.authority.issue_signer(
                agency=request.agency,
                full_name=request.name,
                public_key=request.public_key,
                now=now,
                position=request.position,
                organization=request.organization,
                lifetime=lifetime,
            )
        return chain, self._register(chain[0], now)

    def register(self) -> list[Issued]:
        """Everything this CA issued, oldest first."""
        path = self.path / REGISTER_FILE
        if not path.exists():
            return []
        return [
            Issued.from_json(line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]

    # -- revoking -----------------------------------------------------------------------

    def revocation_list(self) -> RevocationList | None:
        """The latest list this CA issued, None before the first."""
        path = self.path / CRL_FILE
        if not path.exists():
            return None
        return read_revocation_bundle(path)[0]

    def revoke(self, serials: Sequence[int], *, now: _dt.datetime) -> RevocationList:
        """Issue a new revocation list adding ``serials`` and write ``crl.pem`` (the list and
        this CA's chain, ready to copy into nodes' ``trust/crl/`` directories).

        Raises:
            InvalidValue: no serials.
        """
        if not serials:
            raise InvalidValue("name at least one certificate serial to revoke")
        crl = self.authority.issue_revocation_list(
            revoked=list(serials), now=now, previous=self.revocation_list()
        )
        pem = x509.load_der_x509_crl(crl.to_bytes()).public_bytes(serialization.Encoding.PEM)
        chain = [] if self.authority.is_root else list(self.authority.chain)
        pem += b"".join(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            for der in chain
        )
        _write_atomic(self.path / CRL_FILE, pem)
        return crl
