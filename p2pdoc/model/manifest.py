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

A sealed document (see :mod:`p2pdoc.trust.sealing`) adds a ``"seal"`` key::

      "seal": {"alg": text, "header": bytes,
               "to": [{"agency": code, "fp": bytes, "epk": bytes, "wk": bytes}, ...]}

Its header then holds only routing fields, its files are ciphertext, and the full header
with the real file names travels sealed in ``seal.header``. An unsealed manifest has no
``"seal"`` key, so its encoding is unchanged. This module checks only the structure of the
seal; the trust layer does the cryptography.
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
from p2pdoc.model.envelope import MAX_RECIPIENTS, Envelope, text
from p2pdoc.model.ids import AgencyCode

__all__ = [
    "MANIFEST_VERSION",
    "MAX_FILES",
    "MAX_MANIFEST_SIZE",
    "FileEntry",
    "Manifest",
    "SealInfo",
    "SealRecipient",
]

MANIFEST_VERSION: Final = 1
MAX_FILES: Final = 1000
MAX_MANIFEST_SIZE: Final = 1 << 20
MAX_FILE_SIZE: Final = 1 << 50
MAX_SEAL_RECIPIENTS: Final = 4 * MAX_RECIPIENTS
_SEAL_ALG_RE: Final = re.compile(r"[a-z0-9][a-z0-9./-]{0,63}")
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


def _fixed_bytes(value: object, what: str, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise InvalidValue(f"{what} must be {size} bytes")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SealRecipient:
    """The content key of a sealed document, wrapped for one recipient node key.

    Attributes:
        agency: the recipient agency.
        key_fingerprint: SHA-256 of the recipient node's X25519 public key.
        ephemeral_key: the sender's one-time X25519 public key for this recipient.
        wrapped_key: the content key encrypted under the agreed key (32 + 16 bytes).
    """

    agency: AgencyCode
    key_fingerprint: bytes
    ephemeral_key: bytes
    wrapped_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.agency, AgencyCode):
            raise InvalidValue("seal recipient agency must be an AgencyCode")
        _fixed_bytes(self.key_fingerprint, "seal key fingerprint", 32)
        _fixed_bytes(self.ephemeral_key, "seal ephemeral key", 32)
        _fixed_bytes(self.wrapped_key, "seal wrapped key", 48)

    def to_value(self) -> Value:
        return {
            "agency": str(self.agency),
            "fp": self.key_fingerprint,
            "epk": self.ephemeral_key,
            "wk": self.wrapped_key,
        }

    @classmethod
    def from_value(cls, value: Value) -> SealRecipient:
        if not isinstance(value, dict) or set(value) != {"agency", "fp", "epk", "wk"}:
            raise InvalidValue("seal recipient must have exactly agency, fp, epk and wk")
        if not isinstance(value["agency"], str):
            raise InvalidValue("seal recipient agency must be text")
        return cls(
            agency=AgencyCode(value["agency"]),
            key_fingerprint=value["fp"],
            ephemeral_key=value["epk"],
            wrapped_key=value["wk"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SealInfo:
    """How a sealed document's content key reaches its recipients.

    Attributes:
        algorithm: the sealing scheme's name, e.g. ``"p2pdoc-seal/v1"``.
        recipients: one wrapped key per recipient node key; no (agency, key) twice.
        header: the sealed full header and file list.
    """

    algorithm: str
    recipients: tuple[SealRecipient, ...]
    header: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, str) or not _SEAL_ALG_RE.fullmatch(self.algorithm):
            raise InvalidValue("seal algorithm must be a short lower-case name")
        recipients = tuple(self.recipients)
        if not 1 <= len(recipients) <= MAX_SEAL_RECIPIENTS:
            raise InvalidValue(f"a seal needs 1..{MAX_SEAL_RECIPIENTS} recipients")
        if not all(isinstance(r, SealRecipient) for r in recipients):
            raise InvalidValue("seal recipients must be SealRecipient values")
        keys = {(r.agency, r.key_fingerprint) for r in recipients}
        if len(keys) != len(recipients):
            raise InvalidValue("a seal names the same recipient key twice")
        object.__setattr__(self, "recipients", recipients)
        if not isinstance(self.header, bytes) or not 0 < len(self.header) <= MAX_MANIFEST_SIZE:
            raise InvalidValue("the sealed header must be 1..1 MiB of bytes")

    def to_value(self) -> Value:
        return {
            "alg": self.algorithm,
            "to": [r.to_value() for r in self.recipients],
            "header": self.header,
        }

    @classmethod
    def from_value(cls, value: Value) -> SealInfo:
        if not isinstance(value, dict) or set(value) != {"alg", "to", "header"}:
            raise InvalidValue("seal must have exactly alg, to and header")
        to = value["to"]
        if not isinstance(to, list) or len(to) > MAX_SEAL_RECIPIENTS:
            raise InvalidValue(f"seal recipients must be a list of at most {MAX_SEAL_RECIPIENTS}")
        return cls(
            algorithm=value["alg"],
            recipients=tuple(SealRecipient.from_value(r) for r in to),
            header=value["header"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A document version: header and files. ``encode()`` gives the block, ``root`` its CID.

    ``seal`` is set for a sealed document (its header then holds routing fields only).
    """

    envelope: Envelope
    files: tuple[FileEntry, ...]
    seal: SealInfo | None = None

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
        if self.seal is not None and not isinstance(self.seal, SealInfo):
            raise InvalidValue("manifest seal must be a SealInfo")

    def to_value(self) -> Value:
        out: dict[str, Value] = {
            "v": MANIFEST_VERSION,
            "header": self.envelope.to_value(),
            "files": [f.to_value() for f in self.files],
        }
        if self.seal is not None:
            out["seal"] = self.seal.to_value()
        return out

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
        if not isinstance(value, dict) or set(value) - {"seal"} != {"v", "header", "files"}:
            raise InvalidValue("manifest must have exactly v, header and files (and maybe seal)")
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
            seal=SealInfo.from_value(value["seal"]) if "seal" in value else None,
        )
