"""Sealed documents: content encrypted to the recipients' node keys.

Goals: a peer that stores or relays a sealed document's blocks learns nothing but sizes and
routing fields; only the listed recipient node keys can open it; segments cannot be
altered, reordered, truncated or extended without detection; sealing runs in bounded
memory over streams of any size, before the content is chunked into blocks.
Non-goals: hiding sizes or the sender/recipient list (routing needs them), forward secrecy
for the recipients' long-term keys, sender authentication (the document signatures over the
manifest CID provide it: the manifest includes the seal).

Scheme ``p2pdoc-seal/v1`` (details and rationale in ``docs/trust-model.md``):

- **Content key**: 32 random bytes per document version.
- **Content**: each file (index ``i``) and the full header (index ``0xFFFFFFFF``) is
  ChaCha20-Poly1305 over segments of :data:`SEGMENT_SIZE` plaintext bytes, so a sealed
  segment is exactly 256 KiB and lines up with a UnixFS chunk. The 96-bit nonce is
  ``i`` (4 bytes) || segment number (7 bytes) || last-segment flag (1 byte), as in the
  STREAM construction: a segment moved, dropped or appended fails authentication.
- **Key wrap**, per recipient node key: an ephemeral X25519 key pair; the shared secret
  goes through HKDF-SHA256 with ``info`` = canonical CBOR of {context, agency code,
  ephemeral public key, recipient public key}; the 32-byte result encrypts the content key
  with ChaCha20-Poly1305 (zero nonce: each derived key is used once). The recipient is
  named by agency code and the SHA-256 fingerprint of its X25519 public key.
- **Header**: the manifest keeps routing fields only (:func:`routing_envelope`); the full
  envelope and the real file names, media types and sizes are sealed into
  ``SealInfo.header``. Opening checks that they agree with the routing fields.

HPKE (RFC 9180) in ``cryptography`` was considered; its single-shot API is recent and
changed between releases, so the construction above uses long-stable primitives only.
"""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.errors import DecodeError, InvalidValue, NotARecipient, SealInvalid
from p2pdoc.model.envelope import (
    BusinessInfo,
    DocumentType,
    Envelope,
    Organization,
    SignerInfo,
)
from p2pdoc.model.ids import AgencyCode
from p2pdoc.model.manifest import (
    MAX_FILES,
    MAX_MANIFEST_SIZE,
    FileEntry,
    Manifest,
    SealInfo,
    SealRecipient,
)
from p2pdoc.trust.keys import AgreementKey
from p2pdoc.trust.validation import VerifiedNode

__all__ = [
    "HEADER_FILE_INDEX",
    "SEALED_MEDIA_TYPE",
    "SEALED_SEGMENT_SIZE",
    "SEAL_ALGORITHM",
    "SEGMENT_SIZE",
    "ContentKey",
    "DocumentSealer",
    "OpenedSeal",
    "PlainFile",
    "RecipientKey",
    "SegmentOpener",
    "SegmentSealer",
    "open_sealed_manifest",
    "open_stream",
    "routing_envelope",
    "seal_stream",
    "sealed_file_name",
    "sealed_size",
]

SEAL_ALGORITHM: Final = "p2pdoc-seal/v1"
TAG_SIZE: Final = 16
SEALED_SEGMENT_SIZE: Final = 256 * 1024
SEGMENT_SIZE: Final = SEALED_SEGMENT_SIZE - TAG_SIZE
HEADER_FILE_INDEX: Final = 0xFFFFFFFF
MAX_SEGMENTS: Final = 1 << 56
SEALED_MEDIA_TYPE: Final = "application/octet-stream"
SEALED_SUBJECT: Final = "(sealed document)"
SEALED_SIGNER: Final = "(sealed)"
SEALED_DOCUMENT_TYPE: Final = DocumentType(code=0, name="(sealed)")
_WRAP_CONTEXT: Final = "p2pdoc/seal-key-wrap/v1"
_ZERO_NONCE: Final = bytes(12)
_NO_CONTENT: Final = Cid.of(Multicodec.RAW, b"")


