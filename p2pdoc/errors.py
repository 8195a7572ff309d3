"""Every error p2pdoc raises, in one tree.

Callers catch by branch: a decoder raises :class:`DecodeError` whatever went wrong inside it,
a verifier raises a subclass of :class:`VerificationError` naming the exact rule that failed,
and errors of foreign libraries (cbor2, sqlite3, cryptography, libp2p) are translated at the
edge with ``raise ... from exc`` so that nothing else escapes a public call::

    P2pdocError
    ├── InvalidValue                 a value breaks its own rules (agency code, document id,
    │   │                            CID text, envelope field); also a ValueError
    │   ├── ConfigError              a configuration key is missing or wrong
    │   │   └── KeyFileError         a private key file cannot be used (permissions, wrong
    │   │                            or missing passphrase, wrong key type, already exists)
    │   └── InvalidField             a field of a client's request is missing or wrong
    │                                (the daemon's HTTP API); names the field
    ├── DecodeError                  bytes that do not decode (malformed, truncated,
    │   │                            non-canonical, unexpected type or tag)
    │   └── LimitExceeded            a declared or actual size over a configured limit
    ├── VerificationError            integrity and authenticity: the input decoded, but is
    │   │                            not what it claims to be
    │   ├── ContentMismatch          bytes do not hash to the CID they were fetched for
    │   ├── SignatureInvalid         a signature does not verify under the key it names
    │   │   └── SignatureRootMismatch  the signature was made over another document root
    │   ├── SignerNotAuthorised      a valid signature by an official outside the sender agency
    │   ├── CertificateRejected      a certificate chain fails validation; ``reason`` says
    │   │   │                        which rule, the subclasses name the common ones
    │   │   ├── CertificateExpired
    │   │   ├── CertificateNotYetValid
    │   │   ├── CertificateRevoked
    │   │   ├── OutsideSubtree       issuer may not certify that agency code
    │   │   ├── WrongKeyUsage
    │   │   ├── UnknownIssuer
    │   │   ├── PeerIdMismatch       certificate binds another peer ID than the connection's
    │   │   ├── CertificateMalformed not a parseable certificate of the p2pdoc profile
    │   │   └── ChainInvalid         a link of the chain is broken: issuer signature, basic
    │   │                            constraints, path length, critical extension, algorithm
    │   ├── RevocationListInvalid    a revocation list is not signed by its CA or conflicts
    │   ├── SealInvalid              sealed content, header or wrapped key fails
    │   │                            authentication (altered, truncated, reordered)
    │   ├── NotARecipient            a sealed document holds no key for this node
    │   ├── ReceiptInvalid           a delivery receipt fails verification
    │   └── StatusTrailBroken        a status report does not chain to its predecessor
    ├── PolicyRefused                the classification policy forbids this send
    ├── StoreError                   the store could not complete an operation
    │   ├── NotFound                 no such block, document or record (also a LookupError)
    │   ├── StorageFull              the disk or quota is full; nothing was half-written
    │   └── StoreCorrupt             the store's files fail their own consistency checks
    ├── ProtocolError                a conversation broke the protocol's rules
    │   ├── LocalProtocolError       this side misused a session (a bug or a closed session)
    │   └── RemoteProtocolError      the peer sent something the protocol forbids
    │       └── AdmissionRefused     the peer failed admission (its certificate, code or ID)
    ├── NetworkError                 the transport failed
    │   ├── PeerUnreachable          no connection could be made
    │   └── ConnectionLost           an established connection or stream broke
    └── DeliveryError                a document could not be delivered; says to whom and why
        └── DeadlineExceeded         the per-document deadline passed before a receipt came

No message text ever includes private key material or passphrases.
"""

from __future__ import annotations

__all__ = [
    "AdmissionRefused",
    "CertificateExpired",
    "CertificateMalformed",
    "CertificateNotYetValid",
    "CertificateRejected",
    "CertificateRevoked",
    "ChainInvalid",
    "ConfigError",
    "ConnectionLost",
    "ContentMismatch",
    "DeadlineExceeded",
    "DecodeError",
    "DeliveryError",
    "InvalidField",
    "InvalidValue",
    "KeyFileError",
    "LimitExceeded",
    "LocalProtocolError",
    "NetworkError",
    "NotARecipient",
    "NotFound",
    "OutsideSubtree",
    "P2pdocError",
    "PeerIdMismatch",
    "PeerUnreachable",
    "PolicyRefused",
    "ProtocolError",
    "ReceiptInvalid",
    "RemoteProtocolError",
    "RevocationListInvalid",
    "SealInvalid",
    "SignatureInvalid",
    "SignatureRootMismatch",
    "SignerNotAuthorised",
    "StatusTrailBroken",
    "StorageFull",
    "StoreCorrupt",
    "StoreError",
    "UnknownIssuer",
    "VerificationError",
    "WrongKeyUsage",
]


class P2pdocError(Exception):
    """Base of every error raised by p2pdoc."""


class InvalidValue(P2pdocError, ValueError):
    """A value breaks its own rules; the message says which rule."""


