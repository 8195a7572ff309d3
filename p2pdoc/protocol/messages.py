"""Session messages: typed, validated values and their wire encoding.

Goals: every frame a peer can send maps to exactly one message type here or raises
:class:`~p2pdoc.errors.RemoteProtocolError`; decoding is bounded by the frame size and by
per-field limits below; encoding is compact (msgpack arrays, positional fields) because
sessions carry thousands of messages a second.
Non-goals: meaning and ordering rules (see :mod:`p2pdoc.protocol.session` and the protocol
specification); signed payloads (manifests, signature sets, receipts, status reports) travel
as opaque canonical-CBOR ``bytes`` and are verified by the layer that understands them.

Wire form of one frame payload: a msgpack array whose first element is the message type and
whose second is the request id (0 in handshake messages)::

    Hello        [1, 0, version, nonce(32B), agent, max_frame_size, max_in_flight]
    Auth         [2, 0, [certificate DER, ...], signature]
    Refuse       [3, 0, reason]
    Welcome      [4, 0]
    GetBlocks    [10, rid, root CID, [CID, ...]]
    Offer        [11, rid, manifest, signatures, [[CID, block], ...], [provider peer, ...]]
    PushStatus   [12, rid, report]
    Ping         [13, rid]
    Cancel       [14, rid]
    BlockData    [20, rid, CID, block]
    BlocksEnd    [21, rid, [missing CID, ...]]
    OfferResult  [22, rid, outcome, receipt or nil, reason, arrival status or nil]
    Ack          [23, rid]
    Error        [24, rid, code, message]

CIDs and peer IDs travel in their binary forms. Request ids are chosen by the requester,
positive, below 2**63, and unique among its requests in flight on the session.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgpack

from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import DecodeError, InvalidValue, RemoteProtocolError
from p2pdoc.model.ids import PeerId

__all__ = [
    "MAX_BLOCKS_PER_REQUEST",
    "MAX_BLOCK_SIZE",
    "PROTOCOL_VERSION",
    "Ack",
    "Auth",
    "BlockData",
    "BlocksEnd",
    "Cancel",
    "ErrorReply",
    "GetBlocks",
    "Hello",
    "Message",
    "Offer",
    "OfferOutcome",
    "OfferResult",
    "Ping",
    "PushStatus",
    "Refuse",
    "Request",
    "Response",
    "Welcome",
    "decode_message",
    "encode_message",
]

PROTOCOL_VERSION: Final = 1
MAX_BLOCK_SIZE: Final = 1 << 20
"""Largest block accepted (IPFS's limit); our own leaves are 256 KiB."""
MAX_BLOCKS_PER_REQUEST: Final = 256
MAX_INLINE_BYTES: Final = 256 << 10
"""Largest total size of blocks carried inline in an offer."""
MAX_CHAIN_LENGTH: Final = 4
MAX_CERTIFICATE_SIZE: Final = 16 << 10
MAX_SIGNED_OBJECT: Final = 1 << 20
MAX_TEXT: Final = 1000
MAX_PROVIDERS: Final = 16
_MAX_RID: Final = (1 << 63) - 1


class _Type(enum.IntEnum):
    HELLO = 1
    AUTH = 2
    REFUSE = 3
    WELCOME = 4
    GET_BLOCKS = 10
    OFFER = 11
    PUSH_STATUS = 12
    PING = 13
    CANCEL = 14
    BLOCK_DATA = 20
    BLOCKS_END = 21
    OFFER_RESULT = 22
    ACK = 23
    ERROR = 24


class OfferOutcome(enum.IntEnum):
    """How a recipient answers an offer."""

    DELIVERED = 0
    """Stored and handed to the inbox; ``receipt`` holds the signed receipt."""
    REJECTED = 1
    """Refused for good (not a recipient, bad signature, policy...); do not retry."""
    RETRY = 2
    """Temporarily unable (busy, storage full, blocks unavailable); retry later."""


# -- handshake ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    nonce: bytes
    agent: str
    max_frame_size: int
    max_in_flight: int


@dataclass(frozen=True, slots=True)
class Auth:
    chain: tuple[bytes, ...]
    signature: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str


@dataclass(frozen=True, slots=True)
class Welcome:
    """The sender verified the receiver's Auth: admission succeeded on its side."""


# -- requests -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetBlocks:
    """Ask for blocks of the document ``root``; the answer is BlockData frames then BlocksEnd."""

    rid: int
    root: Cid
    cids: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class Offer:
    """Offer a document: its manifest, signature set, small blocks inline, other holders."""

    rid: int
    manifest: bytes
    signatures: bytes
    blocks: tuple[tuple[Cid, bytes], ...] = ()
    providers: tuple[PeerId, ...] = ()


@dataclass(frozen=True, slots=True)
class PushStatus:
    rid: int
    report: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    rid: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop answering the requester's GetBlocks ``rid`` (it still ends with BlocksEnd)."""

    rid: int


# -- responses ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockData:
    rid: int
    cid: Cid
    data: bytes


@dataclass(frozen=True, slots=True)
class BlocksEnd:
    rid: int
    missing: tuple[Cid, ...] = ()


@dataclass(frozen=True, slots=True)
class OfferResult:
    """The answer to an Offer. With DELIVERED: the receipt, and the recipient's automatic
    status 01 (arrived) report when it makes one, so that it needs no separate push."""

    rid: int
    outcome: OfferOutcome
    receipt: bytes | None = None
    reason: str = ""
    status: bytes | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    rid: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A request failed on the responder's side; ``code`` is a stable token."""

    rid: int
    code: str
    message: str


Request: TypeAlias = GetBlocks | Offer | PushStatus | Ping
Response: TypeAlias = BlockData | BlocksEnd | OfferResult | Ack | ErrorReply
Message: TypeAlias = Hello | Auth | Refuse | Welcome | Request | Cancel | Response

_PACKER_OPTIONS: Final = {"use_bin_type": True, "datetime": False}


def encode_message(message: Message) -> bytes:
    """The frame payload for ``message``."""
    match message:
        case BlockData(rid, cid, data):
            fields: list[Any] = [_Type.BLOCK_DATA, rid, cid.to_bytes(), data]
        case GetBlocks(rid, root, cids):
            fields = [_Type.GET_BLOCKS, rid, root.to_bytes(), [c.to_bytes() for c in cids]]
        case BlocksEnd(rid, missing):
            fields = [_Type.BLOCKS_END, rid, [c.to_bytes() for c in missing]]
        case Offer(rid, manifest, signatures, blocks, providers):
            fields = [
                _Type.OFFER,
                rid,
                manifest,
                signatures,
                [[c.to_bytes(), b] for c, b in blocks],
                [p.to_bytes() for p in providers],
            ]
        case OfferResult(rid, outcome, receipt, reason, status):
            fields = [_Type.OFFER_RESULT, rid, int(outcome), receipt, reason, status]
        case PushStatus(rid, report):
            fields = [_Type.PUSH_STATUS, rid, report]
        case Ack(rid):
            fields = [_Type.ACK, rid]
        case Ping(rid):
            fields = [_Type.PING, rid]
        case Cancel(rid):
            fields = [_Type.CANCEL, rid]
        case ErrorReply(rid, code, text):
            fields = [_Type.ERROR, rid, code, text]
        case Hello(version, nonce, agent, max_frame, max_in_flight):
            fields = [_Type.HELLO, 0, version, nonce, agent, max_frame, max_in_flight]
        case Auth(chain, signature):
            fields = [_Type.AUTH, 0, list(chain), signature]
        case Refuse(reason):
            fields = [_Type.REFUSE, 0, reason]
        case Welcome():
            fields = [_Type.WELCOME, 0]
        case _:
            raise InvalidValue(f"not a session message: {type(message).__name__}")
    return msgpack.packb(fields, **_PACKER_OPTIONS)  # type: ignore[no-any-return]


# -- decoding -----------------------------------------------------------------------------


def _fail(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed message: {what}")


def _bytes(value: object, what: str, *, max_size: int, exact: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise _fail(f"{what} must be bytes")
    if len(value) > max_size or (exact is not None and len(value) != exact):
        raise _fail(f"{what} has bad length {len(value)}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _fail(f"{what} must be text of at most {MAX_TEXT} characters")
    return value


def _uint(value: object, what: str, *, max_value: int = _MAX_RID) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= max_value:
        raise _fail(f"{what} must be an integer 0..{max_value}")
    return value


def _list(value: object, what: str, *, max_items: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_items:
        raise _fail(f"{what} must be a list of at most {max_items} items")
    return value


def _cid(value: object, what: str) -> Cid:
    try:
        return Cid.from_bytes(_bytes(value, what, max_size=64))
    except DecodeError as exc:
        raise _fail(f"{what}: {exc}") from None


def _peer(value: object) -> PeerId:
    try:
        return PeerId(_bytes(value, "provider", max_size=64))
    except InvalidValue as exc:
        raise _fail(f"provider: {exc}") from None


def _arity(fields: list[Any], n: int, name: str) -> None:
    if len(fields) != n:
        raise _fail(f"{name} has {len(fields)} fields, expected {n}")


def decode_message(payload: bytes) -> Message:
    """Parse one frame payload into a message, validating every field.

    Raises:
        RemoteProtocolError: not msgpack, unknown type, wrong arity, or a field out of range.
    """
    try:
        fields = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=len(payload),
            max_str_len=len(payload),
            max_array_len=MAX_BLOCKS_PER_REQUEST + 8,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise _fail(f"not msgpack ({type(exc).__name__})") from None
    if not isinstance(fields, list) or len(fields) < 2:
        raise _fail("a message is an array [type, rid, ...]")
    raw_type = fields[0]
    if not isinstance(raw_type, int) or isinstance(raw_type, bool):
        raise _fail("message type must be an integer")
    try:
        kind = _Type(raw_type)
    except ValueError:
        raise RemoteProtocolError(f"unknown message type {raw_type}") from None
    rid = _uint(fields[1], "request id")
    if kind in (_Type.HELLO, _Type.AUTH, _Type.REFUSE, _Type.WELCOME):
        if rid != 0:
            raise _fail("handshake messages carry request id 0")
    elif rid == 0:
        raise _fail("request id 0 is reserved for the handshake")
    return _DECODERS[kind](fields, rid)


def _decode_hello(f: list[Any], rid: int) -> Hello:
    _arity(f, 7, "Hello")
    return Hello(
        version=_uint(f[2], "version", max_value=1 << 16),
        nonce=_bytes(f[3], "nonce", max_size=32, exact=32),
        agent=_text(f[4], "agent"),
        max_frame_size=_uint(f[5], "max frame size", max_value=(1 << 32) - 1),
        max_in_flight=_uint(f[6], "max in flight", max_value=1 << 16),
    )


def _decode_auth(f: list[Any], rid: int) -> Auth:
    _arity(f, 4, "Auth")
    chain = _list(f[2], "certificate chain", max_items=MAX_CHAIN_LENGTH)
    return Auth(
        chain=tuple(_bytes(c, "certificate", max_size=MAX_CERTIFICATE_SIZE) for c in chain),
        signature=_bytes(f[3], "signature", max_size=1024),
    )


def _decode_refuse(f: list[Any], rid: int) -> Refuse:
    _arity(f, 3, "Refuse")
    return Refuse(reason=_text(f[2], "reason"))


def _decode_welcome(f: list[Any], rid: int) -> Welcome:
    _arity(f, 2, "Welcome")
    return Welcome()


def _decode_get_blocks(f: list[Any], rid: int) -> GetBlocks:
    _arity(f, 4, "GetBlocks")
    cids = _list(f[3], "cids", max_items=MAX_BLOCKS_PER_REQUEST)
    if not cids:
        raise _fail("GetBlocks names no block")
    return GetBlocks(rid, _cid(f[2], "root"), tuple(_cid(c, "cid") for c in cids))


def _decode_offer(f: list[Any], rid: int) -> Offer:
    _arity(f, 6, "Offer")
    inline = _list(f[4], "inline blocks", max_items=MAX_BLOCKS_PER_REQUEST)
    blocks = []
    total = 0
    for item in inline:
        pair = _list(item, "inline block", max_items=2)
        _arity(pair, 2, "inline block")
        data = _bytes(pair[1], "inline block data", max_size=MAX_BLOCK_SIZE)
        total += len(data)
        blocks.append((_cid(pair[0], "inline block cid"), data))
    if total > MAX_INLINE_BYTES:
        raise _fail(f"inline blocks total {total} bytes, over {MAX_INLINE_BYTES}")
    providers = _list(f[5], "providers", max_items=MAX_PROVIDERS)
    return Offer(
        rid,
        manifest=_bytes(f[2], "manifest", max_size=MAX_SIGNED_OBJECT),
        signatures=_bytes(f[3], "signatures", max_size=MAX_SIGNED_OBJECT),
        blocks=tuple(blocks),
        providers=tuple(_peer(p) for p in providers),
    )


def _decode_push_status(f: list[Any], rid: int) -> PushStatus:
    _arity(f, 3, "PushStatus")
    return PushStatus(rid, _bytes(f[2], "report", max_size=MAX_SIGNED_OBJECT))


def _decode_ping(f: list[Any], rid: int) -> Ping:
    _arity(f, 2, "Ping")
    return Ping(rid)


def _decode_cancel(f: list[Any], rid: int) -> Cancel:
    _arity(f, 2, "Cancel")
    return Cancel(rid)


def _decode_block_data(f: list[Any], rid: int) -> BlockData:
    _arity(f, 4, "BlockData")
    return BlockData(rid, _cid(f[2], "cid"), _bytes(f[3], "block", max_size=MAX_BLOCK_SIZE))


def _decode_blocks_end(f: list[Any], rid: int) -> BlocksEnd:
    _arity(f, 3, "BlocksEnd")
    missing = _list(f[2], "missing", max_items=MAX_BLOCKS_PER_REQUEST)
    return BlocksEnd(rid, tuple(_cid(c, "missing cid") for c in missing))


def _decode_offer_result(f: list[Any], rid: int) -> OfferResult:
    _arity(f, 6, "OfferResult")
    try:
        outcome = OfferOutcome(_uint(f[2], "outcome", max_value=255))
    except ValueError:
        raise _fail(f"unknown offer outcome {f[2]}") from None
    receipt = None if f[3] is None else _bytes(f[3], "receipt", max_size=MAX_SIGNED_OBJECT)
    if (outcome is OfferOutcome.DELIVERED) != (receipt is not None):
        raise _fail("a receipt comes with DELIVERED and only then")
    status = None if f[5] is None else _bytes(f[5], "status", max_size=MAX_SIGNED_OBJECT)
    if status is not None and receipt is None:
        raise _fail("an arrival status comes only with a receipt")
    return OfferResult(rid, outcome, receipt, _text(f[4], "reason"), status)


def _decode_ack(f: list[Any], rid: int) -> Ack:
    _arity(f, 2, "Ack")
    return Ack(rid)


def _decode_error(f: list[Any], rid: int) -> ErrorReply:
    _arity(f, 4, "Error")
    return ErrorReply(rid, _text(f[2], "error code"), _text(f[3], "error message"))


_DECODERS: Final[dict[_Type, Callable[[list[Any], int], Message]]] = {
    _Type.HELLO: _decode_hello,
    _Type.AUTH: _decode_auth,
    _Type.REFUSE: _decode_refuse,
    _Type.WELCOME: _decode_welcome,
    _Type.GET_BLOCKS: _decode_get_blocks,
    _Type.OFFER: _decode_offer,
    _Type.PUSH_STATUS: _decode_push_status,
    _Type.PING: _decode_ping,
    _Type.CANCEL: _decode_cancel,
    _Type.BLOCK_DATA: _decode_block_data,
    _Type.BLOCKS_END: _decode_blocks_end,
    _Type.OFFER_RESULT: _decode_offer_result,
    _Type.ACK: _decode_ack,
    _Type.ERROR: _decode_error,
}
