"""Chain validation: every rule, each rejected with its own typed error and reason."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.x509.oid import NameOID

from p2pdoc.errors import (
    CertificateExpired,
    CertificateMalformed,
    CertificateNotYetValid,
    CertificateRejected,
    ChainInvalid,
    InvalidValue,
    OutsideSubtree,
    PeerIdMismatch,
    UnknownIssuer,
    WrongKeyUsage,
)
from p2pdoc.model import AgencyCode, PeerId
from p2pdoc.trust import (
    CertificateAuthority,
    CertificatePurpose,
    SigningKey,
    TrustStore,
    build_certificate,
    parse_certificate,
    verify_node_chain,
)
from p2pdoc.trust.profile import (
    AGENCY_URI_PREFIX,
    OID_DOCUMENT_SIGNING,
    OID_KEY_AGREEMENT,
    OID_NODE,
)

from .conftest import H41, H41_DEPT, H49, H49_DEPT, NOW, Pki, make_signer, make_sub_ca

SIGNER = CertificatePurpose.SIGNER


def _leaf(
    issuer: CertificateAuthority,
    *,
    agency: AgencyCode | None = H49_DEPT,
    ca: bool = False,
    path_length: int | None = None,
    key_usage: x509.KeyUsage | None = None,
    eku: tuple[x509.ObjectIdentifier, ...] = (OID_DOCUMENT_SIGNING,),
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=100),
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    key: SigningKey | None = None,
) -> tuple[SigningKey, tuple[bytes, ...]]:
    """A certificate built without the CA's issuance checks, to break one rule."""
    key = key or SigningKey.generate()
    der = build_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rule breaker")]),
        public_key=key.public_key,
        issuer_name=issuer.info.subject_name,
        issuer_key=issuer.key,
        not_before=not_before,
        not_after=not_after,
        ca=ca,
        path_length=path_length,
        key_usage=key_usage,
        extended_key_usage=eku,
        uris=(AGENCY_URI_PREFIX + str(agency),) if agency is not None else (),
        extra=extra,
    )
    chain = (der,) if issuer.is_root else (der, *issuer.chain)
    return key, chain


def test_valid_chain_reports_path_fingerprints_and_list_versions(pki: Pki) -> None:
    trust = pki.trust()
    chain = trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW)
    assert [c.der for c in chain.path] == [*pki.signers[0].chain, pki.root.certificate]
    assert chain.fingerprints == tuple(c.fingerprint for c in chain.path)
    assert [r.version for r in chain.revocation] == [None, None]  # no lists cached yet
    assert all(r.is_stale(NOW) for r in chain.revocation)


def test_good_chain_with_root_appended_also_validates(pki: Pki) -> None:
    chain = (*pki.signers[0].chain, pki.root.certificate)
    assert pki.trust().validate(chain, purpose=SIGNER, now=NOW).leaf.der == chain[0]


# -- validity periods -------------------------------------------------------------------------


def test_expired_leaf(pki: Pki) -> None:
    _, chain = _leaf(pki.h49, not_after=NOW - dt.timedelta(seconds=1))
    with pytest.raises(CertificateExpired) as info:
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "expired"


def test_not_yet_valid_leaf(pki: Pki) -> None:
    _, chain = _leaf(pki.h49, not_before=NOW + dt.timedelta(hours=1))
    with pytest.raises(CertificateNotYetValid) as info:
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "not-yet-valid"


def test_expired_sub_ca_rejects_its_leaves(pki: Pki) -> None:
    later = NOW + dt.timedelta(days=11 * 365)  # past the sub-CA's ten years
    with pytest.raises(CertificateExpired):
        pki.trust().validate(pki.signers[0].chain, purpose=SIGNER, now=later)


def test_expired_root_rejects_everything() -> None:
    root = CertificateAuthority.create_root(
        name="Old root", key=SigningKey.generate(), now=NOW, lifetime=dt.timedelta(days=10)
    )
    signer = make_signer(root, H49, "A")
    trust = TrustStore([root.certificate])
    trust.validate(signer.chain, purpose=SIGNER, now=NOW)
    with pytest.raises(CertificateExpired) as info:
        trust.validate(signer.chain, purpose=SIGNER, now=NOW + dt.timedelta(days=11))
    assert "Old root" in str(info.value)


