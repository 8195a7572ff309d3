"""Value types: identifiers, the envelope header and the document manifest.

Immutable, validated on construction, convertible to canonical-CBOR values.
"""

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.model.envelope import (
    BusinessInfo,
    BusinessType,
    Classification,
    DocumentType,
    Envelope,
    Organization,
    Priority,
    ResponseFor,
    SignerInfo,
    SteeringType,
)
from p2pdoc.model.ids import AgencyCode, DocumentId, PeerId
from p2pdoc.model.manifest import FileEntry, Manifest

__all__ = [
    "AgencyCode",
    "BusinessInfo",
    "BusinessType",
    "Cid",
    "Classification",
    "DocumentId",
    "DocumentType",
    "Envelope",
    "FileEntry",
    "Manifest",
    "Multicodec",
    "Organization",
    "PeerId",
    "Priority",
    "ResponseFor",
    "SignerInfo",
    "SteeringType",
]
