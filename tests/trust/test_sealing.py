"""Sealed documents: only listed recipients open them; relays learn sizes and routing only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdoc.codecs import cbor
from p2pdoc.errors import DecodeError, InvalidValue, NotARecipient, SealInvalid
from p2pdoc.model import (
    AgencyCode,
    Cid,
    Classification,
    Envelope,
    FileEntry,
    Manifest,
    Multicodec,
    Organization,
    SignerInfo,
)
from p2pdoc.model.manifest import SealInfo, SealRecipient
from p2pdoc.trust import (
    AgreementKey,
    ContentKey,
    DocumentSealer,
    PlainFile,
    RecipientKey,
    SegmentOpener,
    SegmentSealer,
    open_sealed_manifest,
    open_stream,
    routing_envelope,
    seal_stream,
    sealed_size,
    verify_node_chain,
)
from p2pdoc.trust.sealing import SEALED_SEGMENT_SIZE, SEGMENT_SIZE

from .conftest import H41, H49, H49_DEPT, NOW, Pki

SEG = SEGMENT_SIZE


def _seal(data: bytes, key: ContentKey, index: int = 0, chunk: int = 100_000) -> bytes:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(seal_stream(pieces, key, file_index=index))


def _open(data: bytes, key: ContentKey, index: int = 0, chunk: int = 77_777) -> bytes:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(open_stream(pieces, key, file_index=index))


# -- streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 5])
def test_round_trip_and_size(size: int) -> None:
    key = ContentKey.generate()
    data = random.Random(size).randbytes(size)
    sealed = _seal(data, key)
    assert len(sealed) == sealed_size(size)
    assert _open(sealed, key) == data
    # Every full sealed segment is exactly one 256 KiB block.
    segments = list(seal_stream([data], key, file_index=0))
    assert all(len(s) == SEALED_SEGMENT_SIZE for s in segments[:-1])


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2 * SEG + 100),
    st.lists(st.integers(0, 2 * SEG + 100), max_size=6),
    st.integers(1, 100_000),
)
def test_any_chunking_gives_the_same_result(size: int, cuts: list[int], step: int) -> None:
    key = ContentKey(bytes(32))
    data = random.Random(size).randbytes(size)
    bounds = [0, *sorted(c for c in cuts if c <= size), size]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    sealed = b"".join(seal_stream(pieces, key, file_index=3))
    assert sealed == b"".join(seal_stream([data], key, file_index=3))
    opener = SegmentOpener(key, file_index=3)
    out = [p for i in range(0, len(sealed), step) for p in opener.feed(sealed[i : i + step])]
    assert b"".join(out) + opener.finish() == data


def test_ciphertext_reveals_nothing_of_the_plaintext() -> None:
    data = b"THANH TRA TINH QUANG NINH " * 5000
    sealed = _seal(data, ContentKey.generate())
    assert b"THANH TRA" not in sealed
    assert _seal(data, ContentKey.generate()) != sealed  # fresh key, other bytes


def test_altered_segment_is_detected() -> None:
    key = ContentKey.generate()
    sealed = bytearray(_seal(os.urandom(2 * SEG + 10), key))
    sealed[SEALED_SEGMENT_SIZE + 100] ^= 1
    with pytest.raises(SealInvalid):
        _open(bytes(sealed), key)


def test_reordered_segments_are_detected() -> None:
    key = ContentKey.generate()
    segments = list(seal_stream([os.urandom(3 * SEG)], key, file_index=0))
    assert len(segments) == 3
    swapped = segments[1] + segments[0] + segments[2]
    with pytest.raises(SealInvalid):
        _open(swapped, key)


@pytest.mark.parametrize("cut", ["last-segment", "some-bytes", "everything"])
def test_truncation_is_detected(cut: str) -> None:
    key = ContentKey.generate()
    segments = list(seal_stream([os.urandom(2 * SEG + 10)], key, file_index=0))
    data = b"".join(segments)
    truncated = {
        "last-segment": b"".join(segments[:-1]),
        "some-bytes": data[:-3],
        "everything": b"",
    }[cut]
    with pytest.raises(SealInvalid):
        _open(truncated, key)


def test_extension_is_detected() -> None:
    key = ContentKey.generate()
    data = os.urandom(SEG)
    sealed = _seal(data, key)
    [extra] = seal_stream([b"more"], key, file_index=0)
    with pytest.raises(SealInvalid):
        _open(sealed + extra, key)


def test_segments_of_another_file_or_key_do_not_open() -> None:
    key = ContentKey.generate()
    sealed = _seal(b"file one", key, index=1)
    with pytest.raises(SealInvalid):
        _open(sealed, key, index=2)
    with pytest.raises(SealInvalid):
        _open(sealed, ContentKey.generate(), index=1)


def test_sealer_and_opener_refuse_use_after_finish() -> None:
    key = ContentKey.generate()
    sealer = SegmentSealer(key, file_index=0)
    sealer.finish()
    with pytest.raises(InvalidValue):
        sealer.feed(b"x")
    with pytest.raises(InvalidValue):
        SegmentSealer(key, file_index=-1)


def test_content_key_repr_hides_the_key() -> None:
    key = ContentKey(bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(key)
    assert "00010203" not in repr(key)


# -- documents ----------------------------------------------------------------------------------


def _envelope(classification: Classification = Classification.CONFIDENTIAL) -> Envelope:
    return Envelope(
        sender=Organization(code=H49, name="UBND tỉnh Quảng Ninh", email="vp@quangninh.gov.vn"),
        recipients=(Organization(code=H41, name="UBND tỉnh H41"), Organization(code=H49_DEPT)),
        number=1234,
        notation="UBND-TTr",
        promulgation_date=dt.date(2026, 3, 2),
        subject="Kết luận thanh tra về việc quản lý đất đai",
        content="Nội dung mật",
        signer=SignerInfo(full_name="Nguyễn Văn An", position="Chủ tịch"),
        classification=classification,
        appendixes=("Danh sách cá nhân",),
        due_date=dt.date(2026, 4, 1),
    )


def _seal_document(
    pki: Pki, files: dict[str, bytes]
) -> tuple[Manifest, dict[str, bytes], DocumentSealer]:
    trust = pki.trust()
    recipients = [
        RecipientKey.of_node(
            verify_node_chain(n.chain, expected_peer=n.peer_id, trust=trust, now=NOW)
        )
        for n in (pki.h41_node, pki.h49_dept_node, pki.h49_node)  # the sender keeps a key too
    ]
    sealer = DocumentSealer(recipients)
    plain_files = [
        PlainFile(name=name, media_type="application/pdf", size=len(data))
        for name, data in files.items()
    ]
    blobs: dict[str, bytes] = {}
    entries = []
    for index, (plain, data) in enumerate(zip(plain_files, files.values(), strict=True)):
        sealed = b"".join(sealer.seal_file(index, [data]))
        cid = Cid.of(Multicodec.RAW, sealed)  # stands in for the UnixFS root of the blocks
        blobs[str(cid)] = sealed
        entries.append(sealer.sealed_entry(index, plain, cid))
    routing, seal = sealer.seal(_envelope(), plain_files)
    return Manifest(envelope=routing, files=tuple(entries), seal=seal), blobs, sealer


def test_recipients_open_the_document(pki: Pki) -> None:
    files = {"Kết luận thanh tra.pdf": os.urandom(300_000), "Phụ lục 1.pdf": b"%PDF-appendix"}
    manifest, blobs, _ = _seal_document(pki, files)
    travelled = Manifest.decode(manifest.encode(), expected=manifest.root)
    for node in (pki.h41_node, pki.h49_dept_node, pki.h49_node):
        opened = open_sealed_manifest(travelled, agency=node.agency, key=node.agreement_key)
        assert opened.envelope == _envelope()
        assert [f.name for f in opened.files] == list(files)
        for index, entry in enumerate(travelled.files):
            plain = b"".join(opened.open_file(index, [blobs[str(entry.cid)]]))
            assert plain == list(files.values())[index]


def test_relay_sees_only_routing_fields_and_sizes(pki: Pki) -> None:
    manifest, _, _ = _seal_document(pki, {"Danh sách cá nhân.xlsx": b"secret rows"})
    block = manifest.encode()
    for hidden in (
        "Kết luận",
        "Nội dung",
        "Nguyễn Văn An",
        "Danh sách",
        "vp@quangninh",
        "2026-04-01",
    ):
        assert hidden.encode() not in block
    header = manifest.envelope
    assert header.recipient_codes == (H41, H49_DEPT)
    assert (header.number, header.notation, header.sender.code) == (1234, "UBND-TTr", H49)
    assert header.classification is Classification.CONFIDENTIAL
    assert manifest.files[0].name == "sealed-0001"
    assert manifest.files[0].media_type == "application/octet-stream"


def test_non_recipient_cannot_open(pki: Pki) -> None:
    manifest, _, _ = _seal_document(pki, {"a.pdf": b"x"})
    stranger = AgreementKey.generate()
    with pytest.raises(NotARecipient):
        open_sealed_manifest(manifest, agency=H41, key=stranger)
    with pytest.raises(NotARecipient):  # right key, claimed under another agency
        open_sealed_manifest(manifest, agency=H49_DEPT, key=pki.h41_node.agreement_key)


def test_tampered_wrapped_key_or_header_fails(pki: Pki) -> None:
    manifest, _, _ = _seal_document(pki, {"a.pdf": b"x"})
    assert manifest.seal is not None
    entry = manifest.seal.recipients[0]
    bad_entry = dataclasses.replace(entry, wrapped_key=bytes(48))
    bad_seal = dataclasses.replace(
        manifest.seal, recipients=(bad_entry, *manifest.seal.recipients[1:])
    )
    with pytest.raises(SealInvalid):
        open_sealed_manifest(
            dataclasses.replace(manifest, seal=bad_seal), agency=H41, key=pki.h41_node.agreement_key
        )
    header = bytearray(manifest.seal.header)
    header[5] ^= 1
    with pytest.raises(SealInvalid):
        open_sealed_manifest(
            dataclasses.replace(
                manifest, seal=dataclasses.replace(manifest.seal, header=bytes(header))
            ),
            agency=H41,
            key=pki.h41_node.agreement_key,
        )


def test_routing_fields_must_agree_with_the_sealed_header(pki: Pki) -> None:
    manifest, _, _ = _seal_document(pki, {"a.pdf": b"x"})
    shown = dataclasses.replace(manifest.envelope, classification=Classification.PUBLIC)
    with pytest.raises(SealInvalid):
        open_sealed_manifest(
            dataclasses.replace(manifest, envelope=shown),
            agency=H41,
            key=pki.h41_node.agreement_key,
        )
    extra = FileEntry(
        name="extra", media_type="application/pdf", size=1, cid=Cid.of(Multicodec.RAW, b"e")
    )
    with pytest.raises(SealInvalid):
        open_sealed_manifest(
            dataclasses.replace(manifest, files=(*manifest.files, extra)),
            agency=H41,
            key=pki.h41_node.agreement_key,
        )


def test_every_recipient_agency_needs_a_key(pki: Pki) -> None:
    sealer = DocumentSealer([RecipientKey(H41, pki.h41_node.x25519_public)])
    with pytest.raises(InvalidValue):
        sealer.seal(_envelope(), [])


def test_routing_envelope_keeps_what_delivery_needs() -> None:
    full = _envelope()
    routing = routing_envelope(full)
    assert routing.document_id == full.document_id
    assert routing.priority == full.priority and routing.business == full.business
    assert routing.subject != full.subject and routing.content == ""
    assert routing_envelope(routing) == routing


def test_unsealed_manifest_encoding_is_unchanged() -> None:
    manifest = Manifest(
        envelope=_envelope(Classification.PUBLIC),
        files=(
            FileEntry(
                name="a.pdf",
                media_type="application/pdf",
                size=3,
                cid=Cid.of(Multicodec.RAW, b"abc"),
            ),
        ),
    )
    value = cbor.decode(manifest.encode())
    assert set(value) == {"v", "header", "files"}
    assert manifest.encode() == cbor.encode(
        {"v": 1, "header": manifest.envelope.to_value(), "files": [manifest.files[0].to_value()]}
    )
    assert Manifest.decode(manifest.encode()).seal is None


def test_seal_structure_is_validated_on_decode(pki: Pki) -> None:
    manifest, _, _ = _seal_document(pki, {"a.pdf": b"x"})
    assert Manifest.decode(manifest.encode()) == manifest
    value = cbor.decode(manifest.encode())
    for seal in (
        {**value["seal"], "to": []},
        {**value["seal"], "alg": "Not An Alg!"},
        {**value["seal"], "to": [{**value["seal"]["to"][0], "wk": b"short"}]},
        {**value["seal"], "to": [value["seal"]["to"][0]] * 2},
        {**value["seal"], "extra": 1},
    ):
        with pytest.raises(DecodeError):
            Manifest.decode(cbor.encode({**value, "seal": seal}))
    assert SealInfo.from_value(value["seal"]) == manifest.seal
    assert isinstance(manifest.seal, SealInfo)
    assert isinstance(manifest.seal.recipients[0], SealRecipient)


def test_unknown_scheme_is_refused(pki: Pki) -> None:
    manifest, _, _ = _seal_document(pki, {"a.pdf": b"x"})
    assert manifest.seal is not None
    other = dataclasses.replace(manifest.seal, algorithm="p2pdoc-seal/v9")
    with pytest.raises(SealInvalid):
        open_sealed_manifest(
            dataclasses.replace(manifest, seal=other), agency=H41, key=pki.h41_node.agreement_key
        )


def test_opening_an_unsealed_manifest_is_a_caller_error(pki: Pki) -> None:
    manifest = Manifest(envelope=_envelope(Classification.PUBLIC), files=())
    with pytest.raises(InvalidValue):
        open_sealed_manifest(manifest, agency=H41, key=pki.h41_node.agreement_key)


def test_recipient_key_rules() -> None:
    with pytest.raises(InvalidValue):
        RecipientKey(H41, b"short")
    with pytest.raises(InvalidValue):
        DocumentSealer([])
    key = RecipientKey(AgencyCode("000.00.00.H41"), bytes(32))
    with pytest.raises(InvalidValue):
        DocumentSealer([key, key])


def test_reused_input_buffers_are_copied_and_aligned_bytes_are_not() -> None:
    key = ContentKey.generate()
    first, second = os.urandom(SEG), os.urandom(SEG)
    expected = b"".join(seal_stream([first + second], key, file_index=0))
    buffer = bytearray(first)  # a reader that reuses one buffer for every read
    sealer = SegmentSealer(key, file_index=0)
    out = sealer.feed(buffer)
    buffer[:] = second
    out += sealer.feed(buffer)
    buffer[:] = bytes(SEG)
    assert b"".join(out) + sealer.finish() == expected
    sealer = SegmentSealer(key, file_index=0)  # immutable segment-sized pieces
    assert b"".join([*sealer.feed(first), *sealer.feed(second), sealer.finish()]) == expected
    opener = SegmentOpener(key, file_index=0)
    sealed = bytearray(expected)
    assert b"".join([*opener.feed(sealed), opener.finish()]) == first + second
