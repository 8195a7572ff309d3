"""The trust layer: national PKI with delegated issuance, chain validation, revocation
lists, node identity, multi-signature documents, sealed documents and keys at rest.

See ``docs/trust-model.md`` for what is signed, by whom, with which key, and what a
verifier checks, in order.
"""

from p2pdoc.model.manifest import SealInfo, SealRecipient
from p2pdoc.trust.ca import CertificateAuthority, build_certificate
from p2pdoc.trust.identity import NodeIdentity, signed_bytes, verify_node_signature
from p2pdoc.trust.keys import (
    AgreementKey,
    KeyAlgorithm,
    SignatureAlgorithm,
    SigningKey,
    load_agreement_key,
    load_signing_key,
    save_key,
    verify_signature,
)
from p2pdoc.trust.policy import ClassificationPolicy, Handling
from p2pdoc.trust.profile import CertificateInfo, CertificateKind, parse_certificate
from p2pdoc.trust.revocation import RevocationList
from p2pdoc.trust.sealing import (
    ContentKey,
    DocumentSealer,
    OpenedSeal,
    PlainFile,
    RecipientKey,
    SegmentOpener,
    SegmentSealer,
    open_sealed_manifest,
    open_stream,
    routing_envelope,
    seal_stream,
    sealed_size,
)
from p2pdoc.trust.signatures import (
    DocumentRole,
    DocumentSignature,
    SignatureSet,
    SignerIdentity,
    VerificationCache,
    VerifiedSignature,
    document_signature_payload,
    sign_document,
    verify_document_signatures,
)
from p2pdoc.trust.validation import (
    CertificatePurpose,
    RevocationCheck,
    TrustStore,
    VerifiedChain,
    VerifiedNode,
    verify_node_chain,
)

__all__ = [
    "AgreementKey",
    "CertificateAuthority",
    "CertificateInfo",
    "CertificateKind",
    "CertificatePurpose",
    "ClassificationPolicy",
    "ContentKey",
    "DocumentRole",
    "DocumentSealer",
    "DocumentSignature",
    "Handling",
    "KeyAlgorithm",
    "NodeIdentity",
    "OpenedSeal",
    "PlainFile",
    "RecipientKey",
    "RevocationCheck",
    "RevocationList",
    "SealInfo",
    "SealRecipient",
    "SegmentOpener",
    "SegmentSealer",
    "SignatureAlgorithm",
    "SignatureSet",
    "SignerIdentity",
    "SigningKey",
    "TrustStore",
    "VerificationCache",
    "VerifiedChain",
    "VerifiedNode",
    "VerifiedSignature",
    "build_certificate",
    "document_signature_payload",
    "load_agreement_key",
    "load_signing_key",
    "open_sealed_manifest",
    "open_stream",
    "parse_certificate",
    "routing_envelope",
    "save_key",
    "seal_stream",
    "sealed_size",
    "sign_document",
    "signed_bytes",
    "verify_document_signatures",
    "verify_node_chain",
    "verify_node_signature",
    "verify_signature",
]
