"""Certificate authority operations: root, delegated sub-CAs, node and signer certificates."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pdoc.errors import ChainInvalid, InvalidValue, OutsideSubtree
from p2pdoc.model import AgencyCode, PeerId
from p2pdoc.trust import (
    CertificateAuthority,
    CertificateKind,
    CertificatePurpose,
    KeyAlgorithm,
    NodeIdentity,
    SigningKey,
    parse_certificate,
    verify_node_chain,
)
from p2pdoc.trust.profile import OID_KEY_AGREEMENT

from .conftest import H41, H49, H49_COMMUNE, H49_DEPT, NOW, Pki, make_signer, make_sub_ca


def test_a_national_pki_with_two_provinces_their_agencies_and_signers(pki: Pki) -> None:
    trust = pki.trust()
    for node in (pki.h49_node, pki.h49_dept_node, pki.h41_node):
        verified = verify_node_chain(node.chain, expected_peer=node.peer_id, trust=trust, now=NOW)
        assert verified.agency == node.agency
        assert verified.peer == node.peer_id
    for signer in (*pki.signers, pki.h41_signer):
        chain = trust.validate(signer.chain, purpose=CertificatePurpose.SIGNER, now=NOW)
        assert chain.path[-1].der == pki.root.certificate
    assert pki.h49.agency == H49 and pki.h41.agency == H41
    assert pki.root.agency is None and pki.root.is_root


def test_sub_ca_issues_inside_its_subtree(pki: Pki) -> None:
    for code in (H49, H49_DEPT, H49_COMMUNE):
        chain = make_signer(pki.h49, code, "Official").chain
        assert parse_certificate(chain[0]).agency == code


@pytest.mark.parametrize("code", ["000.00.00.H41", "000.05.00.H41", "000.00.00.G22"])
def test_sub_ca_refuses_to_issue_outside_its_subtree(pki: Pki, code: str) -> None:
    key = SigningKey.generate()
    with pytest.raises(OutsideSubtree):
        pki.h49.issue_signer(
            agency=AgencyCode(code), full_name="X", public_key=key.public_key, now=NOW
        )
    with pytest.raises(OutsideSubtree):
        NodeIdentity.issue(pki.h49, agency=AgencyCode(code), name="n", now=NOW)


def test_sub_ca_may_not_create_further_sub_cas(pki: Pki) -> None:
    key = SigningKey.generate()
    with pytest.raises(ChainInvalid) as info:
        pki.h49.issue_sub_ca(agency=H49_DEPT, name="dept CA", public_key=key.public_key, now=NOW)
    assert info.value.reason == "path-length"


def test_root_with_deeper_path_length_allows_nested_sub_cas() -> None:
    root = CertificateAuthority.create_root(
        name="Root", key=SigningKey.generate(), now=NOW, path_length=2
    )
    province = make_sub_ca(root, H49, "province")
    district = make_sub_ca(province, AgencyCode("000.00.03.H49"), "district")
    assert district.chain[1] == province.certificate
    with pytest.raises(OutsideSubtree):
        make_sub_ca(province, H41, "elsewhere")


def test_node_certificate_binds_code_peer_id_and_key_agreement_key(pki: Pki) -> None:
    node = pki.h49_dept_node
    info = parse_certificate(node.chain[0])
    assert info.kind is CertificateKind.NODE
    assert info.agency == H49_DEPT
    assert info.peer == node.peer_id
    assert info.peer == PeerId.from_ed25519(node.signing_key.public_key.public_bytes_raw())  # type: ignore[union-attr]
    assert info.x25519_public == node.agreement_key.public_bytes
    cert = x509.load_der_x509_certificate(node.chain[0])
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"urn:p2pdoc:agency:{H49_DEPT}" in uris.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert f"urn:p2pdoc:peer:{node.peer_id}" in uris.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    agreement = cert.extensions.get_extension_for_oid(OID_KEY_AGREEMENT)
    assert not agreement.critical  # tools that do not know it may ignore it


def test_signer_certificate_names_the_official(pki: Pki) -> None:
    info = parse_certificate(pki.signers[0].chain[0])
    assert info.kind is CertificateKind.SIGNER
    assert (info.common_name, info.title, info.agency) == ("Nguyễn Văn An", "Chủ tịch", H49)
    cert = x509.load_der_x509_certificate(pki.signers[0].chain[0])
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign


def test_ca_certificates_carry_ca_constraints(pki: Pki) -> None:
    root = parse_certificate(pki.root.certificate)
    sub = parse_certificate(pki.h49.certificate)
    assert (root.is_ca, root.path_length, root.agency) == (True, 1, None)
    assert (sub.is_ca, sub.path_length, sub.agency) == (True, 0, H49)
    assert sub.key_cert_sign and sub.crl_sign


def test_issued_chains_exclude_the_root(pki: Pki) -> None:
    assert pki.h49_node.chain == (pki.h49_node.chain[0], pki.h49.certificate)
    direct = make_signer(pki.root, AgencyCode("000.00.00.G22"), "Central official")
    assert len(direct.chain) == 1  # the root itself may certify directly


def test_leaf_validity_never_outlasts_its_ca() -> None:
    root = CertificateAuthority.create_root(
        name="Short root", key=SigningKey.generate(), now=NOW, lifetime=dt.timedelta(days=30)
    )
    signer = make_signer(root, H49, "A")
    assert (
        parse_certificate(signer.chain[0]).not_after
        == parse_certificate(root.certificate).not_after
    )


def test_node_key_must_be_ed25519(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        pki.h49.issue_node(
            agency=H49,
            name="n",
            node_key=SigningKey.generate(KeyAlgorithm.ECDSA_P256).public_key,  # type: ignore[arg-type]
            x25519_public=bytes(32),
            now=NOW,
        )
    with pytest.raises(InvalidValue):
        pki.h49.issue_node(
            agency=H49,
            name="n",
            node_key=ed25519.Ed25519PrivateKey.generate().public_key(),
            x25519_public=b"short",
            now=NOW,
        )


def test_ca_object_refuses_a_key_that_is_not_its_certificates(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        CertificateAuthority(SigningKey.generate(), pki.h49.chain)
    with pytest.raises(InvalidValue):
        CertificateAuthority(pki.signers[0].key, pki.signers[0].chain)  # not a CA


def test_ca_repr_shows_no_key_material(pki: Pki) -> None:
    text = repr(pki.h49) + repr(pki.h49.key)
    raw = pki.h49.key._private().private_bytes_raw()  # type: ignore[union-attr]
    assert raw.hex() not in text
    assert "000.00.00.H49" in repr(pki.h49)
