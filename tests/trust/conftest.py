"""A small national PKI shared by the trust tests: a root, two province sub-CAs, agencies
with nodes, and officials with signer certificates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from p2pdoc.model import AgencyCode
from p2pdoc.trust import (
    CertificateAuthority,
    KeyAlgorithm,
    NodeIdentity,
    SigningKey,
    TrustStore,
)

NOW = dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)

H49 = AgencyCode("000.00.00.H49")  # Quảng Ninh province
H41 = AgencyCode("000.00.00.H41")  # another province
H49_DEPT = AgencyCode("000.05.00.H49")  # a department of Quảng Ninh
H49_COMMUNE = AgencyCode("012.05.03.H49")  # a commune below one of its districts
H41_DEPT = AgencyCode("000.03.00.H41")


@dataclass(frozen=True)
class Signer:
    key: SigningKey
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class Pki:
    root: CertificateAuthority
    h49: CertificateAuthority
    h41: CertificateAuthority
    h49_node: NodeIdentity
    h49_dept_node: NodeIdentity
    h41_node: NodeIdentity
    signers: tuple[Signer, ...]  # six officials of Quảng Ninh
    h41_signer: Signer

    def trust(self, **kwargs: object) -> TrustStore:
        return TrustStore([self.root.certificate], **kwargs)  # type: ignore[arg-type]


def make_sub_ca(
    parent: CertificateAuthority, agency: AgencyCode, name: str
) -> CertificateAuthority:
    key = SigningKey.generate()
    chain = parent.issue_sub_ca(agency=agency, name=name, public_key=key.public_key, now=NOW)
    return CertificateAuthority(key, chain)


def make_signer(
    ca: CertificateAuthority,
    agency: AgencyCode,
    full_name: str,
    position: str = "",
    algorithm: KeyAlgorithm = KeyAlgorithm.ED25519,
) -> Signer:
    key = SigningKey.generate(algorithm, rsa_bits=2048)
    chain = ca.issue_signer(
        agency=agency, full_name=full_name, position=position, public_key=key.public_key, now=NOW
    )
    return Signer(key, chain)


def build_pki() -> Pki:
    root = CertificateAuthority.create_root(
        name="Ban Cơ yếu Chính phủ", key=SigningKey.generate(), now=NOW - dt.timedelta(days=30)
    )
    h49 = make_sub_ca(root, H49, "Quảng Ninh sub-CA")
    h41 = make_sub_ca(root, H41, "Province H41 sub-CA")
    officials = [
        ("Nguyễn Văn An", "Chủ tịch", H49),
        ("Trần Thị Bình", "Chánh Văn phòng", H49),
        ("Lê Văn Cường", "Văn thư", H49),
        ("Phạm Thị Dung", "Văn thư", H49),
        ("Hoàng Văn Em", "Giám đốc Sở", H49_DEPT),
        ("Đỗ Thị Giang", "Phó Chủ tịch", H49),
    ]
    return Pki(
        root=root,
        h49=h49,
        h41=h41,
        h49_node=NodeIdentity.issue(h49, agency=H49, name="h49-node", now=NOW),
        h49_dept_node=NodeIdentity.issue(h49, agency=H49_DEPT, name="h49-dept-node", now=NOW),
        h41_node=NodeIdentity.issue(h41, agency=H41, name="h41-node", now=NOW),
        signers=tuple(make_signer(h49, code, name, pos) for name, pos, code in officials),
        h41_signer=make_signer(h41, H41_DEPT, "Vũ Văn Hải", "Giám đốc"),
    )


@pytest.fixture(scope="session")
def pki() -> Pki:
    return build_pki()


@pytest.fixture
def trust(pki: Pki) -> TrustStore:
    return pki.trust()


@pytest.fixture(scope="session")
def rsa_signer(pki: Pki) -> Signer:
    """An official whose token holds an RSA-2048 key (generated once: it is slow)."""
    return make_signer(pki.h49, H49, "Token holder", "Văn thư", KeyAlgorithm.RSA)
