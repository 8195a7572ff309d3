"""The classification policy: what may travel, and how."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from p2pdoc.errors import InvalidValue, PolicyRefused
from p2pdoc.model import Classification, Envelope, Manifest, Organization, SignerInfo
from p2pdoc.model.manifest import SealInfo, SealRecipient
from p2pdoc.trust import ClassificationPolicy, Handling

from .conftest import H41, H49


def _manifest(classification: Classification, *, sealed: bool) -> Manifest:
    envelope = Envelope(
        sender=Organization(code=H49),
        recipients=(Organization(code=H41),),
        number=1,
        notation="UBND",
        promulgation_date=dt.date(2026, 3, 2),
        subject="s",
        signer=SignerInfo(full_name="A"),
        classification=classification,
    )
    seal = SealInfo(
        algorithm="p2pdoc-seal/v1",
        recipients=(
            SealRecipient(
                agency=H41,
                key_fingerprint=bytes(32),
                ephemeral_key=bytes(32),
                wrapped_key=bytes(48),
            ),
        ),
        header=b"sealed",
    )
    return Manifest(envelope=envelope, files=(), seal=seal if sealed else None)


def test_defaults() -> None:
    policy = ClassificationPolicy()
    assert [policy.handling(c) for c in Classification] == [
        Handling.PLAIN,
        Handling.PLAIN,
        Handling.SEALED,
        Handling.REFUSED,
        Handling.REFUSED,
    ]


@pytest.mark.parametrize("level", [Classification.SECRET, Classification.TOP_SECRET])
@pytest.mark.parametrize("sealed", [False, True])
def test_secret_documents_are_refused_even_sealed(level: Classification, sealed: bool) -> None:
    with pytest.raises(PolicyRefused) as info:
        ClassificationPolicy().check_manifest(_manifest(level, sealed=sealed))
    assert "may not be sent" in str(info.value)


def test_confidential_documents_must_be_sealed() -> None:
    policy = ClassificationPolicy()
    with pytest.raises(PolicyRefused) as info:
        policy.check_manifest(_manifest(Classification.CONFIDENTIAL, sealed=False))
    assert "must be sealed" in str(info.value)
    policy.check_manifest(_manifest(Classification.CONFIDENTIAL, sealed=True))


@pytest.mark.parametrize("level", [Classification.PUBLIC, Classification.INTERNAL])
def test_ordinary_documents_travel_either_way(level: Classification) -> None:
    for sealed in (False, True):
        ClassificationPolicy().check_manifest(_manifest(level, sealed=sealed))


def test_custom_policy() -> None:
    strict = ClassificationPolicy(internal=Handling.SEALED, confidential=Handling.REFUSED)
    with pytest.raises(PolicyRefused):
        strict.check(Classification.INTERNAL, sealed=False)
    with pytest.raises(PolicyRefused):
        strict.check(Classification.CONFIDENTIAL, sealed=True)
    assert dataclasses.replace(strict, internal="plain").internal is Handling.PLAIN  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        ClassificationPolicy(public="maybe")  # type: ignore[arg-type]
