"""The document manifest: the envelope header plus the list of files, as one dag-cbor block.

The manifest's CID (codec dag-cbor) identifies a document version: signatures, receipts and
status reports all name it. Its value is::

    {
      "v": 1,
      "header": <Envelope.to_value()>,
      "files": [{"name": text, "type": media type, "size": bytes, "cid": CID link}, ...]
    }

File CIDs are tag-42 links, so IPFS tools see the manifest as a DAG over the files. Names are
unique within a manifest, 1..255 characters, without ``/``, ``\\`` or control characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cbor import Value
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.errors import DecodeError, InvalidValue
from p2pdoc.model.envelope import Envelope, text

__all__ = ["MANIFEST_VERSION", "MAX_FILES", "MAX_MANIFEST_SIZE", "FileEntry", "Manifest"]

MANIFEST_VERSION: Final = 1
MAX_FILES: Final = 1000
MAX_MANIFEST_SIZE: Final = 1 << 20
MAX_FILE_SIZE: Final = 1 << 50
_MEDIA_TYPE_RE: Final = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a document: the main text, an attachment or an appendix."""

    name: str
    media_type: str
    size: int
    cid: Cid

    def __post_init__(self) -> None:
        name = text(self.name, "file name", limit=255, required=True)
        if "/" in name or "\\" in name or "\n" in name or "\t" in name or name in (".", ".."):
            raise InvalidValue(f"file name {name!r} must not contain path separators")
        object.__setattr__(self, "name", unicodedata.normalize("NFC", name))
        if not isinstance(self.media_type, str) or not _MEDIA_TYPE_RE.fullmatch(self.media_type):
            raise InvalidValue(f"media type {self.media_type!r} is not type/subtype in lower case")
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= MAX_FILE_SIZE
        ):
            raise InvalidValue(f"file size {self.size!r} out of range")
        if not isinstance(self.cid, Cid) or self.cid.codec not in (
            Multicodec.RAW,
            Multicodec.DAG_PB,
        ):
            raise InvalidValue("file CID must be a raw or dag-pb Cid")

    def to_value(self) -> Value:
        return {"name": self.name, "type": self.media_type, "size": self.size, "cid": self.cid}

    @classmethod
    def from_value(cls, value: Value) -> FileEntry:
        if not isinstance(value, dict) or set(value) != {"name", "type", "size", "cid"}:
            raise InvalidValue("file entry must have exactly name, type, size and cid")
        return cls(
            name=value["name"], media_type=value["type"], size=value["size"], cid=value["cid"]
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A document version: header and files. ``encode()`` gives the block, ``root`` its CID."""

    envelope: Envelope
    files: tuple[FileEntry, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.envelope, Envelope):
            raise InvalidValue("manifest envelope must be an Envelope")
        files = tuple(self.files)
        if len(files) > MAX_FILES:
            raise InvalidValue(f"more than {MAX_FILES} files")
        if not all(isinstance(f, FileEntry) for f in files):
            raise InvalidValue("manifest files must be FileEntry values")
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            raise InvalidValue("two files have the same name")
        object.__setattr__(self, "files", files)

    def to_value(self) -> Value:
        return {
            "v": MANIFEST_VERSION,
            "header": self.envelope.to_value(),
            "files": [f.to_value() for f in self.files],
        }

    def encode(self) -> bytes:
        """The canonical dag-cbor block."""
        return cbor.encode(self.to_value())

    @property
    def root(self) -> Cid:
        """The manifest block's CID: the document version's identity."""
        return Cid.of(Multicodec.DAG_CBOR, self.encode())

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def decode(cls, data: bytes, *, expected: Cid | None = None) -> Manifest:
        """Parse a manifest block, checking it against ``expected`` first if given.

        The result re-encodes to exactly ``data``, so ``result.root`` is the CID of ``data``.

        Raises:
            ContentMismatch: ``data`` does not hash to ``expected``.
            DecodeError: not canonical CBOR, or not a valid manifest (the reason is named).
        """
        if expected is not None:
            if expected.codec is not Multicodec.DAG_CBOR:
                raise DecodeError("a manifest CID must use the dag-cbor codec")
            expected.verify(data)
        value = cbor.decode(data, max_size=MAX_MANIFEST_SIZE)
        try:
            manifest = cls.from_value(value)
        except InvalidValue as exc:
            raise DecodeError(f"invalid manifest: {exc}") from exc
        # A manifest and its bytes must correspond one to one, or the CID a document was
        # signed under would differ from the one its parsed form reports (e.g. text that is
        # not in NFC, or a default written out explicitly).
        if manifest.encode() != bytes(data):
            raise DecodeError(
                "manifest is not in canonical form (normalised text or defaults differ)"
            )
        return manifest

    @classmethod
    def from_value(cls, value: Value) -> Manifest:
        if not isinstance(value, dict) or set(value) != {"v", "header", "files"}:
            raise InvalidValue("manifest must have exactly v, header and files")
        if type(value["v"]) is not int or value["v"] != MANIFEST_VERSION:
            raise InvalidValue(f"unsupported manifest version {value['v']!r}")
        files = value["files"]
        if not isinstance(files, list):
            raise InvalidValue("manifest files must be a list")
        if len(files) > MAX_FILES:
            raise InvalidValue(f"more than {MAX_FILES} files")
        return cls(
            envelope=Envelope.from_value(value["header"]),
            files=tuple(FileEntry.from_value(f) for f in files),
        )
