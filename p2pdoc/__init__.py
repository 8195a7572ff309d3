"""p2pdoc: peer-to-peer exchange of signed official documents between government agencies.

The public API is re-exported here; everything else is private to its module. Names load on
first use, so ``import p2pdoc`` stays cheap (libp2p is imported only when a network or node
name is used). See ``docs/api.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # values and identifiers
    "AgencyCode": "p2pdoc.model",
    "BusinessInfo": "p2pdoc.model",
    "BusinessType": "p2pdoc.model",
    "Cid": "p2pdoc.model",
    "Classification": "p2pdoc.model",
    "DocumentId": "p2pdoc.model",
    "DocumentType": "p2pdoc.model",
    "Envelope": "p2pdoc.model",
    "FileEntry": "p2pdoc.model",
    "Manifest": "p2pdoc.model",
    "Multicodec": "p2pdoc.model",
    "Organization": "p2pdoc.model",
    "PeerId": "p2pdoc.model",
    "Priority": "p2pdoc.model",
    "ResponseFor": "p2pdoc.model",
    "SignerInfo": "p2pdoc.model",
    "SteeringType": "p2pdoc.model",
    # delivery evidence and states
    "InboxState": "p2pdoc.delivery.states",
    "OutboxEntry": "p2pdoc.delivery.states",
    "OutboxState": "p2pdoc.delivery.states",
    "Receipt": "p2pdoc.delivery.evidence",
    "RetryPolicy": "p2pdoc.delivery.retry",
    "Staff": "p2pdoc.delivery.evidence",
    "StatusCode": "p2pdoc.delivery.evidence",
    "StatusReport": "p2pdoc.delivery.evidence",
    "verify_evidence": "p2pdoc.delivery.evidence",
    # the node
    "DeliveryConfig": "p2pdoc.node",
    "Document": "p2pdoc.node",
    "EvidenceConfig": "p2pdoc.node",
    "FileSource": "p2pdoc.node",
    "InboxItem": "p2pdoc.node",
    "Node": "p2pdoc.node",
    "NodeConfig": "p2pdoc.node",
    "PeerDirectory": "p2pdoc.node",
    "PeerRecord": "p2pdoc.node",
    "ReceiveConfig": "p2pdoc.node",
    "SendHandle": "p2pdoc.node",
    "SessionLimits": "p2pdoc.protocol.session",
    "StatusTrail": "p2pdoc.node",
    "TrioWallClock": "p2pdoc.node",
    "DocumentSigners": "p2pdoc.node.trustgate",
    "IdentityCredentials": "p2pdoc.node.trustgate",
    "SignaturePolicy": "p2pdoc.node.trustgate",
    "TrustGate": "p2pdoc.node.trustgate",
    # trust
    "CertificateAuthority": "p2pdoc.trust",
    "ClassificationPolicy": "p2pdoc.trust",
    "DocumentRole": "p2pdoc.trust",
    "NodeIdentity": "p2pdoc.trust",
    "RevocationList": "p2pdoc.trust",
    "SigningKey": "p2pdoc.trust",
    "TrustStore": "p2pdoc.trust",
    # stores
    "MemoryStore": "p2pdoc.store",
    "SQLiteConfig": "p2pdoc.store",
    "SQLiteStore": "p2pdoc.store",
    "Store": "p2pdoc.store",
    # networks
    "Faults": "p2pdoc.network",
    "Libp2pConfig": "p2pdoc.network",
    "Libp2pNetwork": "p2pdoc.network",
    "MemoryNetwork": "p2pdoc.network",
    "MemoryRouter": "p2pdoc.network",
    "Network": "p2pdoc.network",
    # simulation
    "Mesh": "p2pdoc.simulation",
    # errors (the whole tree is in p2pdoc.errors)
    "P2pdocError": "p2pdoc.errors",
}

__all__ = [
    "AgencyCode",
    "BusinessInfo",
    "BusinessType",
    "CertificateAuthority",
    "Cid",
    "Classification",
    "ClassificationPolicy",
    "DeliveryConfig",
    "Document",
    "DocumentId",
    "DocumentRole",
    "DocumentSigners",
    "DocumentType",
    "Envelope",
    "EvidenceConfig",
    "Faults",
    "FileEntry",
    "FileSource",
    "IdentityCredentials",
    "InboxItem",
    "InboxState",
    "Libp2pConfig",
    "Libp2pNetwork",
    "Manifest",
    "MemoryNetwork",
    "MemoryRouter",
    "MemoryStore",
    "Mesh",
    "Multicodec",
    "Network",
    "Node",
    "NodeConfig",
    "NodeIdentity",
    "Organization",
    "OutboxEntry",
    "OutboxState",
    "P2pdocError",
    "PeerDirectory",
    "PeerId",
    "PeerRecord",
    "Priority",
    "Receipt",
    "ReceiveConfig",
    "ResponseFor",
    "RetryPolicy",
    "RevocationList",
    "SQLiteConfig",
    "SQLiteStore",
    "SendHandle",
    "SessionLimits",
    "SignaturePolicy",
    "SignerInfo",
    "SigningKey",
    "Staff",
    "StatusCode",
    "StatusReport",
    "StatusTrail",
    "SteeringType",
    "Store",
    "TrioWallClock",
    "TrustGate",
    "TrustStore",
    "verify_evidence",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pdoc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from p2pdoc.delivery.evidence import (
        Receipt,
        Staff,
        StatusCode,
        StatusReport,
        verify_evidence,
    )
    from p2pdoc.delivery.retry import RetryPolicy
    from p2pdoc.delivery.states import InboxState, OutboxEntry, OutboxState
    from p2pdoc.errors import P2pdocError
    from p2pdoc.model import (
        AgencyCode,
        BusinessInfo,
        BusinessType,
        Cid,
        Classification,
        DocumentId,
        DocumentType,
        Envelope,
        FileEntry,
        Manifest,
        Multicodec,
        Organization,
        PeerId,
        Priority,
        ResponseFor,
        SignerInfo,
        SteeringType,
    )
    from p2pdoc.network import (
        Faults,
        Libp2pConfig,
        Libp2pNetwork,
        MemoryNetwork,
        MemoryRouter,
        Network,
    )
    from p2pdoc.node import (
        DeliveryConfig,
        Document,
        EvidenceConfig,
        FileSource,
        InboxItem,
        Node,
        NodeConfig,
        PeerDirectory,
        PeerRecord,
        ReceiveConfig,
        SendHandle,
        StatusTrail,
        TrioWallClock,
    )
    from p2pdoc.node.trustgate import (
        DocumentSigners,
        IdentityCredentials,
        SignaturePolicy,
        TrustGate,
    )
    from p2pdoc.protocol.session import SessionLimits
    from p2pdoc.simulation import Mesh
    from p2pdoc.store import MemoryStore, SQLiteConfig, SQLiteStore, Store
    from p2pdoc.trust import (
        CertificateAuthority,
        ClassificationPolicy,
        DocumentRole,
        NodeIdentity,
        RevocationList,
        SigningKey,
        TrustStore,
    )
