"""Batch-signed evidence: every record verifies alone; any change breaks it."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.delivery.evidence import (
    Evidence,
    Receipt,
    Staff,
    StatusCode,
    StatusReport,
    merkle_audit_path,
    merkle_root,
    root_from_audit_path,
    sign_batch,
    verify_evidence,
)
from p2pdoc.errors import (
    DecodeError,
    InvalidValue,
    PeerIdMismatch,
    SignatureInvalid,
    UnknownIssuer,
    VerificationError,
)
from p2pdoc.model.ids import AgencyCode, DocumentId, PeerId
from p2pdoc.node.clock import TrioWallClock
from p2pdoc.node.trustgate import IdentityCredentials, TrustGate
from p2pdoc.simulation import EPOCH_MS, Mesh


@pytest.fixture(scope="module")
def pki() -> Mesh:
    mesh = Mesh(seed=11)
    mesh.add_agency("000.00.00.H49")
    mesh.add_agency("000.00.00.H35")
    return mesh


def node(pki: Mesh, code: str = "000.00.00.H49") -> IdentityCredentials:
    return IdentityCredentials(pki.agencies[AgencyCode(code)].identity)


def verifier(pki: Mesh) -> TrustGate:
    return TrustGate(pki.trust_store(), TrioWallClock(EPOCH_MS))


@given(st.integers(1, 70), st.data())
def test_audit_paths_reproduce_the_tree_head(n: int, data: st.DataObject) -> None:
    bodies = [bytes([i % 256, i // 256]) for i in range(n)]
    index = data.draw(st.integers(0, n - 1))
    path = merkle_audit_path(index, bodies)
    assert root_from_audit_path(index, n, bodies[index], path) == merkle_root(bodies)
    assert len(path) <= max(1, (n - 1).bit_length())


@given(st.integers(2, 40), st.data())
def test_wrong_leaf_index_or_size_does_not_reproduce_the_head(n: int, data: st.DataObject) -> None:
    bodies = [bytes([i]) for i in range(n)]
    index = data.draw(st.integers(0, n - 1))
    path = merkle_audit_path(index, bodies)
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index))
    try:
        head = root_from_audit_path(other, n, bodies[index], path)
    except VerificationError:
        return
    assert head != merkle_root(bodies)


def receipt(i: int) -> Receipt:
    return Receipt(
        root=Cid.of(Multicodec.DAG_CBOR, bytes([i])),
        document_id=DocumentId.parse(f"000.00.00.G22,2019/03/12,{i}/VPCP-TTĐT"),
        sender=AgencyCode("000.00.00.G22"),
        recipient=AgencyCode("000.00.00.H49"),
        node=PeerId.from_ed25519(bytes(32)),
        received_at=1_552_348_800_000 + i,
        files=(Cid.of(Multicodec.RAW, b"file"),),
        signatures_digest=bytes(32),
    )


def test_batch_of_receipts_verifies_record_by_record(pki: Mesh) -> None:
    bodies = [receipt(i).encode() for i in range(37)]
    signed = sign_batch(bodies, node(pki), signed_at=EPOCH_MS)
    check = verifier(pki)
    for i, data in enumerate(signed):
        verified = verify_evidence(data, check)
        assert verified.signer == AgencyCode("000.00.00.H49")
        assert Receipt.decode(verified.evidence.body) == receipt(i)


def test_single_record_is_a_batch_of_one(pki: Mesh) -> None:
    (data,) = sign_batch([receipt(1).encode()], node(pki), signed_at=EPOCH_MS)
    assert Evidence.decode(data).path == ()
    verify_evidence(data, verifier(pki))


def test_swapping_bodies_between_records_of_a_batch_fails(pki: Mesh) -> None:
    signer = node(pki)
    batch = sign_batch([receipt(i).encode() for i in range(4)], signer, signed_at=EPOCH_MS)
    first, second = Evidence.decode(batch[0]), Evidence.decode(batch[1])
    forged = dataclasses.replace(first, body=second.body)
    with pytest.raises(SignatureInvalid):
        verify_evidence(forged.encode(), verifier(pki))


def test_evidence_presenting_another_nodes_chain_fails(pki: Mesh) -> None:
    (data,) = sign_batch([receipt(1).encode()], node(pki), signed_at=EPOCH_MS)
    stolen = dataclasses.replace(Evidence.decode(data), chain=node(pki, "000.00.00.H35").chain)
    with pytest.raises(PeerIdMismatch):
        verify_evidence(stolen.encode(), verifier(pki))


def test_evidence_from_an_uncertified_node_fails(pki: Mesh) -> None:
    outsider = Mesh(seed=12).add_agency("000.00.00.H49")
    (data,) = sign_batch(
        [receipt(1).encode()], IdentityCredentials(outsider.identity), signed_at=EPOCH_MS
    )
    with pytest.raises(UnknownIssuer):
        verify_evidence(data, verifier(pki))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_evidence_never_verifies(pki: Mesh, data: st.DataObject) -> None:
    batch = sign_batch([receipt(i).encode() for i in range(3)], node(pki), signed_at=EPOCH_MS)
    raw = bytearray(batch[1])
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises((DecodeError, VerificationError)):
        verify_evidence(bytes(raw), verifier(pki))


def test_status_reports_chain_by_digest() -> None:
    first = StatusReport(
        root=Cid.of(Multicodec.DAG_CBOR, b"doc"),
        document_id=DocumentId.parse("000.00.00.G22,2019/03/12,1/VPCP"),
        sender=AgencyCode("000.00.00.G22"),
        reporter=AgencyCode("000.00.00.H49"),
        node=PeerId.from_ed25519(bytes(32)),
        seq=1,
        prev=None,
        code=StatusCode.ARRIVED,
        at=1,
    )
    second = StatusReport(
        **{
            **{f: getattr(first, f) for f in StatusReport.__slots__},
            "seq": 2,
            "prev": first.digest(),
            "code": StatusCode.ACCEPTED,
            "staff": Staff(name="Trần Thị B", department="Văn thư"),
        }
    )
    assert StatusReport.decode(second.encode()) == second
    assert second.prev == first.digest()
    with pytest.raises(InvalidValue):
        StatusReport(**{**{f: getattr(first, f) for f in StatusReport.__slots__}, "seq": 2})


def test_receipt_body_must_be_canonical() -> None:
    body = cbor.decode(receipt(1).encode())
    body["received_at"] = True
    with pytest.raises(DecodeError):
        Receipt.decode(cbor.encode(body))


def test_random_bodies_raise_only_decode_errors() -> None:
    rng = random.Random(7)
    for _ in range(300):
        blob = rng.randbytes(rng.randint(0, 64))
        for decode in (Receipt.decode, StatusReport.decode, Evidence.decode):
            with pytest.raises(DecodeError):
                decode(blob)


@pytest.mark.parametrize("signed_at", [-1, 2**62, 2**64 - 1])
def test_signing_time_that_is_no_date_is_a_decode_error(pki: Mesh, signed_at: int) -> None:
    """A peer's receipt or report with such a time must fail as bad input, not with the
    ValueError the date conversion would raise."""
    (evidence,) = sign_batch([b"body"], node(pki), signed_at)
    with pytest.raises(DecodeError, match="not a date"):
        verify_evidence(evidence, verifier(pki))


def test_evidence_version_must_be_the_integer_one(pki: Mesh) -> None:
    (evidence,) = sign_batch([b"body"], node(pki), EPOCH_MS)
    value = cbor.decode(evidence)
    assert isinstance(value, dict)
    Evidence.decode(cbor.encode(value))
    for version in (True, 2, "1"):
        with pytest.raises(DecodeError):
            Evidence.decode(cbor.encode({**value, "v": version}))
