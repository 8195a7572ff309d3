"""Revocation lists: signed by the issuing CA, versioned, mergeable, serialisable, cached."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from p2pdoc.errors import (
    CertificateRejected,
    CertificateRevoked,
    DecodeError,
    InvalidValue,
    LimitExceeded,
    RevocationListInvalid,
)
from p2pdoc.trust import (
    CertificateAuthority,
    CertificatePurpose,
    RevocationList,
    SigningKey,
    TrustStore,
    parse_certificate,
    verify_node_chain,
)

from .conftest import H49, NOW, Pki, make_signer, make_sub_ca

SIGNER = CertificatePurpose.SIGNER


def _serial(chain: tuple[bytes, ...]) -> int:
    return parse_certificate(chain[0]).serial


def test_revoked_signer_is_rejected_and_names_the_list_version(pki: Pki) -> None:
    signer = make_signer(pki.h49, H49, "Leaves office")
    trust = pki.trust()
    trust.validate(signer.chain, purpose=SIGNER, now=NOW)
    revocations = pki.h49.issue_revocation_list(revoked=[_serial(signer.chain)], now=NOW)
    assert trust.add_revocation_list(revocations, now=NOW)
    with pytest.raises(CertificateRevoked) as info:
        trust.validate(signer.chain, purpose=SIGNER, now=NOW)  # the cached result is dropped
    assert info.value.reason == "revoked"
    assert "version 1" in str(info.value)
    ok = trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW)
    assert ok.revocation[0].version == 1
    assert ok.revocation[0].issuer_key_id == pki.h49.info.key_id
    assert ok.revocation[1].version is None  # the root published no list


def test_revoked_sub_ca_rejects_everything_below_it(pki: Pki) -> None:
    province = make_sub_ca(pki.root, H49, "Compromised province CA")
    signer = make_signer(province, H49, "Official")
    trust = pki.trust()
    trust.add_revocation_list(
        pki.root.issue_revocation_list(revoked=[_serial(province.chain)], now=NOW), now=NOW
    )
    with pytest.raises(CertificateRevoked):
        trust.validate(signer.chain, purpose=SIGNER, now=NOW)


def test_revoked_node_is_refused_admission(pki: Pki) -> None:
    trust = pki.trust()
    node = pki.h49_dept_node
    trust.add_revocation_list(
        pki.h49.issue_revocation_list(revoked=[_serial(node.chain)], now=NOW),
        now=NOW,
        issuer_chain=pki.h49.chain,
    )
    with pytest.raises(CertificateRevoked):
        verify_node_chain(node.chain, expected_peer=node.peer_id, trust=trust, now=NOW)


def test_newer_version_replaces_older_and_older_is_ignored(pki: Pki) -> None:
    a = make_signer(pki.h49, H49, "A")
    b = make_signer(pki.h49, H49, "B")
    v1 = pki.h49.issue_revocation_list(revoked=[_serial(a.chain)], now=NOW)
    v2 = pki.h49.issue_revocation_list(revoked=[_serial(b.chain)], now=NOW, previous=v1)
    assert v2.version == 2 and v2.revoked == {_serial(a.chain), _serial(b.chain)}
    trust = pki.trust()
    assert trust.add_revocation_list(v2, now=NOW, issuer_chain=pki.h49.chain)
    generation = trust.generation
    assert not trust.add_revocation_list(v1, now=NOW)  # older: no change
    assert not trust.add_revocation_list(v2, now=NOW)  # same: no change
    assert trust.generation == generation
    assert trust.revocation_list(pki.h49.info.key_id) == v2


def test_merge_is_commutative_associative_and_idempotent(pki: Pki) -> None:
    v1 = pki.h49.issue_revocation_list(revoked=[1], now=NOW)
    v2 = pki.h49.issue_revocation_list(revoked=[2], now=NOW, previous=v1)
    v3 = pki.h49.issue_revocation_list(revoked=[3], now=NOW, previous=v2)
    assert v1.merge(v3) == v3.merge(v1) == v3
    assert v1.merge(v2).merge(v3) == v1.merge(v2.merge(v3)) == v3
    assert v2.merge(v2) == v2


def test_two_different_lists_with_one_version_conflict(pki: Pki) -> None:
    a = pki.h49.issue_revocation_list(revoked=[1], now=NOW, version=5)
    b = pki.h49.issue_revocation_list(revoked=[2], now=NOW, version=5)
    with pytest.raises(RevocationListInvalid):
        a.merge(b)
    trust = pki.trust()
    trust.add_ca(pki.h49.chain, now=NOW)
    trust.add_revocation_list(a, now=NOW)
    with pytest.raises(RevocationListInvalid):
        trust.add_revocation_list(b, now=NOW)
    assert trust.revocation_list(pki.h49.info.key_id) == a


def test_lists_of_different_cas_do_not_merge(pki: Pki) -> None:
    with pytest.raises(RevocationListInvalid):
        pki.h49.issue_revocation_list(revoked=[], now=NOW).merge(
            pki.h41.issue_revocation_list(revoked=[], now=NOW)
        )


def test_list_signed_by_another_key_is_refused(pki: Pki) -> None:
    impostor = CertificateAuthority.create_root(
        name=pki.h49.info.common_name, key=SigningKey.generate(), now=NOW
    )
    forged = RevocationList.issue(
        key=impostor.key,
        issuer=impostor.info,
        revoked=[_serial(pki.signers[0].chain)],
        version=99,
        now=NOW,
    )
    trust = pki.trust()
    trust.add_ca(pki.h49.chain, now=NOW)
    with pytest.raises(RevocationListInvalid):
        trust.add_revocation_list(forged, now=NOW)  # names an issuer key nobody trusts
    assert trust.revocation_lists() == ()
    with pytest.raises(RevocationListInvalid):
        forged.verify(pki.h49.info)


def test_list_of_an_unknown_ca_needs_its_chain(pki: Pki) -> None:
    trust = pki.trust()
    revocations = pki.h41.issue_revocation_list(revoked=[7], now=NOW)
    with pytest.raises(RevocationListInvalid):
        trust.add_revocation_list(revocations, now=NOW)
    assert trust.add_revocation_list(revocations, now=NOW, issuer_chain=pki.h41.chain)


def test_serialised_list_round_trips_and_travels_as_bytes(pki: Pki) -> None:
    original = pki.h49.issue_revocation_list(
        revoked={5: NOW - dt.timedelta(days=2), 9: NOW}, now=NOW
    )
    copy = RevocationList.from_bytes(original.to_bytes())
    assert copy == original
    assert copy.entries == {5: NOW - dt.timedelta(days=2), 9: NOW}
    assert (copy.version, copy.issuer_key_id) == (1, pki.h49.info.key_id)
    trust = pki.trust()
    assert trust.add_revocation_list(original.to_bytes(), now=NOW, issuer_chain=pki.h49.chain)


def test_openssl_reads_the_list(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "h49.crl"
    path.write_bytes(pki.h49.issue_revocation_list(revoked=[4242], now=NOW, version=3).to_bytes())
    out = subprocess.run(
        ["/usr/bin/openssl", "crl", "-inform", "DER", "-in", str(path), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "X509v3 CRL Number" in out and "3" in out
    assert "1092" in out  # serial 4242 in hex


def test_stale_cached_list_keeps_working_and_says_so(pki: Pki) -> None:
    revoked = make_signer(pki.h49, H49, "Revoked")
    trust = pki.trust()
    trust.add_revocation_list(
        pki.h49.issue_revocation_list(
            revoked=[_serial(revoked.chain)], now=NOW, next_update=dt.timedelta(days=1)
        ),
        now=NOW,
        issuer_chain=pki.h49.chain,
    )
    much_later = NOW + dt.timedelta(days=60)  # the CA has been unreachable for two months
    ok = trust.validate(pki.signers[0].chain, purpose=SIGNER, now=much_later)
    assert ok.revocation[0].version == 1
    assert ok.revocation[0].is_stale(much_later)
    assert not ok.revocation[0].is_stale(NOW)
    naive = much_later.replace(tzinfo=None)
    with pytest.raises(InvalidValue):
        ok.revocation[0].is_stale(naive)
    (held,) = trust.revocation_lists()
    with pytest.raises(InvalidValue):
        held.is_stale(naive)
    assert held.is_stale(much_later)
    with pytest.raises(CertificateRevoked):
        trust.validate(revoked.chain, purpose=SIGNER, now=much_later)


def test_store_can_require_lists(pki: Pki) -> None:
    trust = TrustStore([pki.root.certificate], require_revocation_lists=True)
    with pytest.raises(CertificateRejected) as info:
        trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW)
    assert info.value.reason == "revocation-unknown"
    trust.add_revocation_list(pki.root.issue_revocation_list(revoked=[], now=NOW), now=NOW)
    trust.add_revocation_list(
        pki.h49.issue_revocation_list(revoked=[], now=NOW), now=NOW, issuer_chain=pki.h49.chain
    )
    trust.validate(pki.signers[0].chain, purpose=SIGNER, now=NOW)


def test_issuance_rules(pki: Pki) -> None:
    v1 = pki.h49.issue_revocation_list(revoked=[1], now=NOW)
    with pytest.raises(InvalidValue):
        pki.h49.issue_revocation_list(revoked=[2], now=NOW, previous=v1, version=1)
    with pytest.raises(InvalidValue):
        pki.h41.issue_revocation_list(revoked=[2], now=NOW, previous=v1)
    with pytest.raises(InvalidValue):
        RevocationList.issue(
            key=pki.signers[0].key,
            issuer=parse_certificate(pki.signers[0].chain[0]),
            revoked=[],
            version=1,
            now=NOW,
        )


def test_decoding_is_bounded_and_typed(pki: Pki) -> None:
    data = pki.h49.issue_revocation_list(revoked=range(1, 200), now=NOW).to_bytes()
    with pytest.raises(LimitExceeded):
        RevocationList.from_bytes(data, max_size=100)
    for bad in (b"", b"\x30\x03\x02\x01\x00", data[:-3], data + b"\x00"):
        with pytest.raises(DecodeError):
            RevocationList.from_bytes(bad)


def test_list_with_a_bad_version_field_is_a_decode_error(pki: Pki) -> None:
    data = pki.h49.issue_revocation_list(revoked=[1], now=NOW).to_bytes()
    at = data.index(b"\x02\x01\x01")  # the TBS version v2
    with pytest.raises(DecodeError):
        RevocationList.from_bytes(data[:at] + b"\x02\x01\x00" + data[at + 3 :])
