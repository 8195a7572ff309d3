"""Shared helpers for the store tests: deterministic blocks and documents."""

from __future__ import annotations

import hashlib

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.store import DocumentRecord, PutBlock


def block(label: str, size: int = 64) -> tuple[Cid, bytes]:
    """A raw block of ``size`` bytes derived from ``label`` (same label, same block)."""
    seed = hashlib.sha256(label.encode()).digest()
    data = (seed * (size // len(seed) + 1))[:size]
    return Cid.of(Multicodec.RAW, data), data


def put(label: str, size: int = 64) -> PutBlock:
    cid, data = block(label, size)
    return PutBlock(cid, data)


def document(
    label: str,
    *,
    document_id: str = "000.00.00.G22,2024/01/02,1/VPCP",
    created_at: int = 1000,
    pad: int = 0,
) -> DocumentRecord:
    """A document record whose manifest is a dag-cbor value naming ``label`` (and holding
    ``pad`` zero bytes, to make it larger)."""
    value: dict[str, object] = {"v": 1, "label": label}
    if pad:
        value["pad"] = bytes(pad)
    manifest = cbor.encode(value)
    return DocumentRecord(
        root=Cid.of(Multicodec.DAG_CBOR, manifest),
        document_id=document_id,
        sender="000.00.00.G22",
        manifest=manifest,
        signatures=cbor.encode([label.encode()]),
        created_at=created_at,
    )