class ContentKey:
    """A document version's 32-byte content key. ``repr`` never shows it."""

    __slots__ = ("_aead", "_key")

    _key: bytes
    _aead: ChaCha20Poly1305

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise InvalidValue("a content key is 32 bytes")
        self._key = key
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def generate(cls) -> ContentKey:
        """A fresh key from the operating system's random source."""
        return cls(os.urandom(32))

    def __repr__(self) -> str:
        return "ContentKey(…)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContentKey) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)


def _check_index(file_index: int) -> int:
    if not isinstance(file_index, int) or not 0 <= file_index <= HEADER_FILE_INDEX:
        raise InvalidValue("a file index is 0..0xFFFFFFFF")
    return file_index


def _nonce(prefix: bytes, segment: int, last: bool) -> bytes:
    return prefix + segment.to_bytes(7, "big") + (b"\x01" if last else b"\x00")


def sealed_size(plaintext_size: int) -> int:
    """The size of a sealed stream of ``plaintext_size`` bytes (at least one segment)."""
    if plaintext_size < 0:
        raise InvalidValue("a size is not negative")
    segments = max(1, -(-plaintext_size // SEGMENT_SIZE))
    return plaintext_size + segments * TAG_SIZE


class _Segmenter(abc.ABC):
    """Cuts a stream into fixed-size segments and hands each to :meth:`_process`, knowing
    for each whether it is the last one (a segment is processed as non-final only once a
    later byte has arrived).

    Memory: one reused scratch segment. Read-only input (``bytes``) that ends exactly on a
    segment boundary is held by reference until the next call instead of being copied.
    """

    __slots__ = ("_aead", "_done", "_fill", "_held", "_prefix", "_scratch", "_segment", "_size")

    def __init__(self, key: ContentKey, file_index: int, size: int) -> None:
        self._aead = key._aead
        self._prefix = _check_index(file_index).to_bytes(4, "big")
        self._size = size
        self._scratch = bytearray(size)
        self._fill = 0
        self._held: memoryview | None = None
        self._segment = 0
        self._done = False

    @abc.abstractmethod
    def _process(self, data: memoryview, last: bool) -> bytes:
        """Seal or open one segment."""

    def _next(self, data: memoryview, last: bool) -> bytes:
        out = self._process(data, last)
        self._segment += 1
        return out

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._done:
            raise InvalidValue(f"the {type(self).__name__} is finished")
        view = memoryview(data).cast("B")
        out: list[bytes] = []
        if not view:
            return out
        size = self._size
        if self._held is not None:
            out.append(self._next(self._held, False))
            self._held = None
        elif self._fill:
            need = size - self._fill
            if len(view) <= need:
                self._scratch[self._fill : self._fill + len(view)] = view
                self._fill += len(view)
                return out
            self._scratch[self._fill :] = view[:need]
            view = view[need:]
            self._fill = 0
            out.append(self._next(memoryview(self._scratch), False))
        while len(view) > size:
            out.append(self._next(view[:size], False))
            view = view[size:]
        if len(view) == size and view.readonly:
            self._held = view
        else:
            self._scratch[: len(view)] = view
            self._fill = len(view)
        return out

    def _finish(self) -> bytes:
        if self._done:
            raise InvalidValue(f"the {type(self).__name__} is finished")
        self._done = True
        if self._held is not None:
            last, self._held = self._held, None
        else:
            last = memoryview(self._scratch)[: self._fill]
        return self._next(last, True)


class SegmentSealer(_Segmenter):
    """Seals one stream incrementally (sans-IO): :meth:`feed` plaintext, then
    :meth:`finish`. Holds at most one segment of plaintext."""

    __slots__ = ()

    def __init__(self, key: ContentKey, *, file_index: int) -> None:
        super().__init__(key, file_index, SEGMENT_SIZE)

    def _process(self, data: memoryview, last: bool) -> bytes:
        if self._segment >= MAX_SEGMENTS:
            raise InvalidValue("stream too long to seal")
        return self._aead.encrypt(_nonce(self._prefix, self._segment, last), data, None)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add plaintext; returns the sealed segments now complete (possibly none)."""
        return super().feed(data)

    def finish(self) -> bytes:
        """Seal the final segment (0..SEGMENT_SIZE bytes of plaintext)."""
        return self._finish()


class SegmentOpener(_Segmenter):
    """Opens one sealed stream incrementally: :meth:`feed` ciphertext, then :meth:`finish`.

    Plaintext of a segment is returned only after that segment authenticated; the stream
    is complete (not truncated) only once :meth:`finish` returns.
    """

    __slots__ = ()

    def __init__(self, key: ContentKey, *, file_index: int) -> None:
        super().__init__(key, file_index, SEALED_SEGMENT_SIZE)

    def _process(self, data: memoryview, last: bool) -> bytes:
        if self._segment >= MAX_SEGMENTS:
            raise SealInvalid("sealed stream has too many segments")
        if len(data) < TAG_SIZE:
            raise SealInvalid("sealed stream is truncated")
        try:
            return self._aead.decrypt(_nonce(self._prefix, self._segment, last), data, None)
        except InvalidTag:
            where = "final segment" if last else f"segment {self._segment}"
            raise SealInvalid(
                f"sealed {where} fails authentication (altered, reordered, truncated, "
                "or another key)"
            ) from None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ciphertext; returns plaintext of the segments now authenticated.

        Raises:
            SealInvalid: a segment fails authentication.
        """
        return super().feed(data)

    def finish(self) -> bytes:
        """Open the final segment.

        Raises:
            SealInvalid: the stream is truncated or extended, or the final segment fails.
        """
        return self._finish()


def seal_stream(
    chunks: Iterable[bytes | bytearray | memoryview], key: ContentKey, *, file_index: int
) -> Iterator[bytes]:
    """Seal a plaintext stream given as chunks of any sizes; yields sealed segments
    (each :data:`SEALED_SEGMENT_SIZE` bytes, the last one shorter or equal)."""
    sealer = SegmentSealer(key, file_index=file_index)
    for chunk in chunks:
        yield from sealer.feed(chunk)
    yield sealer.finish()


def open_stream(
    chunks: Iterable[bytes | bytearray | memoryview], key: ContentKey, *, file_index: int
) -> Iterator[bytes]:
    """Open a sealed stream given as chunks of any sizes; yields plaintext segments.

    Raises:
        SealInvalid: on the first segment that fails, or at the end if truncated. Treat
            everything yielded as provisional until the iterator is exhausted.
    """
    opener = SegmentOpener(key, file_index=file_index)
    for chunk in chunks:
        yield from opener.feed(chunk)
    yield opener.finish()


# -- recipients and key wrapping --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A recipient node's key agreement key, as its node certificate states it."""

    agency: AgencyCode
    x25519_public: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.agency, AgencyCode):
            raise InvalidValue("recipient agency must be an AgencyCode")
        if not isinstance(self.x25519_public, bytes) or len(self.x25519_public) != 32:
            raise InvalidValue("an X25519 public key is 32 bytes")

    @classmethod
    def of_node(cls, node: VerifiedNode) -> RecipientKey:
        """The key of a node admitted by :func:`verify_node_chain`."""
        return cls(node.agency, node.x25519_public)

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.x25519_public).digest()


