"""Node signatures: domain-separated, verifiable from an admitted node's certificate."""

from __future__ import annotations

import pytest

from p2pdoc.codecs import cbor
from p2pdoc.errors import InvalidValue, SignatureInvalid
from p2pdoc.model import Cid, Multicodec
from p2pdoc.trust import (
    AgreementKey,
    NodeIdentity,
    SigningKey,
    signed_bytes,
    verify_node_chain,
    verify_node_signature,
)

from .conftest import NOW, Pki

RECEIPT = "p2pdoc/receipt/v1"
FIELDS = {"root": Cid.of(Multicodec.DAG_CBOR, b"doc"), "recipient": "000.00.00.H41", "at": 1}


def test_node_signature_verifies_from_its_admitted_certificate(pki: Pki) -> None:
    node = pki.h41_node
    admitted = verify_node_chain(node.chain, expected_peer=node.peer_id, trust=pki.trust(), now=NOW)
    signature = node.sign(RECEIPT, FIELDS)
    verify_node_signature(admitted, RECEIPT, FIELDS, signature)
    assert signed_bytes(RECEIPT, FIELDS) == cbor.encode({**FIELDS, "ctx": RECEIPT})


def test_signatures_are_domain_separated(pki: Pki) -> None:
    node = pki.h41_node
    admitted = verify_node_chain(node.chain, expected_peer=node.peer_id, trust=pki.trust(), now=NOW)
    signature = node.sign(RECEIPT, FIELDS)
    with pytest.raises(SignatureInvalid):
        verify_node_signature(admitted, "p2pdoc/status-report/v1", FIELDS, signature)
    with pytest.raises(SignatureInvalid):
        verify_node_signature(admitted, RECEIPT, {**FIELDS, "at": 2}, signature)


def test_signature_by_another_node_is_rejected(pki: Pki) -> None:
    admitted = verify_node_chain(
        pki.h41_node.chain, expected_peer=pki.h41_node.peer_id, trust=pki.trust(), now=NOW
    )
    with pytest.raises(SignatureInvalid):
        verify_node_signature(admitted, RECEIPT, FIELDS, pki.h49_node.sign(RECEIPT, FIELDS))


def test_context_rules() -> None:
    for context in ("receipt", "p2pdoc/Receipt/v1", "p2pdoc/receipt/v0", "other/receipt/v1"):
        with pytest.raises(InvalidValue):
            signed_bytes(context, FIELDS)
    with pytest.raises(InvalidValue):
        signed_bytes(RECEIPT, {"ctx": "p2pdoc/other/v1"})


def test_identity_refuses_keys_its_chain_does_not_certify(pki: Pki) -> None:
    node = pki.h49_node
    with pytest.raises(InvalidValue):
        NodeIdentity(
            signing_key=SigningKey.generate(), agreement_key=node.agreement_key, chain=node.chain
        )
    with pytest.raises(InvalidValue):
        NodeIdentity(
            signing_key=node.signing_key, agreement_key=AgreementKey.generate(), chain=node.chain
        )
    with pytest.raises(InvalidValue):
        NodeIdentity(
            signing_key=pki.signers[0].key,
            agreement_key=node.agreement_key,
            chain=pki.signers[0].chain,
        )


def test_libp2p_identity_key_is_the_certified_key(pki: Pki) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    node = pki.h49_node
    raw = node.signing_key.ed25519_private_bytes()
    public = ed25519.Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    from p2pdoc.model import PeerId

    assert PeerId.from_ed25519(public) == node.peer_id
    assert "NodeIdentity(000.00.00.H49" in repr(node)
