"""Documents for node tests."""

from __future__ import annotations

import datetime as dt
import io

from p2pdoc.model import AgencyCode, Envelope, Organization, SignerInfo
from p2pdoc.node import FileSource

SIX_ROLES = ("competent-signer", "organisation", "number", "date", "appendix", "approval")


def envelope(
    sender: AgencyCode,
    *recipients: AgencyCode,
    number: int = 1,
    subject: str = "Về việc triển khai",
) -> Envelope:
    return Envelope(
        sender=Organization(code=sender),
        recipients=tuple(Organization(code=r) for r in recipients),
        number=number,
        notation="VPCP-TTĐT",
        promulgation_date=dt.date(2019, 3, 12),
        subject=subject,
        signer=SignerInfo(full_name="Mai Tiến Dũng", position="Bộ trưởng, Chủ nhiệm"),
    )


def files(*sizes: int, seed: int = 0) -> list[FileSource]:
    out = []
    for i, size in enumerate(sizes):
        data = bytes((seed * 7 + i * 31 + j * 13) % 251 for j in range(size))
        out.append(FileSource(f"phu-luc-{i}.pdf", "application/pdf", io.BytesIO(data)))
    return out


def file_bytes(size: int, index: int, seed: int = 0) -> bytes:
    return bytes((seed * 7 + index * 31 + j * 13) % 251 for j in range(size))
