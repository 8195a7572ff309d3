"""Keys at rest: encrypted under a passphrase or owner-only files; never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from p2pdoc.errors import InvalidValue, KeyFileError, P2pdocError, SignatureInvalid
from p2pdoc.trust import (
    AgreementKey,
    KeyAlgorithm,
    NodeIdentity,
    SignatureAlgorithm,
    SigningKey,
    build_certificate,
    load_agreement_key,
    load_signing_key,
    parse_certificate,
    save_key,
    verify_signature,
)
from p2pdoc.trust.profile import OID_NODE

from .conftest import Pki

PASSPHRASE = "mật khẩu rất dài 2026"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE])
def test_round_trip_with_owner_only_mode(tmp_path: Path, passphrase: str | None) -> None:
    key = SigningKey.generate()
    path = tmp_path / "signer.key"
    old_umask = os.umask(0o022)
    try:
        save_key(path, key, passphrase=passphrase)
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    loaded = load_signing_key(path, passphrase=passphrase)
    assert loaded.key_id == key.key_id
    encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert encrypted is (passphrase is not None)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_group_or_world_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_key(path, SigningKey.generate())
    for mode in (0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(KeyFileError) as info:
            load_signing_key(path)
        assert "chmod 600" in str(info.value)
        assert info.value.key == str(path)


def test_passphrase_errors_are_clear_and_carry_no_secret(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "k.key"
    save_key(path, key, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError, match="passphrase is required"):
        load_signing_key(path)
    with pytest.raises(KeyFileError, match="wrong passphrase") as info:
        load_signing_key(path, passphrase="not it")
    assert "not it" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    plain = tmp_path / "plain.key"
    save_key(plain, key)
    with pytest.raises(KeyFileError, match="not encrypted"):
        load_signing_key(plain, passphrase=PASSPHRASE)
    with pytest.raises(InvalidValue):
        save_key(tmp_path / "empty.key", key, passphrase="")


def test_existing_key_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first, second = SigningKey.generate(), SigningKey.generate()
    save_key(path, first)
    with pytest.raises(KeyFileError, match="already exists"):
        save_key(path, second)
    assert load_signing_key(path).key_id == first.key_id
    save_key(path, second, overwrite=True)
    assert load_signing_key(path).key_id == second.key_id
    assert len(list(tmp_path.iterdir())) == 1


def test_wrong_kind_of_key_file(tmp_path: Path) -> None:
    signing, agreement = tmp_path / "s.key", tmp_path / "a.key"
    save_key(signing, SigningKey.generate())
    save_key(agreement, AgreementKey.generate())
    with pytest.raises(KeyFileError):
        load_agreement_key(signing)
    with pytest.raises(KeyFileError):
        load_signing_key(agreement)
    assert load_agreement_key(agreement).public_bytes
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_signing_key(junk)
    with pytest.raises(KeyFileError):
        load_signing_key(tmp_path / "missing.key")


def test_repr_and_errors_never_show_key_material(tmp_path: Path) -> None:
    ed = SigningKey.generate()
    raw = ed.ed25519_private_bytes()
    agreement = AgreementKey.generate()
    secret = agreement._private().private_bytes_raw()
    texts = [repr(ed), str(ed), repr(agreement), str(agreement)]
    path = tmp_path / "k.key"
    save_key(path, ed, passphrase=PASSPHRASE)
    for attempt in ("wrong", None):
        try:
            load_signing_key(path, passphrase=attempt)
        except P2pdocError as exc:
            texts.append(str(exc))
    for text in texts:
        assert raw.hex() not in text and secret.hex() not in text
        assert PASSPHRASE not in text


@pytest.mark.parametrize(
    "algorithm", [KeyAlgorithm.ED25519, KeyAlgorithm.ECDSA_P256, KeyAlgorithm.ECDSA_P384]
)
def test_every_key_type_saves_and_signs(tmp_path: Path, algorithm: KeyAlgorithm) -> None:
    key = SigningKey.generate(algorithm)
    save_key(tmp_path / "k.key", key, passphrase=PASSPHRASE)
    loaded = load_signing_key(tmp_path / "k.key", passphrase=PASSPHRASE)
    signature = loaded.sign(b"data")
    verify_signature(key.public_key, key.default_signature_algorithm, b"data", signature)
    with pytest.raises(SignatureInvalid):
        verify_signature(key.public_key, key.default_signature_algorithm, b"datA", signature)


def test_signing_key_rules() -> None:
    with pytest.raises(InvalidValue):
        SigningKey.generate(KeyAlgorithm.RSA, rsa_bits=1024)
    ed = SigningKey.generate()
    with pytest.raises(InvalidValue):
        ed.sign(b"x", SignatureAlgorithm.RSA_PSS_SHA256)
    with pytest.raises(InvalidValue):
        SigningKey.generate(KeyAlgorithm.ECDSA_P256).ed25519_private_bytes()
    with pytest.raises(SignatureInvalid):
        verify_signature(ed.public_key, SignatureAlgorithm.ED25519, b"x", b"short")


def test_node_identity_saves_and_loads(pki: Pki, tmp_path: Path) -> None:
    node = pki.h49_node
    node.save(tmp_path, passphrase=PASSPHRASE)
    assert _mode(tmp_path / "node-identity.key") == 0o600
    assert _mode(tmp_path / "node-agreement.key") == 0o600
    loaded = NodeIdentity.load(tmp_path, passphrase=PASSPHRASE)
    assert (loaded.peer_id, loaded.agency, loaded.chain) == (node.peer_id, node.agency, node.chain)
    with pytest.raises(KeyFileError):
        node.save(tmp_path, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError):
        NodeIdentity.load(tmp_path)
    (tmp_path / "node-chain.pem").write_bytes(b"garbage")
    with pytest.raises(KeyFileError):
        NodeIdentity.load(tmp_path, passphrase=PASSPHRASE)


def test_verification_refuses_an_algorithm_that_does_not_fit_the_key() -> None:
    ed = SigningKey.generate()
    signature = ed.sign(b"data")
    verify_signature(ed.public_key, SignatureAlgorithm.ED25519, b"data", signature)
    for other in (SignatureAlgorithm.ECDSA_P256_SHA256, SignatureAlgorithm.RSA_PSS_SHA256):
        with pytest.raises(SignatureInvalid):
            verify_signature(ed.public_key, other, b"data", signature)
    p256 = SigningKey.generate(KeyAlgorithm.ECDSA_P256)
    with pytest.raises(SignatureInvalid):
        verify_signature(
            p256.public_key, SignatureAlgorithm.ECDSA_P384_SHA384, b"data", p256.sign(b"data")
        )
    for bad in ("not bytes", None):
        with pytest.raises(SignatureInvalid):
            verify_signature(ed.public_key, SignatureAlgorithm.ED25519, b"data", bad)  # type: ignore[arg-type]


def test_node_identity_save_writes_nothing_when_a_file_already_exists(
    pki: Pki, tmp_path: Path
) -> None:
    (tmp_path / "node-chain.pem").write_bytes(b"an earlier chain")
    with pytest.raises(KeyFileError, match=r"node-chain\.pem"):
        pki.h49_node.save(tmp_path, passphrase=PASSPHRASE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-chain.pem"]
    assert (tmp_path / "node-chain.pem").read_bytes() == b"an earlier chain"


def test_a_chain_that_cannot_be_written_leaves_no_temporary_file(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "node-chain.pem").mkdir()  # something in the way that cannot be replaced
    (tmp_path / "node-chain.pem" / "x").write_bytes(b"")
    with pytest.raises(KeyFileError, match="cannot write"):
        pki.h49_node.save(tmp_path, passphrase=PASSPHRASE, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_node_identity_with_a_rejected_chain_certificate_is_a_key_file_error(
    pki: Pki, tmp_path: Path
) -> None:
    node = pki.h49_node
    node.save(tmp_path)
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")
    leaf = parse_certificate(node.chain[0])
    der = build_certificate(
        subject=leaf.subject_name,
        public_key=node.signing_key.public_key,
        issuer_name=pki.h49.info.subject_name,
        issuer_key=pki.h49.key,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        ca=False,
        extended_key_usage=(OID_NODE,),
        extra=((odd, True),),  # an unknown critical extension: ChainInvalid when parsed
    )
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "node-chain.pem").write_bytes(pem)
    with pytest.raises(KeyFileError, match="unusable chain"):
        NodeIdentity.load(tmp_path)
