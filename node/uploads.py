"""Submitted documents as they arrive: multipart bodies streamed to spool files, within limits.

Goals: a request body is never held whole in memory: file parts go to files in the spool
directory (mode 0600) as they arrive, written in ~1 MiB batches from a worker thread; the
body, the number of files and the metadata part are bounded, and the first limit crossed
stops reading with :class:`~p2pdoc.errors.LimitExceeded` (the API answers 413); a malformed
body is a :class:`~p2pdoc.errors.DecodeError` (400); a form field other than ``metadata`` or a
file is an :class:`~p2pdoc.errors.InvalidField` (422). On any failure every spool file is
removed. Non-goals: ``application/x-www-form-urlencoded`` bodies, nested multipart.

Form: one field ``metadata`` (JSON; sent as a plain field or as a part with a filename and
``application/json``), then any number of file parts (their ``filename`` is the attachment's
name in the document, their ``Content-Type`` its media type).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import trio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from p2pdoc.errors import DecodeError, InvalidField, LimitExceeded

__all__ = ["SpooledFile", "Upload", "media_type_of", "read_multipart"]

_FLUSH_BYTES: Final = 1 << 20
_MAX_HEADER_BYTES: Final = 16 << 10
METADATA_FIELD: Final = "metadata"


@dataclass(slots=True)
class SpooledFile:
    """A file part written to the spool directory."""

    name: str
    media_type: str
    path: Path
    size: int = 0
    _fd: int = -1
    _pending: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class Upload:
    """A parsed submission: the metadata bytes and the spooled files. Call :meth:`discard`
    when done (it removes the spool files)."""

    metadata: bytes | None = None
    files: list[SpooledFile] = field(default_factory=list)

    def discard(self) -> None:
        for spooled in self.files:
            if spooled._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(spooled._fd)
                spooled._fd = -1
            with contextlib.suppress(OSError):
                spooled.path.unlink()


def media_type_of(header: str | None) -> str:
    """The bare media type of a Content-Type header, lower case; a default for none."""
    if not header:
        return "application/octet-stream"
    return header.split(";", 1)[0].strip().lower() or "application/octet-stream"


@dataclass(slots=True)
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    header_bytes: int = 0
    name: str = ""
    file: SpooledFile | None = None
    data: bytearray = field(default_factory=bytearray)


_EXTENDED_FILENAME: Final = re.compile(r"""filename\*\s*=\s*([^';\s]*)'[^']*'([^;\s]*)""", re.I)


def _decode_disposition(value: str) -> tuple[str, str | None]:
    """(field name, file name or None) of a Content-Disposition header. File names may be
    raw UTF-8 (what browsers send) or RFC 5987 ``filename*=UTF-8''<percent-encoded>``."""
    kind, params = parse_options_header(value.encode("latin-1", "replace"))
    if kind.lower() != b"form-data":
        raise DecodeError("a part's Content-Disposition must be form-data")
    try:
        name = params.get(b"name", b"").decode("utf-8")
        filename: str | None = None
        extended = _EXTENDED_FILENAME.search(value)
        if extended is not None:
            filename = unquote(
                extended.group(2), encoding=extended.group(1) or "utf-8", errors="strict"
            )
        elif b"filename" in params:
            filename = params[b"filename"].decode("utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise DecodeError(f"a part's name is not UTF-8: {exc}") from None
    return name, filename


class _Reader:
    def __init__(self, spool_dir: Path, *, max_files: int, max_metadata: int) -> None:
        self.spool_dir = spool_dir
        self.max_files = max_files
        self.max_metadata = max_metadata
        self.upload = Upload()
        self.part: _Part | None = None
        self.finished = False

    # python-multipart callbacks: synchronous, called from parser.write

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_bytes(end - start).header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_bytes(end - start).header_value += data[start:end]

    def _header_bytes(self, n: int) -> _Part:
        assert self.part is not None
        self.part.header_bytes += n
        if self.part.header_bytes > _MAX_HEADER_BYTES:
            raise LimitExceeded("part headers", self.part.header_bytes, _MAX_HEADER_BYTES)
        return self.part

    def on_header_end(self) -> None:
        part = self.part
        assert part is not None
        name = part.header_field.decode("latin-1").strip().lower()
        part.headers[name] = part.header_value.decode("latin-1").strip()
        part.header_field.clear()
        part.header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.part
        assert part is not None
        disposition = part.headers.get("content-disposition")
        if disposition is None:
            raise DecodeError("a part has no Content-Disposition")
        name, filename = _decode_disposition(disposition)
        part.name = name
        if name == METADATA_FIELD:
            if self.upload.metadata is not None:
                raise InvalidField(METADATA_FIELD, "is given twice")
            return
        if filename is None:
            raise InvalidField(name or "(unnamed)", "unknown form field", code="unknown_field")
        if len(self.upload.files) >= self.max_files:
            raise LimitExceeded("files", len(self.upload.files) + 1, self.max_files)
        path = self.spool_dir / f"upload-{secrets.token_hex(8)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        part.file = SpooledFile(
            name=filename, media_type=media_type_of(part.headers.get("content-type")), path=path
        )
        part.file._fd = fd
        self.upload.files.append(part.file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        assert part is not None
        if part.file is not None:
            part.file._pending += data[start:end]
            part.file.size += end - start
        else:
            part.data += data[start:end]
            if len(part.data) > self.max_metadata:
                raise LimitExceeded("metadata", len(part.data), self.max_metadata)

    def on_part_end(self) -> None:
        part = self.part
        assert part is not None
        if part.file is None:
            self.upload.metadata = bytes(part.data)
        self.part = None

    def on_end(self) -> None:
        self.finished = True

    async def flush(self, *, final: bool = False) -> None:
        for spooled in self.upload.files:
            if spooled._fd < 0:
                continue
            if spooled._pending and (final or len(spooled._pending) >= _FLUSH_BYTES):
                data = bytes(spooled._pending)
                spooled._pending.clear()
                await trio.to_thread.run_sync(_write_all, spooled._fd, data)
            if final:
                os.close(spooled._fd)
                spooled._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


async def read_multipart(
    body: AsyncIterator[bytes],
    content_type: str,
    *,
    spool_dir: Path,
    max_body: int,
    max_files: int,
    max_metadata: int,
) -> Upload:
    """Read a multipart/form-data body into an :class:`Upload`.

    Raises:
        LimitExceeded: the body, the number of files or the metadata part is over its limit.
        DecodeError: not multipart/form-data, no boundary, or a malformed body.
        InvalidField: a form field other than ``metadata`` (not a file), or two metadata
            fields.
        On any error or cancellation the spool files written so far are removed.
    """
    kind, params = parse_options_header(content_type)
    if kind.lower() != b"multipart/form-data":
        raise DecodeError("the body must be multipart/form-data or application/json")
    boundary = params.get(b"boundary")
    if not boundary:
        raise DecodeError("multipart/form-data without a boundary")
    await trio.Path(spool_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    reader = _Reader(spool_dir, max_files=max_files, max_metadata=max_metadata)
    callbacks = {
        "on_part_begin": reader.on_part_begin,
        "on_part_data": reader.on_part_data,
        "on_part_end": reader.on_part_end,
        "on_header_field": reader.on_header_field,
        "on_header_value": reader.on_header_value,
        "on_header_end": reader.on_header_end,
        "on_headers_finished": reader.on_headers_finished,
        "on_end": reader.on_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > max_body:
                raise LimitExceeded("request body", received, max_body)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise DecodeError(f"malformed multipart body: {exc}") from None
            await reader.flush()
        if not reader.finished:
            raise DecodeError("the multipart body ends before its closing boundary")
        await reader.flush(final=True)
    except BaseException:
        reader.upload.discard()
        raise
    return reader.upload
