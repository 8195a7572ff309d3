"""Session fixtures: Ed25519 'certificates' that are just (agency code, public key) pairs.

The protocol layer only needs a Gatekeeper; these stand in for the trust layer in unit tests
of framing and multiplexing. Integration tests use the real PKI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio
import trio.testing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import PeerIdMismatch, SignatureInvalid, UnknownIssuer
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.protocol.messages import Ack, GetBlocks, Offer, OfferOutcome, OfferResult, PushStatus
from p2pdoc.protocol.session import Session, SessionLimits, establish


class TestIdentity:
    __test__ = False

    def __init__(self, code: str) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.peer = PeerId.from_ed25519(raw)
        self.agency = AgencyCode(code)
        self.chain = (cbor.encode({"agency": code, "key": raw}),)

    def sign(self, payload: bytes) -> bytes:
        return self.key.sign(payload)


class TestGatekeeper:
    __test__ = False

    def __init__(self, *, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.refuse = refuse

    def admit(
        self, chain: Sequence[bytes], peer: PeerId, payload: bytes, signature: bytes
    ) -> tuple[AgencyCode, object]:
        cert = cbor.decode(chain[0])
        if cert["agency"] in self.refuse:
            raise UnknownIssuer("not certified by a known issuer", subject=cert["agency"])
        if PeerId.from_ed25519(cert["key"]) != peer:
            raise PeerIdMismatch("certificate names another peer", subject=cert["agency"])
        try:
            Ed25519PublicKey.from_public_bytes(cert["key"]).verify(signature, payload)
        except InvalidSignature:
            raise SignatureInvalid("admission proof does not verify") from None
        return AgencyCode(cert["agency"]), cert


class RecordingHandler:
    """Answers offers DELIVERED with the manifest as 'receipt'; serves blocks from a dict."""

    def __init__(self, blocks: dict[Cid, bytes] | None = None) -> None:
        self.blocks = blocks or {}
        self.offers: list[Offer] = []
        self.statuses: list[bytes] = []
        self.offer_gate: trio.Event | None = None

    async def offer(self, session: Session, request: Offer) -> OfferResult:
        self.offers.append(request)
        if self.offer_gate is not None:
            await self.offer_gate.wait()
        return OfferResult(
            request.rid, OfferOutcome.DELIVERED, receipt=b"receipt:" + request.manifest
        )

    async def push_status(self, session: Session, request: PushStatus) -> Ack:
        self.statuses.append(request.report)
        return Ack(request.rid)

    async def get_blocks(
        self, session: Session, request: GetBlocks, send: Callable[[Cid, bytes], Awaitable[None]]
    ) -> Sequence[Cid]:
        missing = []
        for cid in request.cids:
            if cid in self.blocks:
                await send(cid, self.blocks[cid])
            else:
                missing.append(cid)
        return missing


async def session_pair(
    a: TestIdentity,
    b: TestIdentity,
    *,
    handler_a: RecordingHandler | None = None,
    handler_b: RecordingHandler | None = None,
    gatekeeper: TestGatekeeper | None = None,
    limits: SessionLimits = SessionLimits(),
) -> tuple[Session, Session]:
    stream_a, stream_b = trio.testing.memory_stream_pair()
    gate = gatekeeper or TestGatekeeper()
    out: dict[str, Session] = {}

    async def side(
        name: str,
        stream: trio.abc.Stream,
        me: TestIdentity,
        other: TestIdentity,
        handler: RecordingHandler,
    ) -> None:
        out[name] = await establish(
            stream,
            local=me.peer,
            remote=other.peer,
            credentials=me,
            gatekeeper=gate,
            handler=handler,
            limits=limits,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "a", stream_a, a, b, handler_a or RecordingHandler())
        nursery.start_soon(side, "b", stream_b, b, a, handler_b or RecordingHandler())
    return out["a"], out["b"]