class ConfigError(InvalidValue):
    """A configuration value is missing or wrong.

    Attributes:
        key: the dotted configuration key, e.g. ``"network.listen"``.
        problem: what is wrong with it.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class KeyFileError(ConfigError):
    """A private key file cannot be used or written.

    The message names the file and the problem (mode readable by group or others, a missing
    or wrong passphrase, another key type than expected, an existing file) and never any key
    material or passphrase. ``key`` is the file's path.
    """


class InvalidField(InvalidValue):
    """A field of a client's request is missing or wrong.

    Attributes:
        field: the field's path, e.g. ``"to[1]"`` or ``"signer.full_name"``.
        problem: what is wrong with it.
        code: a stable token for clients: ``missing_field``, ``invalid_field``,
            ``unknown_field`` or ``unknown_agency``.
    """

    def __init__(self, field: str, problem: str, *, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.code = code


class DecodeError(P2pdocError):
    """Bytes that do not decode into the expected structure."""


class LimitExceeded(DecodeError):
    """A size, count or depth over its configured limit.

    Attributes:
        what: what was measured, e.g. ``"frame"``.
        size: the size declared or seen.
        limit: the configured maximum.
    """

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} of {size} exceeds the limit of {limit}")
        self.what = what
        self.size = size
        self.limit = limit


class VerificationError(P2pdocError):
    """Integrity or authenticity failed: the input is not what it claims to be."""


class ContentMismatch(VerificationError):
    """Bytes do not hash to the CID they were stored or fetched under.

    Attributes:
        cid: the text form of the expected CID.
    """

    def __init__(self, cid: str, detail: str = "content does not match its CID") -> None:
        super().__init__(f"{detail}: {cid}")
        self.cid = cid


class SignatureInvalid(VerificationError):
    """A signature does not verify under the key it names."""


class SignatureRootMismatch(SignatureInvalid):
    """A document signature names another document root than the one being verified."""


class SignerNotAuthorised(VerificationError):
    """A signature verifies, but its signer's agency may not sign for the document's sender."""


class CertificateRejected(VerificationError):
    """A certificate or chain failed validation.

    Attributes:
        reason: a short stable token naming the rule, e.g. ``"expired"``.
        subject: a human description of the certificate concerned.
    """

    reason = "rejected"

    def __init__(self, detail: str, *, subject: str = "", reason: str | None = None) -> None:
        text = f"{subject}: {detail}" if subject else detail
        super().__init__(text)
        self.subject = subject
        if reason is not None:
            self.reason = reason


class CertificateExpired(CertificateRejected):
    reason = "expired"


class CertificateNotYetValid(CertificateRejected):
    reason = "not-yet-valid"


class CertificateRevoked(CertificateRejected):
    reason = "revoked"


class OutsideSubtree(CertificateRejected):
    reason = "outside-subtree"


class WrongKeyUsage(CertificateRejected):
    reason = "wrong-key-usage"


class UnknownIssuer(CertificateRejected):
    reason = "unknown-issuer"


class PeerIdMismatch(CertificateRejected):
    reason = "peer-id-mismatch"


class CertificateMalformed(CertificateRejected):
    """Not a parseable X.509 certificate, or one missing a field the p2pdoc profile requires."""

    reason = "malformed"


class ChainInvalid(CertificateRejected):
    """A link of the chain is broken; ``reason`` says which rule.

    Tokens: ``bad-signature`` (the issuer did not sign it), ``not-a-ca`` (the issuer lacks
    basic constraints CA), ``path-length``, ``leaf-is-ca``, ``too-long``,
    ``unused-certificate`` (the chain holds a certificate outside the path),
    ``unknown-critical-extension``, ``weak-algorithm``, ``unsupported-key``.
    """

    reason = "bad-chain"


class RevocationListInvalid(VerificationError):
    """A revocation list is not signed by the CA it names, or contradicts one already held."""


class SealInvalid(VerificationError):
    """Sealed bytes fail authentication: altered, truncated, reordered, or under another key."""


class NotARecipient(VerificationError):
    """A sealed document holds no wrapped key for this agency and key agreement key."""


class ReceiptInvalid(VerificationError):
    """A delivery receipt does not verify or does not match the document it answers."""


class StatusTrailBroken(VerificationError):
    """A status report does not verify or does not chain to the previous one."""


class PolicyRefused(P2pdocError):
    """The classification policy forbids sending this document this way."""


class StoreError(P2pdocError):
    """The store could not complete an operation."""


class NotFound(StoreError, LookupError):
    """No such block, document or record."""


class StorageFull(StoreError):
    """The disk or a quota is full. The failed operation wrote nothing."""


class StoreCorrupt(StoreError):
    """The store's own consistency checks failed."""


class ProtocolError(P2pdocError):
    """A conversation broke the protocol's rules."""


class LocalProtocolError(ProtocolError):
    """This side misused a session (a programming error, or the session is closed)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class AdmissionRefused(RemoteProtocolError):
    """The peer failed admission: its certificate chain, agency code or peer ID."""


class NetworkError(P2pdocError):
    """The transport failed."""


class PeerUnreachable(NetworkError):
    """No connection to the peer could be made."""


class ConnectionLost(NetworkError):
    """An established connection or stream broke."""


class DeliveryError(P2pdocError):
    """A document could not be delivered to a recipient; the message says why."""


class DeadlineExceeded(DeliveryError):
    """The document's deadline passed before the recipient's receipt arrived."""
