"""Interoperability with standard tooling: the ``openssl`` command line (3.0).

An RSA key and certificate request made by openssl (as an agency token's software would),
a signer certificate issued from it by a p2pdoc sub-CA or by ``openssl x509 -req`` with the
sub-CA's key, signatures made by ``openssl dgst`` over the documented signed bytes, verified
by p2pdoc; and the reverse: openssl verifies p2pdoc's Ed25519 chains and signatures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from p2pdoc.errors import SignatureInvalid
from p2pdoc.model import Cid, Multicodec
from p2pdoc.trust import (
    DocumentSignature,
    SignatureAlgorithm,
    SignatureSet,
    document_signature_payload,
    load_signing_key,
    save_key,
    sign_document,
    verify_document_signatures,
)
from p2pdoc.trust.profile import OID_DOCUMENT_SIGNING

from .conftest import H49, NOW, Pki

OPENSSL = "/usr/bin/openssl"
ROOT = Cid.of(Multicodec.DAG_CBOR, b"a document signed with a token")


def _openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        [OPENSSL, *map(str, args)], input=stdin, capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, x509.CertificateSigningRequest]:
    """An RSA-2048 key and a CSR made by openssl."""
    folder = tmp_path_factory.mktemp("token")
    key = folder / "token.key"
    csr = folder / "token.csr"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    _openssl(
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        "/CN=Token Holder/title=Văn thư",
        "-utf8",
        "-out",
        csr,
    )
    request = x509.load_pem_x509_csr(csr.read_bytes())
    assert request.is_signature_valid
    return key, request


@pytest.mark.parametrize(
    ("algorithm", "sigopts"),
    [
        (SignatureAlgorithm.RSA_PKCS1V15_SHA256, ()),
        (
            SignatureAlgorithm.RSA_PSS_SHA256,
            ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"),
        ),
        (
            SignatureAlgorithm.RSA_PSS_SHA256,
            ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"),
        ),
    ],
)
def test_openssl_rsa_signature_verifies_in_p2pdoc(
    pki: Pki,
    token: tuple[Path, x509.CertificateSigningRequest],
    tmp_path: Path,
    algorithm: SignatureAlgorithm,
    sigopts: tuple[str, ...],
) -> None:
    key_path, request = token
    public_key = request.public_key()
    chain = pki.h49.issue_signer(
        agency=H49,
        full_name="Token Holder",
        position="Văn thư",
        public_key=public_key,  # type: ignore[arg-type]
        now=NOW,
    )
    signed_at = NOW + dt.timedelta(minutes=1)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(
        document_signature_payload(
            root=ROOT,
            role="number",
            signed_at=signed_at,
            algorithm=algorithm,
            signer_certificate=chain[0],
        )
    )
    signature_path = tmp_path / "payload.sig"
    _openssl("dgst", "-sha256", "-sign", key_path, *sigopts, "-out", signature_path, payload)
    signature = DocumentSignature(
        root=ROOT,
        role="number",
        signed_at=signed_at,
        algorithm=algorithm,
        chain=chain,
        signature=signature_path.read_bytes(),
    )
    travelled = SignatureSet.decode(SignatureSet((signature,)).encode())
    [result] = verify_document_signatures(
        ROOT, travelled, trust=pki.trust(), now=NOW + dt.timedelta(minutes=2)
    )
    assert result.signer.full_name == "Token Holder"
    assert result.algorithm is algorithm
    # The same bytes with one flipped bit are refused.
    bad = bytearray(signature.signature)
    bad[10] ^= 1
    with pytest.raises(SignatureInvalid):
        verify_document_signatures(
            ROOT,
            [dataclasses.replace(signature, signature=bytes(bad))],
            trust=pki.trust(),
            now=NOW + dt.timedelta(minutes=2),
        )


def test_openssl_made_key_file_loads_and_signs(
    pki: Pki, token: tuple[Path, x509.CertificateSigningRequest]
) -> None:
    key_path, request = token
    key_path.chmod(0o600)
    key = load_signing_key(key_path)
    chain = pki.h49.issue_signer(
        agency=H49,
        full_name="Token Holder",
        public_key=request.public_key(),  # type: ignore[arg-type]
        now=NOW,
    )
    signature = sign_document(ROOT, role="organisation", key=key, chain=chain, now=NOW)
    assert signature.algorithm is SignatureAlgorithm.RSA_PSS_SHA256
    verify_document_signatures(ROOT, [signature], trust=pki.trust(), now=NOW)


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def test_openssl_issued_rsa_signer_certificate_and_signature_verify_in_p2pdoc(
    pki: Pki, token: tuple[Path, x509.CertificateSigningRequest], tmp_path: Path
) -> None:
    # The sub-CA run with standard tooling: `openssl x509 -req` issues the signer
    # certificate of the p2pdoc profile from the token's request, `openssl dgst` signs.
    key_path, _ = token
    save_key(tmp_path / "h49.key", pki.h49.key)
    (tmp_path / "h49.pem").write_bytes(_pem(pki.h49.certificate))
    (tmp_path / "signer.cnf").write_text(
        "[signer]\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, nonRepudiation\n"
        f"extendedKeyUsage = {OID_DOCUMENT_SIGNING.dotted_string}\n"
        f"subjectAltName = URI:urn:p2pdoc:agency:{H49}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    # openssl stamps the machine's clock as notBefore; validation runs just after it.
    _openssl(
        "x509",
        "-req",
        "-in",
        key_path.with_name("token.csr"),
        "-CA",
        tmp_path / "h49.pem",
        "-CAkey",
        tmp_path / "h49.key",
        "-set_serial",
        "0x5a17c0ffee",
        "-days",
        "30",
        "-extfile",
        tmp_path / "signer.cnf",
        "-extensions",
        "signer",
        "-out",
        tmp_path / "signer.pem",
    )
    leaf = x509.load_pem_x509_certificate((tmp_path / "signer.pem").read_bytes())
    chain = (leaf.public_bytes(serialization.Encoding.DER), pki.h49.certificate)
    signed_at = leaf.not_valid_before_utc + dt.timedelta(minutes=1)
    (tmp_path / "payload.bin").write_bytes(
        document_signature_payload(
            root=ROOT,
            role="number",
            signed_at=signed_at,
            algorithm=SignatureAlgorithm.RSA_PKCS1V15_SHA256,
            signer_certificate=chain[0],
        )
    )
    _openssl(
        "dgst",
        "-sha256",
        "-sign",
        key_path,
        "-out",
        tmp_path / "payload.sig",
        tmp_path / "payload.bin",
    )
    signature = DocumentSignature(
        root=ROOT,
        role="number",
        signed_at=signed_at,
        algorithm=SignatureAlgorithm.RSA_PKCS1V15_SHA256,
        chain=chain,
        signature=(tmp_path / "payload.sig").read_bytes(),
    )
    [result] = verify_document_signatures(
        ROOT, [signature], trust=pki.trust(), now=signed_at + dt.timedelta(minutes=1)
    )
    assert (result.signer.full_name, result.signer.position) == ("Token Holder", "Văn thư")
    assert result.signer.agency == H49
    assert result.fingerprints[:2] == (
        hashlib.sha256(chain[0]).digest(),
        hashlib.sha256(pki.h49.certificate).digest(),
    )


def test_openssl_verifies_p2pdoc_chains(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(_pem(pki.root.certificate))
    (tmp_path / "sub.pem").write_bytes(_pem(pki.h49.certificate))
    for name, chain in (("node", pki.h49_node.chain), ("signer", pki.signers[0].chain)):
        (tmp_path / f"{name}.pem").write_bytes(_pem(chain[0]))
        out = _openssl(
            "verify",
            "-attime",
            str(int(NOW.timestamp())),
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "sub.pem",
            tmp_path / f"{name}.pem",
        )
        assert out.strip().endswith(b"OK")
    text = _openssl("x509", "-noout", "-text", "-in", tmp_path / "node.pem").decode()
    assert "URI:urn:p2pdoc:agency:000.00.00.H49" in text
    assert f"URI:urn:p2pdoc:peer:{pki.h49_node.peer_id}" in text


def test_openssl_verifies_p2pdoc_ed25519_document_signature(pki: Pki, tmp_path: Path) -> None:
    signer = pki.signers[0]
    signature = sign_document(
        ROOT, role="competent-signer", key=signer.key, chain=signer.chain, now=NOW
    )
    (tmp_path / "payload.bin").write_bytes(signature.payload())
    (tmp_path / "payload.sig").write_bytes(signature.signature)
    (tmp_path / "signer.pem").write_bytes(_pem(signer.chain[0]))
    _openssl(
        "x509", "-in", tmp_path / "signer.pem", "-pubkey", "-noout", "-out", tmp_path / "pub.pem"
    )
    out = _openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        tmp_path / "pub.pem",
        "-rawin",
        "-in",
        tmp_path / "payload.bin",
        "-sigfile",
        tmp_path / "payload.sig",
    )
    assert b"Signature Verified Successfully" in out
