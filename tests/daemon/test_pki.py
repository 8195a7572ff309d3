"""Enrolment requests, CA directories, revocation lists and the data directory layout."""

from __future__ import annotations

import datetime as dt
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from p2pdoc_node.config import CONFIG_FILE, load_settings
from p2pdoc_node.datadir import InitOptions, enrol, init_data_dir, read_token
from p2pdoc_node.pki import (
    CaDirectory,
    load_trust_store,
    parse_request,
    read_certificates,
    revocation_files,
)

from p2pdoc.errors import (
    CertificateRevoked,
    ConfigError,
    DecodeError,
    KeyFileError,
    OutsideSubtree,
    SignatureInvalid,
)
from p2pdoc.model.ids import AgencyCode
from p2pdoc.trust.identity import NodeIdentity
from p2pdoc.trust.profile import CertificateKind, parse_certificate
from p2pdoc.trust.validation import CertificatePurpose

NOW = dt.datetime.now(dt.UTC)
QN = AgencyCode("000.00.00.H49")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_private_keys_0600_and_requests_the_ca_can_certify(tmp_path: Path) -> None:
    data = tmp_path / "node"
    result = init_data_dir(
        InitOptions(
            data_dir=data, agency=QN, name="UBND tỉnh Quảng Ninh", signer_name="Cao Tường Huy"
        )
    )
    assert not result.enrolled
    for key in (
        "keys/node-identity.key",
        "keys/node-agreement.key",
        "signers/competent-signer.key",
        "api-token",
    ):
        assert mode(data / key) == 0o600, key
    assert mode(data) == 0o700 and mode(data / "keys") == 0o700
    assert len(read_token(data / "api-token")) >= 40
    node_request = parse_request((data / "keys/node-request.csr").read_bytes())
    assert node_request.kind == "node" and node_request.agency == QN
    assert node_request.peer == result.peer and node_request.x25519_public is not None
    signer_request = parse_request((data / "signers/competent-signer.csr").read_bytes())
    assert signer_request.kind == "signer" and signer_request.name == "Cao Tường Huy"

    root = CaDirectory.create_root(tmp_path / "root", name="Root", now=NOW)
    province = CaDirectory.create_sub(tmp_path / "qn", root, agency=QN, name="CA QN", now=NOW)
    enrol(load_settings(data / CONFIG_FILE, env={}), province, now=NOW)
    identity = NodeIdentity.load(data / "keys")
    assert identity.agency == QN and identity.peer_id == result.peer
    trust = load_trust_store([data / "trust/root.pem"], [data / "trust/crl"], now=NOW)
    identity.validate(trust=trust, now=NOW)
    signer = read_certificates(data / "signers/competent-signer.pem")
    verified = trust.validate(signer, purpose=CertificatePurpose.SIGNER, now=NOW)
    assert verified.leaf.kind is CertificateKind.SIGNER and verified.agency == QN
    assert [i.kind for i in province.register()] == ["node", "signer"]
    assert [i.kind for i in root.register()] == ["ca"]


def test_the_ca_refuses_forged_and_foreign_requests(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_data_dir(InitOptions(data_dir=data, agency=QN, name="Quảng Ninh"))
    request = (data / "keys/node-request.csr").read_bytes()
    with pytest.raises(DecodeError):
        parse_request(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = bytearray(x509.load_pem_x509_csr(request).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # a bit of the signature
    with pytest.raises(SignatureInvalid):
        parse_request(bytes(der))
    root = CaDirectory.create_root(tmp_path / "root", name="Root", now=NOW)
    ha_nam = CaDirectory.create_sub(
        tmp_path / "hn", root, agency=AgencyCode("000.00.00.H35"), name="CA HN", now=NOW
    )
    with pytest.raises(OutsideSubtree):
        ha_nam.issue(parse_request(request), now=NOW)
    with pytest.raises(KeyFileError, match="already exists"):
        CaDirectory.create_root(tmp_path / "root", name="Root", now=NOW)
    with pytest.raises(ConfigError, match="already exists"):
        init_data_dir(InitOptions(data_dir=data, agency=QN, name="again"))


def test_revocation_list_written_by_the_ca_rejects_the_node(tmp_path: Path) -> None:
    root = CaDirectory.create_root(tmp_path / "root", name="Root", now=NOW)
    province = CaDirectory.create_sub(tmp_path / "qn", root, agency=QN, name="CA QN", now=NOW)
    data = tmp_path / "node"
    init_data_dir(InitOptions(data_dir=data, agency=QN, name="Quảng Ninh"), ca=province, now=NOW)
    chain = read_certificates(data / "keys/node-chain.pem")
    serial = parse_certificate(chain[0]).serial
    province.revoke([serial], now=NOW)
    crl_dir = tmp_path / "crl"
    crl_dir.mkdir()
    (crl_dir / "qn.pem").write_bytes((province.path / "crl.pem").read_bytes())
    trust = load_trust_store([root.path / "root.pem"], [crl_dir], now=NOW)
    with pytest.raises(CertificateRevoked):
        NodeIdentity.load(data / "keys").validate(trust=trust, now=NOW)
    assert province.revocation_list() is not None
    assert province.revocation_list().version == 1  # type: ignore[union-attr]


def test_encrypted_keys_need_their_passphrase(tmp_path: Path) -> None:
    data = tmp_path / "node"
    root = CaDirectory.create_root(tmp_path / "root", name="Root", now=NOW)
    init_data_dir(
        InitOptions(
            data_dir=data,
            agency=QN,
            name="Quảng Ninh",
            passphrase="bí mật",
            passphrase_env="QN_PASS",
        ),
        ca=root,
        now=NOW,
    )
    assert b"ENCRYPTED" in (data / "keys/node-identity.key").read_bytes()
    settings = load_settings(data / CONFIG_FILE, env={})
    assert settings.identity.passphrase_env == "QN_PASS"
    assert settings.signers[0].passphrase_env == "QN_PASS"
    with pytest.raises(KeyFileError, match="passphrase"):
        NodeIdentity.load(data / "keys")
    assert NodeIdentity.load(data / "keys", passphrase="bí mật").agency == QN


def test_a_revocation_list_directory_that_cannot_be_listed_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory the daemon may not read (permissions changed under it) must not stop the
    periodic reload: the lists already loaded stay in force."""
    readable, locked = tmp_path / "crl", tmp_path / "locked"
    readable.mkdir()
    locked.mkdir()
    (readable / "root.pem").write_bytes(b"")
    (locked / "h49.pem").write_bytes(b"")
    listing = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert revocation_files([locked, readable]) == [readable / "root.pem"]
    assert "Permission denied" in caplog.text
