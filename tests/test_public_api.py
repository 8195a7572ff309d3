"""The top-level package exports exactly the documented public API, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import p2pdoc

PUBLIC = {
    "AgencyCode", "BusinessInfo", "BusinessType", "CertificateAuthority", "Cid", "Classification",
    "ClassificationPolicy", "DeliveryConfig", "Document", "DocumentId", "DocumentRole",
    "DocumentSigners", "DocumentType", "Envelope", "EvidenceConfig", "Faults", "FileEntry",
    "FileSource", "IdentityCredentials", "InboxItem", "InboxState", "Libp2pConfig",
    "Libp2pNetwork", "Manifest", "MemoryNetwork", "MemoryRouter", "MemoryStore", "Mesh",
    "Multicodec", "Network", "Node", "NodeConfig", "NodeIdentity", "Organization", "OutboxEntry",
    "OutboxState", "P2pdocError", "PeerDirectory", "PeerId", "PeerRecord", "Priority",
    "ReceiveConfig", "Receipt", "ResponseFor", "RetryPolicy", "RevocationList", "SQLiteConfig",
    "SQLiteStore", "SendHandle", "SessionLimits", "SignaturePolicy", "SignerInfo", "SigningKey",
    "Staff", "StatusCode", "StatusReport", "StatusTrail", "SteeringType", "Store", "TrioWallClock",
    "TrustGate", "TrustStore", "verify_evidence",
}  # fmt: skip


def test_all_is_exactly_the_public_api() -> None:
    assert set(p2pdoc.__all__) == PUBLIC
    assert set(p2pdoc._EXPORTS) == PUBLIC
    assert p2pdoc.__all__ == sorted(p2pdoc.__all__)


def test_every_exported_name_resolves() -> None:
    for name in p2pdoc.__all__:
        assert getattr(p2pdoc, name) is not None, name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        p2pdoc.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_package_does_not_load_libp2p() -> None:
    code = "import sys, p2pdoc; p2pdoc.AgencyCode; print('libp2p' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
