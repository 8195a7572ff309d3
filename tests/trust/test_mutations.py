"""Random mutations of certificates, signatures and revocation lists never validate and never
raise anything but the project's errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdoc.errors import CertificateRejected, P2pdocError
from p2pdoc.model import Cid, Multicodec
from p2pdoc.trust import (
    CertificatePurpose,
    RevocationList,
    SignatureSet,
    sign_document,
    verify_document_signatures,
    verify_node_chain,
)

from .conftest import NOW, Pki, build_pki

ROOT = Cid.of(Multicodec.DAG_CBOR, b"mutated document")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_PKI: Pki | None = None


def _pki() -> Pki:
    # Hypothesis runs a test many times; a module-level PKI avoids function-scoped fixtures.
    global _PKI
    if _PKI is None:
        _PKI = build_pki()
    return _PKI


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice"]))
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        out = bytearray(data)
        out[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set":
        out = bytearray(data)
        out[pos] = draw(st.integers(0, 255).filter(lambda b: b != data[pos]))
    elif kind == "truncate":
        out = bytearray(data[:pos])
    elif kind == "insert":
        out = bytearray(data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos:])
    elif kind == "delete":
        out = bytearray(data[:pos] + data[pos + 1 :])
    else:
        length = draw(st.integers(1, 16))
        out = bytearray(
            data[:pos] + draw(st.binary(min_size=length, max_size=length)) + data[pos + length :]
        )
    result = bytes(out)
    if result == data:
        result = data + b"\x00"
    return result


@SETTINGS
@given(st.data(), st.sampled_from(["leaf", "sub-ca"]))
def test_mutated_signer_chain_never_validates(data: st.DataObject, which: str) -> None:
    pki = _pki()
    leaf, sub = pki.signers[0].chain
    if which == "leaf":
        chain = (data.draw(mutation(leaf)), sub)
    else:
        chain = (leaf, data.draw(mutation(sub)))
    with pytest.raises(CertificateRejected):
        pki.trust().validate(chain, purpose=CertificatePurpose.SIGNER, now=NOW)


@SETTINGS
@given(st.data())
def test_mutated_node_chain_is_never_admitted(data: st.DataObject) -> None:
    pki = _pki()
    node = pki.h49_dept_node
    chain = (data.draw(mutation(node.chain[0])), node.chain[1])
    with pytest.raises(CertificateRejected):
        verify_node_chain(chain, expected_peer=node.peer_id, trust=pki.trust(), now=NOW)


_SET: bytes | None = None


def _signature_set() -> bytes:
    global _SET
    if _SET is None:
        pki = _pki()
        _SET = SignatureSet(
            tuple(
                sign_document(ROOT, role=role, key=s.key, chain=s.chain, now=NOW)
                for role, s in zip(("competent-signer", "organisation"), pki.signers, strict=False)
            )
        ).encode()
    return _SET


@SETTINGS
@given(st.data())
def test_mutated_signature_set_never_verifies(data: st.DataObject) -> None:
    pki = _pki()
    encoded = data.draw(mutation(_signature_set()))
    with pytest.raises(P2pdocError):
        verify_document_signatures(ROOT, SignatureSet.decode(encoded), trust=pki.trust(), now=NOW)


@SETTINGS
@given(st.data(), st.integers(0, 1))
def test_mutated_signature_bytes_never_verify(data: st.DataObject, index: int) -> None:
    pki = _pki()
    signature = SignatureSet.decode(_signature_set()).signatures[index]
    mutated = data.draw(mutation(signature.signature))
    with pytest.raises(P2pdocError):
        bad = dataclasses.replace(signature, signature=mutated)
        verify_document_signatures(ROOT, [bad], trust=pki.trust(), now=NOW)


_LIST: bytes | None = None


def _revocation_list() -> bytes:
    global _LIST
    if _LIST is None:
        _LIST = _pki().h49.issue_revocation_list(revoked=[11, 22, 33], now=NOW).to_bytes()
    return _LIST


@SETTINGS
@given(st.data())
def test_mutated_revocation_list_is_never_accepted(data: st.DataObject) -> None:
    pki = _pki()
    trust = pki.trust()
    trust.add_ca(pki.h49.chain, now=NOW)
    mutated = data.draw(mutation(_revocation_list()))
    with pytest.raises(P2pdocError):
        lst = RevocationList.from_bytes(mutated)
        trust.add_revocation_list(lst, now=NOW)
    assert trust.revocation_lists() == ()
    assert trust.generation == 0