def test_validation_needs_an_aware_now(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        pki.trust().validate(pki.signers[0].chain, purpose=SIGNER, now=NOW.replace(tzinfo=None))


# -- issuers, signatures, basic constraints -----------------------------------------------------


def test_chain_from_another_pki_is_an_unknown_issuer(pki: Pki) -> None:
    other_root = CertificateAuthority.create_root(
        name="Some other root", key=SigningKey.generate(), now=NOW
    )
    other = make_sub_ca(other_root, H49, "Impostor H49")
    signer = make_signer(other, H49, "Impostor")
    with pytest.raises(UnknownIssuer) as info:
        pki.trust().validate(signer.chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "unknown-issuer"


def test_self_signed_leaf_is_an_unknown_issuer(pki: Pki) -> None:
    fake_root = CertificateAuthority.create_root(name="Me", key=SigningKey.generate(), now=NOW)
    with pytest.raises(UnknownIssuer):
        pki.trust().validate((fake_root.certificate,), purpose=CertificatePurpose.CA, now=NOW)


def test_certificate_claiming_a_real_issuer_but_signed_by_another_key(pki: Pki) -> None:
    forger = CertificateAuthority.create_root(
        name=pki.h49.info.common_name, key=SigningKey.generate(), now=NOW
    )
    key = SigningKey.generate()
    der = build_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Forged")]),
        public_key=key.public_key,
        issuer_name=pki.h49.info.subject_name,  # claims the real sub-CA
        issuer_key=forger.key,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=10),
        ca=False,
        extended_key_usage=(OID_DOCUMENT_SIGNING,),
        uris=(AGENCY_URI_PREFIX + str(H49),),
    )
    with pytest.raises(ChainInvalid) as info:
        pki.trust().validate((der, pki.h49.certificate), purpose=SIGNER, now=NOW)
    assert info.value.reason == "bad-signature"


def test_chain_in_wrong_order_does_not_validate(pki: Pki) -> None:
    leaf, sub = pki.signers[0].chain
    with pytest.raises(CertificateRejected):
        pki.trust().validate((sub, leaf), purpose=SIGNER, now=NOW)


def test_swapped_intermediate_does_not_validate(pki: Pki) -> None:
    chain = (pki.signers[0].chain[0], pki.h41.certificate)
    with pytest.raises(UnknownIssuer):
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)


def test_leaf_certificate_cannot_issue_certificates(pki: Pki) -> None:
    # A signer acting as a CA: its key signs a certificate naming it as issuer.
    signer_key = pki.signers[0].key
    key = SigningKey.generate()
    der = build_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Minion")]),
        public_key=key.public_key,
        issuer_name=parse_certificate(pki.signers[0].chain[0]).subject_name,
        issuer_key=signer_key,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=10),
        ca=False,
        extended_key_usage=(OID_DOCUMENT_SIGNING,),
        uris=(AGENCY_URI_PREFIX + str(H49),),
    )
    with pytest.raises(ChainInvalid) as info:
        pki.trust().validate((der, *pki.signers[0].chain), purpose=SIGNER, now=NOW)
    assert info.value.reason == "not-a-ca"


def test_ca_without_key_cert_sign_may_not_issue(pki: Pki) -> None:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    ca_key, ca_chain = _leaf(pki.root, agency=H49, ca=True, path_length=0, key_usage=usage, eku=())
    key = SigningKey.generate()
    der = build_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Leaf")]),
        public_key=key.public_key,
        issuer_name=parse_certificate(ca_chain[0]).subject_name,
        issuer_key=ca_key,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=10),
        ca=False,
        extended_key_usage=(OID_DOCUMENT_SIGNING,),
        uris=(AGENCY_URI_PREFIX + str(H49),),
    )
    with pytest.raises(WrongKeyUsage) as info:
        pki.trust().validate((der, *ca_chain), purpose=SIGNER, now=NOW)
    assert info.value.reason == "wrong-key-usage"


def test_path_length_limits_nested_sub_cas(pki: Pki) -> None:
    # The province sub-CA has path length 0; a CA below it breaks the constraint.
    ca_key, ca_chain = _leaf(pki.h49, agency=H49_DEPT, ca=True, path_length=None, eku=())
    nested = CertificateAuthority(ca_key, ca_chain)
    signer = make_signer(nested, H49_DEPT, "Deep official")
    with pytest.raises(ChainInvalid) as info:
        pki.trust().validate(signer.chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "path-length"


def test_chain_longer_than_the_limit(pki: Pki) -> None:
    chain = pki.signers[0].chain * 3
    with pytest.raises(ChainInvalid) as info:
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "too-long"


def test_unknown_critical_extension_is_refused(pki: Pki) -> None:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")
    _, chain = _leaf(pki.h49, extra=((odd, True),))
    with pytest.raises(ChainInvalid) as info:
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "unknown-critical-extension"
    _, chain = _leaf(pki.h49, extra=((odd, False),))
    pki.trust().validate(chain, purpose=SIGNER, now=NOW)  # non-critical: ignored


# -- the code-subtree rule ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["000.00.00.H41", "000.05.00.H41", "000.00.00.G22"])
def test_sub_ca_certificate_outside_its_subtree_is_rejected(pki: Pki, code: str) -> None:
    _, chain = _leaf(pki.h49, agency=AgencyCode(code))
    with pytest.raises(OutsideSubtree) as info:
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "outside-subtree"
    assert "000.00.00.H49" in str(info.value)


def test_sub_ca_certificate_without_agency_code_is_outside_its_subtree(pki: Pki) -> None:
    _, chain = _leaf(pki.h49, agency=None)
    with pytest.raises(OutsideSubtree):
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)


