"""Canonical CBOR gives the same bytes and CID as the reference dag-cbor encoder."""

from __future__ import annotations

import base64
from typing import Any

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from tests.content.helpers import fixture


def _from_json(value: Any) -> Any:
    """Undo the fixture's JSON escapes for bytes, CIDs and large integers."""
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if isinstance(value, dict):
        if value.keys() == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        if value.keys() == {"$cid"}:
            return Cid.parse(value["$cid"])
        if value.keys() == {"$int"}:
            return int(value["$int"])
        return {key: _from_json(item) for key, item in value.items()}
    return value


def test_dag_cbor_vector_encodes_identically() -> None:
    vector = fixture()["dag_cbor"]
    value = _from_json(vector["value"])
    expected = bytes.fromhex(vector["encoded_hex"])
    encoded = cbor.encode(value)
    assert encoded == expected
    assert str(Cid.of(Multicodec.DAG_CBOR, encoded)) == vector["cid"]
    assert cbor.decode(expected) == value


def test_fixture_records_the_reference_packages() -> None:
    packages = fixture()["packages"]
    for name in ("ipfs-unixfs-importer", "@ipld/dag-cbor", "multiformats"):
        assert packages[name].count(".") == 2
    assert fixture()["generator"]["name"] == "sha256-counter"
