"""Document signatures: many per document, one sign and one verify each, over the root CID."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs import cbor
from p2pdoc.errors import (
    CertificateExpired,
    CertificateRevoked,
    DecodeError,
    InvalidValue,
    LimitExceeded,
    SignatureInvalid,
    SignatureRootMismatch,
    SignerNotAuthorised,
    WrongKeyUsage,
)
from p2pdoc.model import Cid, Multicodec
from p2pdoc.trust import (
    DocumentRole,
    DocumentSignature,
    KeyAlgorithm,
    SignatureAlgorithm,
    SignatureSet,
    VerificationCache,
    document_signature_payload,
    parse_certificate,
    sign_document,
    verify_document_signatures,
)
from p2pdoc.trust.signatures import DOCUMENT_SIGNATURE_CONTEXT

from .conftest import H41, H49, H49_DEPT, NOW, Pki, Signer, make_signer

ROOT = Cid.of(Multicodec.DAG_CBOR, b"manifest of document 7816/VPCP-TTDT")
OTHER_ROOT = Cid.of(Multicodec.DAG_CBOR, b"another manifest")
ROLES = (
    DocumentRole.COMPETENT_SIGNER,
    DocumentRole.ORGANISATION,
    DocumentRole.NUMBER,
    DocumentRole.DATE,
    DocumentRole.APPENDIX,
    "x-province.review",
)


def _six(pki: Pki, root: Cid = ROOT) -> SignatureSet:
    return SignatureSet(
        tuple(
            sign_document(root, role=role, key=s.key, chain=s.chain, now=NOW)
            for role, s in zip(ROLES, pki.signers, strict=True)
        )
    )


def test_six_signatures_verify_and_name_their_signers(pki: Pki) -> None:
    results = verify_document_signatures(ROOT, _six(pki), trust=pki.trust(), now=NOW)
    assert [r.role for r in results] == list(ROLES)
    assert results[0].signer.full_name == "Nguyễn Văn An"
    assert results[0].signer.position == "Chủ tịch"
    assert results[4].signer.agency == H49_DEPT
    assert results[0].fingerprints[0] == hashlib.sha256(pki.signers[0].chain[0]).digest()
    assert results[0].revocation[0].version is None
    assert all(r.signed_at == NOW for r in results)


def test_signature_set_travels_as_canonical_bytes(pki: Pki) -> None:
    signatures = _six(pki)
    data = signatures.encode()
    assert cbor.encode(cbor.decode(data)) == data
    decoded = SignatureSet.decode(data)
    assert decoded == signatures and decoded.root == ROOT and len(decoded) == 6
    verify_document_signatures(ROOT, decoded, trust=pki.trust(), now=NOW)


def test_signed_bytes_are_the_documented_canonical_map(pki: Pki) -> None:
    signature = _six(pki).signatures[0]
    expected = cbor.encode(
        {
            "ctx": DOCUMENT_SIGNATURE_CONTEXT,
            "root": ROOT,
            "role": "competent-signer",
            "time": signature.signed_at_ms,
            "alg": "ed25519",
            "cert": hashlib.sha256(signature.chain[0]).digest(),
        }
    )
    assert signature.payload() == expected


@settings(max_examples=60, deadline=None)
@given(
    st.binary(min_size=0, max_size=40),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,62}", fullmatch=True),
    st.integers(0, (1 << 63) - 1 - 10**12),
    st.sampled_from(SignatureAlgorithm),
    st.binary(min_size=1, max_size=100),
)
def test_hand_built_payload_equals_canonical_cbor(
    content: bytes, role: str, ms: int, algorithm: SignatureAlgorithm, cert: bytes
) -> None:
    root = Cid.of(Multicodec.DAG_CBOR, content)
    signed_at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms % 10**14)
    payload = document_signature_payload(
        root=root, role=role, signed_at=signed_at, algorithm=algorithm, signer_certificate=cert
    )
    assert payload == cbor.encode(
        {
            "ctx": DOCUMENT_SIGNATURE_CONTEXT,
            "root": root,
            "role": role,
            "time": (ms % 10**14),
            "alg": algorithm.value,
            "cert": hashlib.sha256(cert).digest(),
        }
    )


def test_cost_is_one_verify_per_signer_whatever_the_appendices(pki: Pki) -> None:
    # The signed bytes name only the root CID: their size is the same for a manifest
    # listing 1 or 200 appendices, so is the work.
    small = Cid.of(Multicodec.DAG_CBOR, b"x" * 10)
    large = Cid.of(Multicodec.DAG_CBOR, b"x" * 100_000)
    a = sign_document(
        small, role="number", key=pki.signers[2].key, chain=pki.signers[2].chain, now=NOW
    )
    b = sign_document(
        large, role="number", key=pki.signers[2].key, chain=pki.signers[2].chain, now=NOW
    )
    assert len(a.payload()) == len(b.payload())


# -- bad input ----------------------------------------------------------------------------------


def test_forged_signature_is_rejected(pki: Pki) -> None:
    good = _six(pki).signatures[0]
    forged = dataclasses.replace(good, signature=bytes(64))
    with pytest.raises(SignatureInvalid) as info:
        verify_document_signatures(ROOT, [forged], trust=pki.trust(), now=NOW)
    assert type(info.value) is SignatureInvalid
    assert "competent-signer" in str(info.value)


def test_signature_set_of_another_document_is_a_root_mismatch(pki: Pki) -> None:
    with pytest.raises(SignatureRootMismatch):
        verify_document_signatures(OTHER_ROOT, _six(pki), trust=pki.trust(), now=NOW)


def test_signature_moved_from_another_document_does_not_verify(pki: Pki) -> None:
    other = _six(pki, OTHER_ROOT).signatures[0]
    moved = dataclasses.replace(other, root=ROOT)  # relabelled to pass the root check
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, [moved], trust=pki.trust(), now=NOW)


def test_swapped_certificate_is_rejected(pki: Pki) -> None:
    good = _six(pki).signatures[2]  # made by the third official
    swapped = dataclasses.replace(good, chain=pki.signers[0].chain)  # claims the chairman
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, [swapped], trust=pki.trust(), now=NOW)


def test_certificate_with_same_key_cannot_take_over_a_signature(pki: Pki) -> None:
    # Same key, second certificate (e.g. after a change of post): the signature names the
    # certificate it was made under, so it cannot be re-attributed.
    signer = pki.signers[1]
    second = pki.h49.issue_signer(
        agency=H49,
        full_name="Trần Thị Bình",
        position="Phó Chủ tịch",
        public_key=signer.key.public_key,
        now=NOW,
    )
    good = sign_document(ROOT, role="organisation", key=signer.key, chain=signer.chain, now=NOW)
    retitled = dataclasses.replace(good, chain=second)
    verify_document_signatures(ROOT, [good], trust=pki.trust(), now=NOW)
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, [retitled], trust=pki.trust(), now=NOW)


def test_role_and_time_are_signed(pki: Pki) -> None:
    good = _six(pki).signatures[0]
    for changed in (
        dataclasses.replace(good, role="approval"),
        dataclasses.replace(good, signed_at=NOW - dt.timedelta(seconds=1)),
    ):
        with pytest.raises(SignatureInvalid):
            verify_document_signatures(ROOT, [changed], trust=pki.trust(), now=NOW)


def test_wrong_chain_is_rejected(pki: Pki) -> None:
    good = _six(pki).signatures[0]
    node_chain = dataclasses.replace(good, chain=pki.h49_node.chain)
    with pytest.raises(WrongKeyUsage):
        verify_document_signatures(ROOT, [node_chain], trust=pki.trust(), now=NOW)


def test_expired_signer_is_rejected(pki: Pki) -> None:
    later = NOW + dt.timedelta(days=3 * 365)
    with pytest.raises(CertificateExpired):
        verify_document_signatures(ROOT, _six(pki), trust=pki.trust(), now=later)


def test_revoked_signer_is_rejected(pki: Pki) -> None:
    trust = pki.trust()
    serial = parse_certificate(pki.signers[3].chain[0]).serial
    trust.add_revocation_list(
        pki.h49.issue_revocation_list(revoked=[serial], now=NOW),
        now=NOW,
        issuer_chain=pki.h49.chain,
    )
    with pytest.raises(CertificateRevoked):
        verify_document_signatures(ROOT, _six(pki), trust=trust, now=NOW)


def test_signing_time_in_the_future_or_before_the_certificate(pki: Pki) -> None:
    signer = pki.signers[0]
    future = sign_document(
        ROOT, role="date", key=signer.key, chain=signer.chain, now=NOW + dt.timedelta(hours=1)
    )
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, [future], trust=pki.trust(), now=NOW)
    slightly = sign_document(
        ROOT, role="date", key=signer.key, chain=signer.chain, now=NOW + dt.timedelta(minutes=1)
    )
    verify_document_signatures(ROOT, [slightly], trust=pki.trust(), now=NOW)  # clock skew
    backdated = sign_document(
        ROOT, role="date", key=signer.key, chain=signer.chain, now=NOW - dt.timedelta(days=400)
    )
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, [backdated], trust=pki.trust(), now=NOW)


def test_signer_outside_the_sending_agency(pki: Pki) -> None:
    signatures = _six(pki)
    verify_document_signatures(ROOT, signatures, trust=pki.trust(), now=NOW, sender=H49)
    with pytest.raises(SignerNotAuthorised):
        verify_document_signatures(ROOT, signatures, trust=pki.trust(), now=NOW, sender=H41)
    with pytest.raises(SignerNotAuthorised):  # the department signer is not the province
        verify_document_signatures(ROOT, signatures, trust=pki.trust(), now=NOW, sender=H49_DEPT)


def test_minimum_count_and_required_roles(pki: Pki) -> None:
    signatures = _six(pki)
    verify_document_signatures(
        ROOT,
        signatures,
        trust=pki.trust(),
        now=NOW,
        min_signatures=6,
        required_roles=("competent-signer", "organisation"),
    )
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, signatures, trust=pki.trust(), now=NOW, min_signatures=7)
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(
            ROOT, signatures, trust=pki.trust(), now=NOW, required_roles=("copy",)
        )
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, SignatureSet(), trust=pki.trust(), now=NOW)


# -- algorithms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "signature_algorithm"),
    [
        (KeyAlgorithm.ECDSA_P256, SignatureAlgorithm.ECDSA_P256_SHA256),
        (KeyAlgorithm.ECDSA_P384, SignatureAlgorithm.ECDSA_P384_SHA384),
        (KeyAlgorithm.RSA, SignatureAlgorithm.RSA_PKCS1V15_SHA256),
        (KeyAlgorithm.RSA, SignatureAlgorithm.RSA_PSS_SHA256),
    ],
)
def test_token_key_types_verify(
    rsa_signer: Signer,
    pki: Pki,
    algorithm: KeyAlgorithm,
    signature_algorithm: SignatureAlgorithm,
) -> None:
    signer = (
        rsa_signer
        if algorithm is KeyAlgorithm.RSA
        else make_signer(pki.h49, H49, "T", algorithm=algorithm)
    )
    signature = sign_document(
        ROOT,
        role="organisation",
        key=signer.key,
        chain=signer.chain,
        now=NOW,
        algorithm=signature_algorithm,
    )
    [result] = verify_document_signatures(ROOT, [signature], trust=pki.trust(), now=NOW)
    assert result.algorithm is signature_algorithm


def test_algorithm_substitution_is_rejected(rsa_signer: Signer, pki: Pki) -> None:
    pss = sign_document(
        ROOT,
        role="organisation",
        key=rsa_signer.key,
        chain=rsa_signer.chain,
        now=NOW,
        algorithm=SignatureAlgorithm.RSA_PSS_SHA256,
    )
    relabelled = dataclasses.replace(pss, algorithm=SignatureAlgorithm.RSA_PKCS1V15_SHA256)
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(ROOT, [relabelled], trust=pki.trust(), now=NOW)
    ed = _six(pki).signatures[0]
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(
            ROOT,
            [dataclasses.replace(ed, algorithm=SignatureAlgorithm.ECDSA_P256_SHA256)],
            trust=pki.trust(),
            now=NOW,
        )


def test_new_keys_default_to_ed25519(pki: Pki) -> None:
    assert _six(pki).signatures[0].algorithm is SignatureAlgorithm.ED25519


def test_signing_refuses_a_key_its_certificate_does_not_certify(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        sign_document(
            ROOT, role="date", key=pki.signers[0].key, chain=pki.signers[1].chain, now=NOW
        )
    with pytest.raises(InvalidValue):
        sign_document(
            ROOT, role="date", key=pki.h49_node.signing_key, chain=pki.h49_node.chain, now=NOW
        )
    with pytest.raises(InvalidValue):
        sign_document(
            ROOT, role="Bad Role", key=pki.signers[0].key, chain=pki.signers[0].chain, now=NOW
        )


# -- the verification cache ---------------------------------------------------------------------


def test_document_seen_twice_is_verified_once(pki: Pki) -> None:
    trust, cache = pki.trust(), VerificationCache()
    signatures = _six(pki)
    first = verify_document_signatures(ROOT, signatures, trust=trust, now=NOW, cache=cache)
    assert (cache.hits, cache.misses) == (0, 6)
    again = SignatureSet.decode(signatures.encode())  # equal value, other objects
    second = verify_document_signatures(ROOT, again, trust=trust, now=NOW, cache=cache)
    assert (cache.hits, cache.misses) == (6, 6)
    assert [r.signer for r in second] == [r.signer for r in first]


def test_cache_never_outlives_a_revocation_or_an_expiry(pki: Pki) -> None:
    trust, cache = pki.trust(), VerificationCache()
    signatures = _six(pki)
    verify_document_signatures(ROOT, signatures, trust=trust, now=NOW, cache=cache)
    with pytest.raises(CertificateExpired):
        verify_document_signatures(
            ROOT, signatures, trust=trust, now=NOW + dt.timedelta(days=3 * 365), cache=cache
        )
    serial = parse_certificate(pki.signers[5].chain[0]).serial
    trust.add_revocation_list(
        pki.h49.issue_revocation_list(revoked=[serial], now=NOW),
        now=NOW,
        issuer_chain=pki.h49.chain,
    )
    with pytest.raises(CertificateRevoked):
        verify_document_signatures(ROOT, signatures, trust=trust, now=NOW, cache=cache)


def test_cache_is_not_shared_across_trust_stores(pki: Pki) -> None:
    cache = VerificationCache()
    signatures = _six(pki)
    verify_document_signatures(ROOT, signatures, trust=pki.trust(), now=NOW, cache=cache)
    verify_document_signatures(ROOT, signatures, trust=pki.trust(), now=NOW, cache=cache)
    assert cache.hits == 0


def test_cache_is_bounded(pki: Pki) -> None:
    cache = VerificationCache(max_entries=4)
    verify_document_signatures(ROOT, _six(pki), trust=pki.trust(), now=NOW, cache=cache)
    assert len(cache) == 4


def test_cached_tampered_signature_is_still_rejected(pki: Pki) -> None:
    trust, cache = pki.trust(), VerificationCache()
    good = _six(pki).signatures[0]
    verify_document_signatures(ROOT, [good], trust=trust, now=NOW, cache=cache)
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(
            ROOT, [dataclasses.replace(good, role="copy")], trust=trust, now=NOW, cache=cache
        )


# -- the set ------------------------------------------------------------------------------------


def test_set_rules(pki: Pki) -> None:
    signatures = _six(pki).signatures
    with pytest.raises(InvalidValue):
        SignatureSet((signatures[0], signatures[0]))
    with pytest.raises(InvalidValue):
        SignatureSet((signatures[0], _six(pki, OTHER_ROOT).signatures[1]))
    grown = SignatureSet(signatures[:2]).with_signature(signatures[2])
    assert len(grown) == 3


def test_set_decoding_is_bounded_and_typed(pki: Pki) -> None:
    data = _six(pki).encode()
    with pytest.raises(LimitExceeded):
        SignatureSet.decode(data, max_size=100)
    value = cbor.decode(data)
    for bad in (
        {"v": 2, "signatures": []},
        {"v": 1},
        {"v": 1, "signatures": [{"root": ROOT}]},
        {"v": 1, "signatures": [{**value["signatures"][0], "alg": "md5-rsa"}]},
        {"v": 1, "signatures": [{**value["signatures"][0], "time": -1}]},
        {"v": 1, "signatures": [{**value["signatures"][0], "chain": []}]},
        {"v": 1, "signatures": [{**value["signatures"][0], "role": "Ünicode"}]},
        {"v": 1, "signatures": [value["signatures"][0]] * 65},
    ):
        with pytest.raises(DecodeError):
            SignatureSet.decode(cbor.encode(bad))


def test_signature_value_validates_itself() -> None:
    with pytest.raises(InvalidValue):
        DocumentSignature(
            root=ROOT,
            role="date",
            signed_at=NOW.replace(tzinfo=None),
            algorithm=SignatureAlgorithm.ED25519,
            chain=(b"x",),
            signature=b"s",
        )
    with pytest.raises(InvalidValue):
        DocumentSignature(
            root=ROOT,
            role="date",
            signed_at=NOW,
            algorithm=SignatureAlgorithm.ED25519,
            chain=(),
            signature=b"s",
        )


def test_one_certificate_signs_a_role_once(pki: Pki) -> None:
    # Otherwise one official signing "number" six times would meet a six-signature rule.
    signer = pki.signers[2]
    twice = tuple(
        sign_document(
            ROOT,
            role="number",
            key=signer.key,
            chain=signer.chain,
            now=NOW + dt.timedelta(milliseconds=ms),
        )
        for ms in range(2)
    )
    with pytest.raises(InvalidValue):
        SignatureSet(twice)
    with pytest.raises(SignatureInvalid, match="number role twice"):
        verify_document_signatures(ROOT, twice, trust=pki.trust(), now=NOW, min_signatures=2)
    encoded = cbor.encode({"v": 1, "signatures": [s.to_value() for s in twice]})
    with pytest.raises(DecodeError):
        SignatureSet.decode(encoded)
    other_role = sign_document(ROOT, role="date", key=signer.key, chain=signer.chain, now=NOW)
    both = SignatureSet((twice[0], other_role))  # one official, two roles: allowed
    assert len(verify_document_signatures(ROOT, both, trust=pki.trust(), now=NOW)) == 2


def test_payload_refuses_an_unknown_algorithm(pki: Pki) -> None:
    with pytest.raises(InvalidValue):
        document_signature_payload(
            root=ROOT,
            role="date",
            signed_at=NOW,
            algorithm="md5-rsa",  # type: ignore[arg-type]
            signer_certificate=pki.signers[0].chain[0],
        )
