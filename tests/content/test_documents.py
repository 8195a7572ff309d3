"""Building a document from files and verifying it again from its blocks alone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.documents import build_document, verify_document
from p2pdoc.content.unixfs import ImportSource
from p2pdoc.errors import ContentMismatch, InvalidValue, NotFound
from p2pdoc.model import AgencyCode, Envelope, FileEntry, Manifest, Organization, SignerInfo
from p2pdoc.store.base import PutBlock
from p2pdoc.store.memory import MemoryStore


@dataclass(frozen=True)
class File:
    name: str
    media_type: str
    source: ImportSource


ENVELOPE = Envelope(
    sender=Organization(code=AgencyCode("000.00.00.G22")),
    recipients=(Organization(code=AgencyCode("000.00.00.H49")),),
    number=12,
    notation="VPCP-KSTT",
    promulgation_date=dt.date(2019, 3, 12),
    subject="Về việc vận hành Trục liên thông văn bản quốc gia",
    signer=SignerInfo(full_name="Mai Tiến Dũng"),
)
FILES = [
    File("cong-van.pdf", "application/pdf", b"%PDF-1.7 " * 100),
    File("phu-luc.odt", "application/vnd.oasis.opendocument.text", bytes(range(256)) * 3000),
    File("empty.txt", "text/plain", b""),
]


async def test_built_document_verifies_from_its_root_alone() -> None:
    store = MemoryStore()
    built = await build_document(ENVELOPE, FILES, store, pin="draft")
    verified = await verify_document(built.root, store.get_block)
    assert verified.manifest == built.manifest
    assert set(verified.blocks) == await store.pinned("draft")
    assert [f.size for f in verified.manifest.files] == [900, 768_000, 0]


async def test_a_corrupt_block_is_named() -> None:
    store = MemoryStore()
    built = await build_document(ENVELOPE, FILES, store, pin="draft")
    leaf = built.manifest.files[1].cid  # a multi-block file: its root is a dag-pb node

    async def tampered(cid: Cid) -> bytes:
        data = await store.get_block(cid)
        return data[:-1] + b"\x00" if cid == leaf else data

    with pytest.raises(ContentMismatch, match=str(leaf)):
        await verify_document(built.root, tampered)


async def test_a_missing_block_is_reported() -> None:
    store = MemoryStore()
    built = await build_document(ENVELOPE, FILES[:1], store, pin="draft")
    other = MemoryStore()
    await other.write([PutBlock(built.root, built.manifest_bytes)])
    with pytest.raises(NotFound):
        await verify_document(built.root, other.get_block)


async def test_manifest_lying_about_a_file_size_is_caught() -> None:
    store = MemoryStore()
    built = await build_document(ENVELOPE, FILES[:1], store, pin="draft")
    entry = built.manifest.files[0]
    liar = Manifest(
        envelope=ENVELOPE,
        files=(
            FileEntry(
                name=entry.name, media_type=entry.media_type, size=entry.size + 1, cid=entry.cid
            ),
        ),
    )
    data = liar.encode()
    root = Cid.of(Multicodec.DAG_CBOR, data)
    await store.write([PutBlock(root, data)])
    with pytest.raises(ContentMismatch, match="the manifest says 901"):
        await verify_document(root, store.get_block)


async def test_cli_verifies_an_exported_document(tmp_path: Path) -> None:
    import sys

    import trio

    store = MemoryStore()
    built = await build_document(ENVELOPE, FILES, store, pin="draft")
    for cid in await store.pinned("draft"):
        (tmp_path / str(cid)).write_bytes(await store.get_block(cid))
    run = [sys.executable, "-m", "p2pdoc", "verify", str(tmp_path), "--root", str(built.root)]
    ok = await trio.run_process(run, capture_stdout=True, capture_stderr=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert f"document {built.root} is complete: 3 files" in ok.stdout.decode()
    (tmp_path / str(built.manifest.files[0].cid)).unlink()
    missing = await trio.run_process(run, capture_stdout=True, capture_stderr=True, check=False)
    assert missing.returncode == 1
    assert f"missing block {built.manifest.files[0].cid}" in missing.stderr.decode()


@pytest.mark.parametrize(
    "files",
    [
        [FILES[0], File("../phu-luc.odt", "application/pdf", b"x" * 300_000)],
        [FILES[0], File("phu-luc.odt", "not a media type", b"x" * 300_000)],
        [FILES[1], FILES[0], FILES[1]],
    ],
)
async def test_a_refused_file_list_stores_nothing(files: list[File]) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidValue):
        await build_document(ENVELOPE, files, store, pin="draft")
    assert await store.pinned("draft") == set()
    assert await store.block_count() == (0, 0)
