"""Envelope and manifest: validated on construction, canonical bytes, strict decoding."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.errors import ContentMismatch, DecodeError, InvalidValue
from p2pdoc.model import (
    AgencyCode,
    BusinessInfo,
    BusinessType,
    Classification,
    DocumentId,
    Envelope,
    FileEntry,
    Manifest,
    Organization,
    Priority,
    ResponseFor,
    SignerInfo,
)

GOV = AgencyCode("000.00.00.G22")
QUANG_NINH = AgencyCode("000.00.00.H49")
HA_NAM = AgencyCode("000.00.00.H35")


def envelope(**changes: object) -> Envelope:
    fields: dict[str, object] = {
        "sender": Organization(code=GOV, name="Văn phòng Chính phủ", email="vpcp@chinhphu.vn"),
        "recipients": (
            Organization(code=QUANG_NINH),
            Organization(code=HA_NAM, name="UBND tỉnh Hà Nam"),
        ),
        "number": 7816,
        "notation": "VPCP-TTĐT",
        "promulgation_date": dt.date(2015, 9, 30),
        "promulgation_place": "Hà Nội",
        "subject": "Về việc triển khai Trục liên thông văn bản quốc gia",
        "signer": SignerInfo(
            full_name="Mai Tiến Dũng", position="Bộ trưởng, Chủ nhiệm", competence="KT."
        ),
        "due_date": dt.date(2015, 10, 15),
        "priority": Priority.URGENT,
        "appendixes": ("Phụ lục I", "Phụ lục II"),
        "page_amount": 3,
    }
    fields.update(changes)
    return Envelope(**fields)  # type: ignore[arg-type]


def file_entry(name: str = "congvan.pdf", data: bytes = b"%PDF") -> FileEntry:
    return FileEntry(
        name=name, media_type="application/pdf", size=len(data), cid=Cid.of(Multicodec.RAW, data)
    )


def test_document_id_comes_from_sender_date_number_notation() -> None:
    assert envelope().document_id == DocumentId.parse("000.00.00.G22,2015/09/30,7816/VPCP-TTĐT")


def test_manifest_roundtrip_and_root_is_dag_cbor() -> None:
    manifest = Manifest(envelope=envelope(), files=(file_entry(), file_entry("phuluc.pdf", b"x")))
    data = manifest.encode()
    assert manifest.root == Cid.of(Multicodec.DAG_CBOR, data)
    assert Manifest.decode(data, expected=manifest.root) == manifest
    assert Manifest.decode(data).encode() == data


def test_manifest_checked_against_expected_cid() -> None:
    manifest = Manifest(envelope=envelope(), files=(file_entry(),))
    other = Manifest(envelope=envelope(number=1), files=())
    with pytest.raises(ContentMismatch):
        Manifest.decode(manifest.encode(), expected=other.root)


def test_business_types_need_a_target() -> None:
    target = DocumentId.parse("000.00.00.G22,2015/09/01,100/VPCP-TTĐT")
    env = envelope(
        business=BusinessInfo(type=BusinessType.REPLACE, reason="Sai sót", target=target)
    )
    assert Envelope.from_value(env.to_value()) == env
    with pytest.raises(InvalidValue, match="target"):
        BusinessInfo(type=BusinessType.REVOKE)
    with pytest.raises(InvalidValue, match="new document"):
        BusinessInfo(type=BusinessType.NEW, target=target)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"recipients": ()}, "at least one recipient"),
        ({"recipients": (Organization(code=QUANG_NINH), Organization(code=QUANG_NINH))}, "twice"),
        ({"subject": "  "}, "subject is required"),
        ({"subject": "x" * 3000}, "longer"),
        ({"notation": "A,B"}, "forbidden character"),
        ({"number": -1}, "number"),
        ({"priority": 9}, "priority"),
        ({"classification": 7}, "classification"),
        ({"subject": "bell\u0007"}, "forbidden character"),
    ],
)
def test_invalid_envelopes_say_why(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidValue, match=complaint):
        envelope(**changes)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("../etc/passwd", "text/plain"),
        ("a\\b", "text/plain"),
        ("", "text/plain"),
        ("a.pdf", "PDF"),
        ("a", "text"),
    ],
)
def test_invalid_file_entries(name: str, media_type: str) -> None:
    with pytest.raises(InvalidValue):
        FileEntry(name=name, media_type=media_type, size=1, cid=Cid.of(Multicodec.RAW, b"x"))


def test_duplicate_file_names_rejected() -> None:
    with pytest.raises(InvalidValue, match="same name"):
        Manifest(envelope=envelope(), files=(file_entry(), file_entry()))


def test_unknown_or_missing_fields_rejected_on_decode() -> None:
    value = Manifest(envelope=envelope(), files=()).to_value()
    value["header"]["colour"] = "blue"
    with pytest.raises(DecodeError, match="unknown field 'colour'"):
        Manifest.decode(cbor.encode(value))
    value = Manifest(envelope=envelope(), files=()).to_value()
    del value["header"]["subject"]
    with pytest.raises(DecodeError, match="'subject' is required"):
        Manifest.decode(cbor.encode(value))
    value = Manifest(envelope=envelope(), files=()).to_value()
    value["v"] = True
    with pytest.raises(DecodeError, match="version"):
        Manifest.decode(cbor.encode(value))


texts = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn")), max_size=30)


@given(
    subject=texts.filter(lambda s: s.strip()),
    content=texts,
    names=st.lists(
        texts.filter(
            lambda s: s.strip() and "/" not in s and "\\" not in s and s not in (".", "..")
        ),
        max_size=4,
        unique=True,
    ),
    classification=st.sampled_from(Classification),
)
def test_any_valid_manifest_roundtrips(
    subject: str, content: str, names: list[str], classification: Classification
) -> None:
    import unicodedata

    names = list(dict.fromkeys(unicodedata.normalize("NFC", n) for n in names))
    env = envelope(
        subject=subject,
        content=content,
        classification=classification,
        response_for=(
            ResponseFor(document_id=DocumentId.parse("000.00.00.H49,2019/03/12,1/UBND")),
        ),
    )
    manifest = Manifest(envelope=env, files=tuple(file_entry(n) for n in names))
    assert Manifest.decode(manifest.encode(), expected=manifest.root) == manifest


@settings(max_examples=500)
@given(st.data())
def test_mutated_manifests_raise_only_decode_errors(data: st.DataObject) -> None:
    raw = bytearray(Manifest(envelope=envelope(), files=(file_entry(),)).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        manifest = Manifest.decode(bytes(raw))
    except DecodeError:
        return
    assert manifest.encode() == bytes(raw)


def test_envelope_is_immutable() -> None:
    env = envelope()
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.subject = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"), [("subject", "Cafe\u0301"), ("content", ""), ("page_amount", 0)]
)
def test_manifest_bytes_and_value_correspond_one_to_one(field: str, value: object) -> None:
    """Denormalised text or an explicit default would give a second encoding of one manifest."""
    raw = Manifest(envelope=envelope(), files=()).to_value()
    raw["header"][field] = value
    with pytest.raises(DecodeError, match="canonical"):
        Manifest.decode(cbor.encode(raw))


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key path into nested maps and lists of ``value``."""
    children: list[tuple[object, object]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    out = []
    for key, item in children:
        out.append((*path, key))
        out += _paths(item, (*path, key))
    return out


def _full_manifest_value() -> dict[str, object]:
    target = DocumentId.parse("000.00.00.H49,2019/03/12,1/UBND")
    env = envelope(
        business=BusinessInfo(type=BusinessType.UPDATE, reason="sửa", target=target),
        response_for=(ResponseFor(document_id=target),),
        content="nội dung",
        sphere="x",
    )
    value = Manifest(envelope=env, files=(file_entry(),)).to_value()
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("path", _paths(_full_manifest_value()), ids=str)
def test_any_field_removed_or_retyped_is_a_decode_error(path: tuple[object, ...]) -> None:
    """A peer's manifest with any field missing or of another type never raises anything but
    DecodeError (a missing nested field once escaped as TypeError)."""
    for replacement in (None, {}, [], 0, "", b""):
        value = _full_manifest_value()
        parent: object = value
        for key in path[:-1]:
            parent = parent[key]  # type: ignore[index]
        if replacement is None:
            if isinstance(parent, list):
                del parent[path[-1]]  # type: ignore[call-overload]
            else:
                del parent[path[-1]]  # type: ignore[attr-defined]
        else:
            parent[path[-1]] = replacement  # type: ignore[index]
        try:
            Manifest.decode(cbor.encode(value))
        except DecodeError:
            continue
        # Removing an optional field or list item can leave a valid manifest; it must then be
        # in canonical form, which decode already checked.


def test_response_for_needs_a_document_id() -> None:
    with pytest.raises(InvalidValue):
        ResponseFor(document_id="000.00.00.G22,2019/03/12,1/VPCP")  # type: ignore[arg-type]
