"""Identifiers: checked text forms, hierarchy navigation, clear errors."""

from __future__ import annotations

import base64
import datetime as dt
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.errors import InvalidValue
from p2pdoc.model import AgencyCode, DocumentId, PeerId

codes = st.builds(
    lambda l4, l3, l2, letter, top: AgencyCode(f"{l4:03d}.{l3:02d}.{l2:02d}.{letter}{top:02d}"),
    st.integers(0, 999),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from("GHK"),
    st.integers(1, 99),
)


@pytest.mark.parametrize(
    ("text", "level", "parent"),
    [
        ("000.00.00.G22", 1, None),
        ("000.00.00.H49", 1, None),
        ("000.00.04.G14", 2, "000.00.00.G14"),
        ("000.05.00.H49", 3, "000.00.00.H49"),
        ("002.00.20.H13", 4, "000.00.20.H13"),
        ("012.05.03.H49", 4, "000.05.03.H49"),
    ],
)
def test_levels_and_parents(text: str, level: int, parent: str | None) -> None:
    code = AgencyCode(text)
    assert str(code) == text
    assert code.level == level
    assert code.parent() == (AgencyCode(parent) if parent else None)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("00.00.00.G22", "level-4 group '00' must be 3 digits"),
        ("000.00.00.22", "level-1 group '22' must be an upper-case letter and 2 digits"),
        ("000.0.00.G22", "level-3 group '0' must be 2 digits"),
        ("000.00.00.g22", "upper-case letter"),
        ("000.00.00", "4 dot-separated groups"),
        ("000.01.00.G00", "level 1 (G00) is unset"),
        ("001.00.00.H00", "nothing may be set under an unset level 1"),
        ("000.00.00.G22 ", "level-1 group"),
        ("", "4 dot-separated groups"),
    ],
)
def test_malformed_codes_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(InvalidValue, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        AgencyCode(text)


def test_non_str_code_rejected() -> None:
    with pytest.raises(InvalidValue):
        AgencyCode(22)  # type: ignore[arg-type]


def test_subtree_relations() -> None:
    province = AgencyCode("000.00.00.H49")
    department = AgencyCode("000.05.00.H49")
    commune = AgencyCode("012.05.03.H49")
    other = AgencyCode("000.00.00.H41")
    assert province.is_ancestor_of(department)
    assert province.is_ancestor_of(commune)
    assert not province.is_ancestor_of(province)
    assert province.contains(province)
    assert not province.contains(other)
    assert not department.is_ancestor_of(commune)  # 012.05.03 sits under 000.05.03, not 000.05.00
    assert commune.ancestors() == [
        AgencyCode("000.05.03.H49"),
        AgencyCode("000.00.03.H49"),
        province,
    ]
    assert commune.root == province


@given(codes)
def test_ancestors_end_at_level_one_and_contain_descendant(code: AgencyCode) -> None:
    chain = code.ancestors()
    set_lower_groups = sum(1 for g in str(code).split(".")[:3] if int(g))
    assert len(chain) == set_lower_groups  # skipped levels are not ancestors
    assert all(a.is_ancestor_of(code) for a in chain)
    assert (chain[-1] if chain else code).level == 1
    assert AgencyCode(str(code)) == code
    assert pickle.loads(pickle.dumps(code)) == code


def test_document_id_roundtrip_with_unicode_notation() -> None:
    text = "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    doc_id = DocumentId.parse(text)
    assert str(doc_id) == text
    assert doc_id.agency == AgencyCode("000.00.00.G22")
    assert doc_id.date == dt.date(2015, 9, 30)
    assert doc_id.number == 7816
    assert doc_id.notation == "VPCP-TTĐT"
    assert DocumentId.parse("000.00.00.G22,2015/09/30,12/2015/NĐ-CP").notation == "2015/NĐ-CP"


@given(st.dates(), st.integers(0, 10**10 - 1))
def test_document_id_text_form_parses_back_for_any_date(date: dt.date, number: int) -> None:
    """Years below 1000 are written with four digits, as the text form requires."""
    doc_id = DocumentId(AgencyCode("000.00.00.G22"), date, number, "VPCP")
    assert DocumentId.parse(str(doc_id)) == doc_id
    assert pickle.loads(pickle.dumps(doc_id)) == doc_id


@pytest.mark.parametrize(
    "text",
    [
        "000.00.00.G22,2015/02/30,1/X",  # no such date
        "000.00.00.G22,2015-09-30,1/X",
        "000.00.00.G22,2015/09/30,/X",
        "000.00.00.G22,2015/09/30,1/",
        "000.00.00.G22,2015/09/30,1/a,b",
        "00.00.00.G22,2015/09/30,1/X",
        "000.00.00.G22,2015/09/30,1/X\u0000",
    ],
)
def test_bad_document_ids(text: str) -> None:
    with pytest.raises(InvalidValue):
        DocumentId.parse(text)


def test_peer_id_matches_libp2p_text_form() -> None:
    # The Ed25519 identity-multihash peer ID of an all-zero key, as libp2p prints it.
    peer = PeerId.from_ed25519(bytes(32))
    assert str(peer).startswith("12D3KooW")
    assert PeerId.parse(str(peer)) == peer
    assert peer.ed25519_public_key() == bytes(32)


@pytest.mark.parametrize(
    "text", ["", "0OIl", "1" * 200, "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"[:-3]]
)
def test_bad_peer_ids(text: str) -> None:
    with pytest.raises(InvalidValue):
        PeerId.parse(text)


RAW_EMPTY = Cid.of(Multicodec.RAW, b"").to_bytes()


def test_cid_text_forms() -> None:
    cid = Cid.of(Multicodec.RAW, b"")
    assert str(cid) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert Cid.parse(str(cid)) == cid
    assert Cid.parse(str(cid).upper().replace("B", "B", 1)) == cid  # base32upper 'B...'
    assert Cid.parse("f" + cid.to_bytes().hex()) == cid
    assert Cid.from_bytes(cid.to_bytes()) == cid
    assert Cid.parse("m" + base64.b64encode(cid.to_bytes()).decode().rstrip("=")) == cid
    assert Cid.parse("u" + base64.urlsafe_b64encode(cid.to_bytes()).decode().rstrip("=")) == cid


def test_cids_are_totally_ordered_by_their_bytes() -> None:
    a, b = sorted(Cid.of(Multicodec.RAW, bytes([i])) for i in range(2))
    assert a < b and a <= b and b > a and b >= a and a <= a
    assert a.to_bytes() < b.to_bytes()
    with pytest.raises(TypeError):
        assert a < "b"  # type: ignore[operator]
    with pytest.raises(InvalidValue, match="codec"):
        Cid(0x99, bytes(32))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "CIDv0"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk", "digest|base32"),
        ("xyz", "multibase"),
        ("", "empty"),
        # CIDv1, codec raw, blake3 multihash
        ("f01551e20" + "00" * 32, "blake3"),
        # CIDv1, codec 0x0129 (dag-json)
        ("f01a9021220" + "00" * 32, "codec"),
        # one text form per CID: no whitespace, skipped characters or padding
        ("f01 551220" + "00" * 32, "base16"),
        ("m" + base64.b64encode(RAW_EMPTY).decode() + "!", "base64"),
        ("u" + base64.urlsafe_b64encode(RAW_EMPTY).decode().rstrip("=") + "*", "base64"),
        ("m" + base64.b64encode(RAW_EMPTY + b"\0").decode(), "padded|base64"),
    ],
)
def test_bad_cids_say_why(text: str, complaint: str) -> None:
    with pytest.raises(InvalidValue, match=complaint):
        Cid.parse(text)


@pytest.mark.parametrize(("canonical", "other"), [("mAA", "mAB"), ("uAP8", "uAP9"), ("bae", "baf")])
def test_one_text_per_byte_string_unused_bits_must_be_zero(canonical: str, other: str) -> None:
    from p2pdoc.codecs.multiformats import multibase_decode
    from p2pdoc.errors import DecodeError

    multibase_decode(canonical)
    with pytest.raises(DecodeError, match="padding bits"):
        multibase_decode(other)


@given(st.binary(max_size=80))
def test_random_cid_bytes_raise_only_project_errors(data: bytes) -> None:
    from p2pdoc.errors import DecodeError

    try:
        cid = Cid.from_bytes(data)
    except DecodeError:
        return
    assert cid.to_bytes() == data