def test_sub_ca_certificate_inside_its_subtree_deep_down(pki: Pki) -> None:
    _, chain = _leaf(pki.h49, agency=AgencyCode("012.05.03.H49"))
    assert pki.trust().validate(chain, purpose=SIGNER, now=NOW).agency == AgencyCode(
        "012.05.03.H49"
    )


def test_subtree_rule_applies_to_sub_ca_certificates_too() -> None:
    root = CertificateAuthority.create_root(
        name="Root", key=SigningKey.generate(), now=NOW, path_length=2
    )
    province = make_sub_ca(root, H49, "province")
    ca_key, ca_chain = _leaf(province, agency=H41, ca=True, path_length=0, eku=())
    bad = CertificateAuthority(ca_key, ca_chain)
    signer = make_signer(bad, H41, "Elsewhere")
    with pytest.raises(OutsideSubtree):
        TrustStore([root.certificate]).validate(signer.chain, purpose=SIGNER, now=NOW)


# -- purposes -----------------------------------------------------------------------------------


def test_node_certificate_cannot_sign_documents(pki: Pki) -> None:
    with pytest.raises(WrongKeyUsage):
        pki.trust().validate(pki.h49_node.chain, purpose=SIGNER, now=NOW)


def test_signer_certificate_cannot_admit_a_node(pki: Pki) -> None:
    with pytest.raises(WrongKeyUsage):
        pki.trust().validate(pki.signers[0].chain, purpose=CertificatePurpose.NODE, now=NOW)


def test_leaf_without_digital_signature_usage(pki: Pki) -> None:
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    _, chain = _leaf(pki.h49, key_usage=usage)
    with pytest.raises(WrongKeyUsage):
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)


def test_ca_certificate_cannot_serve_as_signer(pki: Pki) -> None:
    _, chain = _leaf(pki.h49, ca=True, path_length=0, eku=(OID_DOCUMENT_SIGNING,))
    with pytest.raises(ChainInvalid) as info:
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "leaf-is-ca"


def test_node_certificate_needs_an_ed25519_key_and_peer_id(pki: Pki) -> None:
    _, chain = _leaf(pki.h49, eku=(OID_NODE,))  # no peer ID, no X25519 key
    with pytest.raises(CertificateMalformed):
        pki.trust().validate(chain, purpose=CertificatePurpose.NODE, now=NOW)


def test_leaf_without_agency_code_is_malformed(pki: Pki) -> None:
    _, chain = _leaf(pki.root, agency=None)
    with pytest.raises(CertificateMalformed):
        pki.trust().validate(chain, purpose=SIGNER, now=NOW)


# -- nodes --------------------------------------------------------------------------------------


def test_node_chain_admits_the_right_peer(pki: Pki) -> None:
    node = pki.h41_node
    verified = verify_node_chain(node.chain, expected_peer=node.peer_id, trust=pki.trust(), now=NOW)
    assert (verified.agency, verified.peer) == (H41, node.peer_id)
    assert verified.x25519_public == node.x25519_public
    assert verified.fingerprints[0] == parse_certificate(node.chain[0]).fingerprint
    assert len(verified.revocation) == 2


def test_node_chain_of_another_peer_is_a_peer_id_mismatch(pki: Pki) -> None:
    with pytest.raises(PeerIdMismatch) as info:
        verify_node_chain(
            pki.h49_node.chain, expected_peer=pki.h41_node.peer_id, trust=pki.trust(), now=NOW
        )
    assert info.value.reason == "peer-id-mismatch"


def test_node_certificate_whose_peer_uri_is_not_its_key_is_malformed(pki: Pki) -> None:
    other = PeerId.from_ed25519(bytes(range(32)))
    key = SigningKey.generate()
    agreement = x509.UnrecognizedExtension(
        OID_KEY_AGREEMENT,
        x25519.X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    der = build_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Liar")]),
        public_key=key.public_key,
        issuer_name=pki.h49.info.subject_name,
        issuer_key=pki.h49.key,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=10),
        ca=False,
        extended_key_usage=(OID_NODE,),
        uris=(AGENCY_URI_PREFIX + str(H49), f"urn:p2pdoc:peer:{other}"),
        extra=((agreement, False),),
    )
    with pytest.raises(CertificateMalformed):
        verify_node_chain(
            (der, pki.h49.certificate), expected_peer=other, trust=pki.trust(), now=NOW
        )


def test_node_identity_validates_itself(pki: Pki) -> None:
    assert pki.h49_node.validate(trust=pki.trust(), now=NOW).agency == H49