def _wrap_key(agency: AgencyCode, ephemeral: bytes, recipient: bytes, shared: bytes) -> bytes:
    info = cbor.encode(
        {"ctx": _WRAP_CONTEXT, "agency": str(agency), "epk": ephemeral, "rpk": recipient}
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _wrap(content_key: ContentKey, recipient: RecipientKey) -> SealRecipient:
    ephemeral = x25519.X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(
            x25519.X25519PublicKey.from_public_bytes(recipient.x25519_public)
        )
    except ValueError:
        raise InvalidValue(f"unusable X25519 key for recipient {recipient.agency}") from None
    kek = _wrap_key(recipient.agency, ephemeral_public, recipient.x25519_public, shared)
    wrapped = ChaCha20Poly1305(kek).encrypt(_ZERO_NONCE, content_key._key, None)
    return SealRecipient(
        agency=recipient.agency,
        key_fingerprint=recipient.fingerprint,
        ephemeral_key=ephemeral_public,
        wrapped_key=wrapped,
    )


def _unwrap(entry: SealRecipient, key: AgreementKey) -> ContentKey:
    try:
        shared = key.exchange(entry.ephemeral_key)
    except InvalidValue:
        raise SealInvalid("the seal's ephemeral key is unusable") from None
    kek = _wrap_key(entry.agency, entry.ephemeral_key, key.public_bytes, shared)
    try:
        return ContentKey(ChaCha20Poly1305(kek).decrypt(_ZERO_NONCE, entry.wrapped_key, None))
    except InvalidTag:
        raise SealInvalid("the wrapped content key fails authentication") from None


# -- documents --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlainFile:
    """A file's real metadata, sealed inside the header: name, media type, plaintext size."""

    name: str
    media_type: str
    size: int

    def __post_init__(self) -> None:
        # FileEntry validates the same rules; a placeholder CID stands in for the content.
        FileEntry(name=self.name, media_type=self.media_type, size=self.size, cid=_NO_CONTENT)


def sealed_file_name(index: int) -> str:
    """The placeholder name of file ``index`` in a sealed manifest."""
    return f"sealed-{index + 1:04d}"


def routing_envelope(envelope: Envelope) -> Envelope:
    """The header a sealed manifest shows to relays: who, to whom, which document id,
    priority, classification and business type; everything else is a fixed placeholder.

    Kept: sender and recipient codes and names, number, notation and promulgation date
    (the document id, needed for duplicate detection), priority, classification,
    business type and target. Dropped: subject, content, signer, contacts, place, type,
    due date, sphere, page count, appendix names, steering type, response-for, reason.
    """
    return Envelope(
        sender=Organization(code=envelope.sender.code, name=envelope.sender.name),
        recipients=tuple(Organization(code=r.code, name=r.name) for r in envelope.recipients),
        number=envelope.number,
        notation=envelope.notation,
        promulgation_date=envelope.promulgation_date,
        subject=SEALED_SUBJECT,
        signer=SignerInfo(full_name=SEALED_SIGNER),
        document_type=SEALED_DOCUMENT_TYPE,
        priority=envelope.priority,
        classification=envelope.classification,
        business=BusinessInfo(type=envelope.business.type, target=envelope.business.target),
    )


class DocumentSealer:
    """Seals one document version to a set of recipient node keys.

    Use: create it with the recipients' keys (every envelope recipient needs at least one;
    add the sender's own node key to be able to reopen the document), seal each file's
    plaintext with :meth:`seal_file` (or :meth:`file_sealer`) and import the ciphertext as
    the file's blocks (its size is :func:`sealed_size`), then :meth:`seal` yields the
    routing header and :class:`SealInfo` for the manifest.
    """

    __slots__ = ("_content_key", "_recipients")

    def __init__(
        self, recipients: Sequence[RecipientKey], *, content_key: ContentKey | None = None
    ) -> None:
        recipients = tuple(recipients)
        if not recipients:
            raise InvalidValue("a sealed document needs at least one recipient key")
        if not all(isinstance(r, RecipientKey) for r in recipients):
            raise InvalidValue("recipients must be RecipientKey values")
        if len(set(recipients)) != len(recipients):
            raise InvalidValue("a recipient key is listed twice")
        self._recipients = recipients
        self._content_key = content_key or ContentKey.generate()

    @property
    def content_key(self) -> ContentKey:
        return self._content_key

    def file_sealer(self, index: int) -> SegmentSealer:
        if not 0 <= index < MAX_FILES:
            raise InvalidValue(f"a file index is 0..{MAX_FILES - 1}")
        return SegmentSealer(self._content_key, file_index=index)

    def seal_file(
        self, index: int, chunks: Iterable[bytes | bytearray | memoryview]
    ) -> Iterator[bytes]:
        """Seal file ``index`` (its position in the manifest's file list)."""
        sealer = self.file_sealer(index)
        for chunk in chunks:
            yield from sealer.feed(chunk)
        yield sealer.finish()

    def seal(self, envelope: Envelope, files: Sequence[PlainFile]) -> tuple[Envelope, SealInfo]:
        """Seal the header and wrap the content key for every recipient key.

        Returns:
            The routing envelope and the seal, for ``Manifest(envelope=..., seal=...)``.

        Raises:
            InvalidValue: an envelope recipient has no key, or too many files.
        """
        covered = {r.agency for r in self._recipients}
        missing = [str(code) for code in envelope.recipient_codes if code not in covered]
        if missing:
            raise InvalidValue(f"no key to seal to recipient {', '.join(missing)}")
        if len(files) > MAX_FILES:
            raise InvalidValue(f"more than {MAX_FILES} files")
        plain = cbor.encode(
            {
                "header": envelope.to_value(),
                "files": [{"name": f.name, "type": f.media_type, "size": f.size} for f in files],
            }
        )
        header = b"".join(seal_stream([plain], self._content_key, file_index=HEADER_FILE_INDEX))
        seal = SealInfo(
            algorithm=SEAL_ALGORITHM,
            recipients=tuple(_wrap(self._content_key, r) for r in self._recipients),
            header=header,
        )
        return routing_envelope(envelope), seal

    def sealed_entry(self, index: int, plain: PlainFile, cid: Cid) -> FileEntry:
        """The manifest entry of sealed file ``index`` whose ciphertext has CID ``cid``."""
        return FileEntry(
            name=sealed_file_name(index),
            media_type=SEALED_MEDIA_TYPE,
            size=sealed_size(plain.size),
            cid=cid,
        )


@dataclass(frozen=True, slots=True, eq=False)
class OpenedSeal:
    """A sealed document opened by one of its recipients.

    Attributes:
        content_key: opens the files with :meth:`open_file`.
        envelope: the full header.
        files: the real file metadata, in manifest order.
    """

    content_key: ContentKey
    envelope: Envelope
    files: tuple[PlainFile, ...]

    def open_file(
        self, index: int, chunks: Iterable[bytes | bytearray | memoryview]
    ) -> Iterator[bytes]:
        """Plaintext of file ``index`` from its sealed bytes (see :func:`open_stream`)."""
        if not 0 <= index < len(self.files):
            raise InvalidValue(f"no file {index} in this document")
        return open_stream(chunks, self.content_key, file_index=index)


def open_sealed_manifest(
    manifest: Manifest, *, agency: AgencyCode, key: AgreementKey
) -> OpenedSeal:
    """Unwrap the content key for this node and open the sealed header.

    Raises:
        InvalidValue: the manifest is not sealed.
        NotARecipient: the seal holds no key for (``agency``, ``key``).
        SealInvalid: unknown scheme, the wrapped key or the header fails authentication,
            the header is malformed, or it disagrees with the manifest's routing fields or
            file list.
    """
    seal = manifest.seal
    if seal is None:
        raise InvalidValue("the document is not sealed")
    if seal.algorithm != SEAL_ALGORITHM:
        raise SealInvalid(f"unknown sealing scheme {seal.algorithm!r}")
    fingerprint = key.fingerprint
    entry = next(
        (r for r in seal.recipients if r.agency == agency and r.key_fingerprint == fingerprint),
        None,
    )
    if entry is None:
        raise NotARecipient(f"the document is not sealed to {agency} with this node's key")
    content_key = _unwrap(entry, key)
    plain = b"".join(open_stream([seal.header], content_key, file_index=HEADER_FILE_INDEX))
    try:
        value = cbor.decode(plain, max_size=MAX_MANIFEST_SIZE)
        if not isinstance(value, dict) or set(value) != {"header", "files"}:
            raise InvalidValue("sealed header must have exactly header and files")
        envelope = Envelope.from_value(value["header"])
        items = value["files"]
        if not isinstance(items, list) or len(items) > MAX_FILES:
            raise InvalidValue("sealed file list is not a list of at most 1000")
        files = tuple(_plain_file(item) for item in items)
    except (DecodeError, InvalidValue) as exc:
        raise SealInvalid(f"the sealed header is malformed: {exc}") from None
    if routing_envelope(envelope) != manifest.envelope:
        raise SealInvalid("the sealed header disagrees with the manifest's routing fields")
    if len(files) != len(manifest.files) or any(
        entry.size != sealed_size(plain_file.size) or entry.name != sealed_file_name(i)
        for i, (entry, plain_file) in enumerate(zip(manifest.files, files, strict=True))
    ):
        raise SealInvalid("the sealed file list disagrees with the manifest's files")
    return OpenedSeal(content_key=content_key, envelope=envelope, files=files)


def _plain_file(value: object) -> PlainFile:
    if not isinstance(value, dict) or set(value) != {"name", "type", "size"}:
        raise InvalidValue("a sealed file entry has exactly name, type and size")
    return PlainFile(name=value["name"], media_type=value["type"], size=value["size"])