# -- the store ----------------------------------------------------------------------------------


def test_truncated_chain_is_completed_from_known_cas(pki: Pki) -> None:
    trust = pki.trust()
    leaf_only = (pki.signers[1].chain[0],)
    with pytest.raises(UnknownIssuer):
        trust.validate(leaf_only, purpose=SIGNER, now=NOW)
    trust.add_ca(pki.h49.chain, now=NOW)
    assert trust.validate(leaf_only, purpose=SIGNER, now=NOW).path[1].der == pki.h49.certificate


def test_validated_chains_teach_the_store_their_cas(pki: Pki) -> None:
    trust = pki.trust()
    trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW)
    assert trust.known_cas() == (pki.h49.certificate,)


def test_add_ca_rejects_a_non_ca_chain(pki: Pki) -> None:
    with pytest.raises(ChainInvalid):
        pki.trust().add_ca(pki.signers[0].chain, now=NOW)


def test_cached_result_is_not_reused_outside_its_validity_window(pki: Pki) -> None:
    trust = pki.trust()
    _, chain = _leaf(pki.h49, not_after=NOW + dt.timedelta(hours=1))
    trust.validate(chain, purpose=SIGNER, now=NOW)
    with pytest.raises(CertificateExpired):
        trust.validate(chain, purpose=SIGNER, now=NOW + dt.timedelta(hours=2))


def test_trust_store_refuses_bad_roots(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        TrustStore([])
    with pytest.raises(InvalidValue):
        TrustStore([pki.signers[0].chain[0]])
    with pytest.raises(InvalidValue):
        TrustStore([pki.h49.certificate])  # a CA, but not self-signed


def test_malformed_bytes_in_a_chain(pki: Pki) -> None:
    trust = pki.trust()
    for chain in ((b"not a certificate",), (), (pki.signers[0].chain[0][:-5],)):
        with pytest.raises(CertificateMalformed):
            trust.validate(chain, purpose=SIGNER, now=NOW)
    with pytest.raises(CertificateMalformed):
        trust.validate(b"\x30\x00", purpose=SIGNER, now=NOW)  # type: ignore[arg-type]


def test_other_province_official_validates_under_its_own_sub_ca(pki: Pki) -> None:
    chain = pki.trust().validate(pki.h41_signer.chain, purpose=SIGNER, now=NOW)
    assert chain.agency == H41_DEPT
    assert chain.path[1].agency == H41
    assert chain.leaf.agency is not None and H49.contains(chain.leaf.agency) is False
    assert chain.agency != H49_DEPT


# -- regressions found by the mutation tests ----------------------------------------------------


def test_extra_certificate_outside_the_path_is_refused(pki: Pki) -> None:
    trust = pki.trust()
    trust.add_ca(pki.h49.chain, now=NOW)  # the store could complete the path on its own
    chain = (pki.signers[0].chain[0], pki.h41.certificate)
    with pytest.raises(CertificateRejected):
        trust.validate(chain, purpose=SIGNER, now=NOW)
    with_junk = (*pki.signers[0].chain, pki.root.certificate, pki.h41.certificate)
    with pytest.raises(ChainInvalid) as info:
        trust.validate(with_junk, purpose=SIGNER, now=NOW)
    assert info.value.reason == "unused-certificate"


def test_certificate_with_a_negative_serial_is_malformed(pki: Pki) -> None:
    der = bytearray(pki.signers[0].chain[0])
    serial_at = der.index(b"\x02\x14") + 2  # INTEGER of 20 bytes
    der[serial_at] |= 0x80
    with pytest.raises(CertificateMalformed):
        pki.trust().validate((bytes(der), pki.h49.certificate), purpose=SIGNER, now=NOW)


def test_certificate_with_an_undecodable_issuer_name_is_malformed(pki: Pki) -> None:
    der = pki.h49.certificate.replace("Ban Cơ".encode(), b"Ban C\xff\xa1", 1)
    with pytest.raises(CertificateMalformed):
        pki.trust().validate((pki.signers[0].chain[0], der), purpose=SIGNER, now=NOW)


def test_chain_items_that_are_not_bytes_are_malformed(pki: Pki) -> None:
    leaf, sub = pki.signers[0].chain
    for chain in ((leaf, sub.hex()), (leaf, 10**12)):  # an int must not become 10**12 bytes
        with pytest.raises(CertificateMalformed):
            pki.trust().validate(chain, purpose=SIGNER, now=NOW)  # type: ignore[arg-type]


def test_chain_cache_size_is_checked_and_zero_disables_it(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        TrustStore([pki.root.certificate], max_cached_chains=-1)
    trust = TrustStore([pki.root.certificate], max_cached_chains=0)
    first = trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW)
    assert trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW) is not first
