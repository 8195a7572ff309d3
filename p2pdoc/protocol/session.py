"""A session: one admitted, long-lived, pipelined conversation with a peer over a trio Stream.

Goals:
- admission before anything else (see :mod:`p2pdoc.protocol.admission`);
- many requests in flight in both directions on one stream, matched by request id, so no
  message pays for stream setup;
- bounded memory per peer: frames are limited in size, the peer may have at most
  ``max_in_flight`` of its requests served at once (it learns the number in our Hello; going
  over it is a protocol violation), our own requests wait for a slot in the peer's limit, and
  outgoing frames queue in a bounded channel so a peer that does not read makes our senders
  wait rather than buffer;
- a misbehaving peer (malformed frame, unknown request id, unrequested or corrupt block)
  ends its own session only.
Non-goals: what requests mean (the node's :class:`SessionHandler` decides) and retries.

Writes are coalesced: the writer task drains every frame queued while the previous
``send_all`` was running into one buffer, so pipelined small messages cost one transport write.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Final, Protocol

import trio

from p2pdoc.codecs.cid import Cid
from p2pdoc.codecs.frames import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from p2pdoc.errors import (
    AdmissionRefused,
    ConnectionLost,
    ContentMismatch,
    DecodeError,
    LimitExceeded,
    LocalProtocolError,
    P2pdocError,
    ProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from p2pdoc.model.ids import PeerId
from p2pdoc.protocol.admission import AdmittedPeer, Credentials, Gatekeeper, Handshake
from p2pdoc.protocol.messages import (
    Ack,
    Auth,
    BlockData,
    BlocksEnd,
    Cancel,
    ErrorReply,
    GetBlocks,
    Hello,
    Message,
    Offer,
    OfferResult,
    Ping,
    PushStatus,
    Refuse,
    Request,
    Response,
    Welcome,
    decode_message,
    encode_message,
)

__all__ = ["BlockStream", "Session", "SessionHandler", "SessionLimits", "establish"]

log = logging.getLogger(__name__)

_RECEIVE_SIZE: Final = 256 << 10
_COALESCE_BYTES: Final = 256 << 10


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionLimits:
    """Per-peer limits this node enforces and announces."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    """Largest frame payload accepted from the peer."""
    max_in_flight: int = 128
    """Most of the peer's requests served at once; one more is a protocol violation."""
    send_queue: int = 256
    """Frames queued for writing before senders wait."""
    handshake_timeout: float = 10.0
    """Seconds allowed for admission."""
    agent: str = "p2pdoc/0.1"


class SessionHandler(Protocol):
    """Serves the peer's requests. Exceptions other than P2pdocError are bugs: they end the
    session. A P2pdocError becomes an ``ErrorReply`` to that request only."""

    async def offer(self, session: Session, request: Offer) -> OfferResult: ...

    async def push_status(self, session: Session, request: PushStatus) -> Ack: ...

    async def get_blocks(
        self, session: Session, request: GetBlocks, send: Callable[[Cid, bytes], Awaitable[None]]
    ) -> Sequence[Cid]:
        """Send each block of ``request.cids`` that may be served with ``send``; return the
        CIDs not sent. Cancelled if the requester cancels."""
        ...


class _Pending:
    """Our request awaiting its final response."""

    __slots__ = ("blocks", "done", "expected", "result")

    def __init__(self, expected: set[Cid] | None = None) -> None:
        self.done = trio.Event()
        self.result: Response | P2pdocError | None = None
        # For GetBlocks: the CIDs still acceptable, and a channel feeding the caller.
        self.expected = expected
        self.blocks: trio.MemorySendChannel[tuple[Cid, bytes]] | None = None


class BlockStream:
    """The blocks answering one GetBlocks, verified against their CIDs, in arrival order."""

    def __init__(
        self, receive: trio.MemoryReceiveChannel[tuple[Cid, bytes]], pending: _Pending
    ) -> None:
        self._receive = receive
        self._pending = pending
        self.missing: tuple[Cid, ...] = ()

    def __aiter__(self) -> BlockStream:
        return self

    async def __anext__(self) -> tuple[Cid, bytes]:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            await self._pending.done.wait()
            result = self._pending.result
            if isinstance(result, BlocksEnd):
                self.missing = result.missing
                raise StopAsyncIteration from None
            if isinstance(result, P2pdocError):
                # Shared by every waiter: a fresh traceback each time, not an ever longer one.
                raise result.with_traceback(None) from None
            raise RemoteProtocolError(f"GetBlocks answered with {type(result).__name__}") from None


class Session:
    """An admitted session. Create with :func:`establish`; run with ``nursery.start(s.run)``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        peer: AdmittedPeer,
        *,
        limits: SessionLimits,
        handler: SessionHandler,
        decoder: FrameDecoder,
        early_frames: Sequence[bytes] = (),
    ) -> None:
        self.peer = peer
        self._early_frames = list(early_frames)
        self.limits = limits
        self._stream = stream
        self._handler = handler
        self._decoder = decoder
        self._send, self._outgoing = trio.open_memory_channel[bytes](limits.send_queue)
        self._slots = trio.Semaphore(max(1, peer.max_in_flight))
        self._next_rid = 1
        self._pending: dict[int, _Pending] = {}
        self._abandoned: dict[int, None] = {}
        # Peer's requests being served; GetBlocks ones can be cancelled by the peer.
        self._inbound: dict[int, trio.CancelScope | None] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = trio.Event()
        self._writing = False  # a frame is partly written: no goodbye may follow it
        self.close_reason: P2pdocError | None = None
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the session until the stream ends, a protocol error, or :meth:`close`.

        Never raises for the peer's misbehaviour or a broken transport: the reason is kept in
        :attr:`close_reason` and every request still waiting fails with it.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._guard, self._write_loop)
                task_status.started()
                await self._guard(self._read_loop)
        finally:
            self._fail(ConnectionLost(f"session with {self.peer.agency} closed"))
            with trio.CancelScope(shield=True):
                await self._say_goodbye()
                await trio.aclose_forcefully(self._stream)

    async def _say_goodbye(self) -> None:
        """Tell a peer we cut off why, if the stream is at a frame boundary (best effort)."""
        reason = self.close_reason
        if self._writing or not isinstance(
            reason, (RemoteProtocolError, VerificationError, DecodeError)
        ):
            return
        frame = encode_frame(encode_message(Refuse(f"{type(reason).__name__}: {reason}"[:900])))
        with trio.move_on_after(1), suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stream.send_all(frame)

    async def _guard(self, work: Callable[[], Awaitable[None]], *, essential: bool = True) -> None:
        """Run a session task. An error ends the session, with the reason kept; so does the
        normal end of an ``essential`` task (the reader or the writer)."""
        try:
            await work()
        except P2pdocError as exc:
            self._fail(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(ConnectionLost(f"session with {self.peer.agency} broke: {exc!r}"))
        except Exception as exc:
            log.exception("session with %s failed", self.peer.agency)
            self._fail(LocalProtocolError(f"internal error: {type(exc).__name__}: {exc}"))
        else:
            if essential:
                self._fail(ConnectionLost(f"session with {self.peer.agency} ended"))

    def close(self, reason: P2pdocError | None = None) -> None:
        """End the session; requests in flight fail with ``reason`` (or ConnectionLost)."""
        self._fail(reason or ConnectionLost("session closed locally"))

    def _fail(self, reason: P2pdocError) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.result = self.close_reason
                if pending.blocks is not None:
                    pending.blocks.close()
                pending.done.set()
        self._pending.clear()
        self._closed.set()

    # -- writing ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            await self._write_frames()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The peer closed its end; what it sent last (its reason, if it said goodbye) is
            # still readable. Give the reader a moment to find it before failing.
            with trio.move_on_after(1):
                await self._closed.wait()
            raise

    async def _write_frames(self) -> None:
        async with self._outgoing:
            async for first in self._outgoing:
                parts = [first]
                size = len(first)
                while size < _COALESCE_BYTES:
                    try:
                        frame = self._outgoing.receive_nowait()
                    except trio.WouldBlock:
                        break
                    parts.append(frame)
                    size += len(frame)
                self._writing = True
                await self._stream.send_all(b"".join(parts) if len(parts) > 1 else first)
                self._writing = False
                self.bytes_sent += size

    def _closed_error(self) -> P2pdocError:
        """The error for an operation on a closed session: its close reason, with the
        traceback reset (every caller raises the same object, which would otherwise collect
        every raise's frames and keep their locals alive)."""
        if self.close_reason is None:
            return ConnectionLost("session closed")
        return self.close_reason.with_traceback(None)

    async def _emit(self, message: Message) -> None:
        if self.closed:
            raise self._closed_error()
        try:
            frame = encode_frame(encode_message(message), max_frame_size=self.peer.max_frame_size)
        except LimitExceeded as exc:
            raise LocalProtocolError(f"message too large for the peer: {exc}") from exc
        try:
            await self._send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed_error() from None

    # -- our requests -------------------------------------------------------------------

    def _new_rid(self) -> int:
        rid = self._next_rid
        self._next_rid += 1
        return rid

    async def _start_request(self, build: Callable[[int], Request], pending: _Pending) -> int:
        """Take a slot in the peer's in-flight limit, register and send the request.

        The slot is released when the request's final answer arrives, even if the caller
        gave up waiting: until then the peer counts it as in flight.
        """
        await self._slots.acquire()
        rid = self._new_rid()
        self._pending[rid] = pending
        try:
            await self._emit(build(rid))
        except BaseException:
            self._pending.pop(rid, None)
            self._slots.release()
            raise
        return rid

    def _abandon(self, rid: int) -> None:
        """The caller stopped waiting for ``rid``: a late answer is ignored, not an error."""
        if self._pending.pop(rid, None) is None:
            return
        self._abandoned[rid] = None
        if len(self._abandoned) > max(1, self.peer.max_in_flight // 2):
            self._fail(ConnectionLost(f"{self.peer.agency} stopped answering requests"))

    async def _call(self, build: Callable[[int], Request]) -> Response:
        pending = _Pending()
        rid = await self._start_request(build, pending)
        try:
            await pending.done.wait()
        finally:
            if not pending.done.is_set():
                self._abandon(rid)
        result = pending.result
        if isinstance(result, P2pdocError):
            raise result.with_traceback(None)  # shared: see _closed_error
        assert result is not None
        return result

    async def offer(
        self,
        manifest: bytes,
        signatures: bytes,
        blocks: Sequence[tuple[Cid, bytes]] = (),
        providers: Sequence[PeerId] = (),
    ) -> OfferResult:
        """Offer a document; returns the recipient's answer (possibly after it fetched blocks).

        Raises:
            ConnectionLost / RemoteProtocolError: the session ended first.
            ProtocolError: the peer answered with an error.
        """
        result = await self._call(
            lambda rid: Offer(rid, manifest, signatures, tuple(blocks), tuple(providers))
        )
        if isinstance(result, OfferResult):
            return result
        raise _unexpected(result, "Offer")

    async def push_status(self, report: bytes) -> None:
        """Deliver one signed status report; returns once the peer acknowledged it."""
        result = await self._call(lambda rid: PushStatus(rid, report))
        if not isinstance(result, Ack):
            raise _unexpected(result, "PushStatus")

    async def ping(self) -> float:
        """Round-trip time in seconds."""
        start = trio.current_time()
        result = await self._call(Ping)
        if not isinstance(result, Ack):
            raise _unexpected(result, "Ping")
        return trio.current_time() - start

    @asynccontextmanager
    async def get_blocks(self, root: Cid, cids: Sequence[Cid]) -> AsyncIterator[BlockStream]:
        """Ask for blocks of document ``root``; iterate the verified blocks as they arrive.

        Each block is checked against its CID as it arrives; a block nobody asked for, asked
        twice, or corrupt ends the session with RemoteProtocolError / ContentMismatch. After
        the iteration ends, ``stream.missing`` lists what the peer could not send. Leaving the
        context early cancels the rest of the request.
        """
        wanted = tuple(dict.fromkeys(cids))
        send, receive = trio.open_memory_channel[tuple[Cid, bytes]](math.inf)
        pending = _Pending(expected=set(wanted))
        pending.blocks = send
        rid = await self._start_request(lambda rid: GetBlocks(rid, root, wanted), pending)
        try:
            yield BlockStream(receive, pending)
        finally:
            if not pending.done.is_set():
                self._abandon(rid)
                if not self.closed:
                    with (
                        trio.CancelScope(shield=True),
                        trio.move_on_after(5),
                        suppress(P2pdocError),
                    ):
                        await self._emit(Cancel(rid))

    # -- reading ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        for frame in self._early_frames:
            await self._dispatch(decode_message(frame))
        self._early_frames.clear()
        while True:
            chunk = await self._stream.receive_some(_RECEIVE_SIZE)
            if not chunk:
                if not self._decoder.at_boundary():
                    raise RemoteProtocolError("stream ended inside a frame")
                raise ConnectionLost(f"{self.peer.agency} ended the session")
            self.bytes_received += len(chunk)
            for frame in self._decoder.feed(chunk):
                await self._dispatch(decode_message(frame))

    async def _dispatch(self, message: Message) -> None:
        match message:
            case BlockData(rid, cid, data):
                self._on_block(rid, cid, data)
            case GetBlocks() | Offer() | PushStatus() | Ping():
                self._on_request(message)
            case BlocksEnd(rid) | OfferResult(rid) | Ack(rid) | ErrorReply(rid):
                self._on_final(rid, message)
            case Cancel(rid):
                scope = self._inbound.get(rid)
                if scope is not None:
                    scope.cancel()
            case Refuse(reason):
                raise ConnectionLost(f"{self.peer.agency} ended the session: {reason}")
            case Hello() | Auth() | Welcome():
                raise RemoteProtocolError(f"{type(message).__name__} after admission")

    def _on_block(self, rid: int, cid: Cid, data: bytes) -> None:
        pending = self._pending.get(rid)
        if pending is None or pending.expected is None:
            if rid in self._abandoned:
                return
            raise RemoteProtocolError(f"block {cid} for request {rid} that asked for none")
        if cid not in pending.expected:
            raise RemoteProtocolError(f"unrequested or repeated block {cid}")
        pending.expected.discard(cid)
        try:
            cid.verify(data)
        except ContentMismatch as exc:
            raise ContentMismatch(str(cid), f"{self.peer.agency} sent a corrupt block") from exc
        assert pending.blocks is not None
        pending.blocks.send_nowait((cid, data))

    def _on_final(self, rid: int, message: Response) -> None:
        pending = self._pending.pop(rid, None)
        if pending is None:
            if rid in self._abandoned:
                del self._abandoned[rid]
                self._slots.release()
                return
            raise RemoteProtocolError(f"answer to unknown request {rid}")
        self._slots.release()
        if isinstance(message, ErrorReply):
            pending.result = ProtocolError(
                f"{self.peer.agency} failed the request: {message.code}: {message.message}"
            )
        else:
            pending.result = message
        if pending.blocks is not None:
            pending.blocks.close()
        pending.done.set()

    def _on_request(self, request: Request) -> None:
        if request.rid in self._inbound:
            raise RemoteProtocolError(f"request id {request.rid} reused while in flight")
        if len(self._inbound) >= self.limits.max_in_flight:
            raise RemoteProtocolError(
                f"more than {self.limits.max_in_flight} requests in flight (the announced limit)"
            )
        scope = trio.CancelScope()
        self._inbound[request.rid] = scope if isinstance(request, GetBlocks) else None
        assert self._nursery is not None
        self._nursery.start_soon(
            partial(self._guard, partial(self._serve, request, scope), essential=False)
        )

    async def _serve(self, request: Request, scope: trio.CancelScope) -> None:
        reply: Message
        try:
            with scope:
                match request:
                    case Ping(rid):
                        reply = Ack(rid)
                    case Offer():
                        reply = await self._handler.offer(self, request)
                    case PushStatus():
                        reply = await self._handler.push_status(self, request)
                    case GetBlocks(rid):
                        missing = await self._handler.get_blocks(
                            self, request, self._block_sender(rid)
                        )
                        reply = BlocksEnd(rid, tuple(missing))
            if scope.cancelled_caught:
                reply = BlocksEnd(request.rid, ())
            await self._emit(reply)
        except (VerificationError, ProtocolError) as exc:
            # The peer's request was invalid in a way that is its own fault: answer, go on.
            await self._reply_error(request.rid, type(exc).__name__, str(exc))
        except P2pdocError as exc:
            await self._reply_error(request.rid, type(exc).__name__, str(exc))
        finally:
            self._inbound.pop(request.rid, None)

    async def _reply_error(self, rid: int, code: str, message: str) -> None:
        with suppress(P2pdocError):
            await self._emit(ErrorReply(rid, code[:100], message[:900]))

    def _block_sender(self, rid: int) -> Callable[[Cid, bytes], Awaitable[None]]:
        async def send(cid: Cid, data: bytes) -> None:
            await self._emit(BlockData(rid, cid, data))

        return send


def _unexpected(result: Response, request: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{request} answered with {type(result).__name__}")


async def establish(
    stream: trio.abc.Stream,
    *,
    local: PeerId,
    remote: PeerId,
    credentials: Credentials,
    gatekeeper: Gatekeeper,
    handler: SessionHandler,
    limits: SessionLimits = SessionLimits(),
) -> Session:
    """Run admission on a fresh stream and return the session (not yet running).

    Raises:
        AdmissionRefused / VerificationError: the peer failed admission (we told it why), or
            refused us.
        RemoteProtocolError: it broke the handshake.
        ConnectionLost: the stream broke, or the handshake timed out.
    The stream is closed on any failure.
    """
    decoder = FrameDecoder(max_frame_size=limits.max_frame_size)
    handshake = Handshake(
        local=local,
        remote=remote,
        credentials=credentials,
        gatekeeper=gatekeeper,
        agent=limits.agent,
        max_frame_size=limits.max_frame_size,
        max_in_flight=limits.max_in_flight,
    )
    backlog: list[bytes] = []

    async def receive() -> Message:
        while not backlog:
            chunk = await stream.receive_some(_RECEIVE_SIZE)
            if not chunk:
                raise ConnectionLost("peer closed the stream during admission")
            try:
                backlog.extend(decoder.feed(chunk))
            except DecodeError as exc:  # an oversized or broken frame
                raise RemoteProtocolError(f"bad frame during admission: {exc}") from exc
        message = decode_message(backlog.pop(0))
        if isinstance(message, Refuse):
            raise AdmissionRefused(f"peer refused admission: {message.reason}")
        return message

    async def send(message: Message) -> None:
        await stream.send_all(encode_frame(encode_message(message), max_frame_size=64 << 10))

    async def refuse(exc: P2pdocError) -> None:
        with (
            trio.move_on_after(1),
            suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await send(Refuse(f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"[:900]))
            # Let the peer read why before the connection goes: wait for its close.
            while await stream.receive_some(_RECEIVE_SIZE):
                pass

    try:
        with trio.fail_after(limits.handshake_timeout):
            await send(handshake.hello())
            hello = await receive()
            if not isinstance(hello, Hello):
                raise RemoteProtocolError(f"expected Hello, got {type(hello).__name__}")
            try:
                proof = handshake.receive_hello(hello)
            except AdmissionRefused as exc:  # its version or limits
                await refuse(exc)
                raise
            await send(proof)
            auth = await receive()
            if not isinstance(auth, Auth):
                raise RemoteProtocolError(f"expected Auth, got {type(auth).__name__}")
            try:
                admitted = handshake.receive_auth(auth)
            except (VerificationError, AdmissionRefused) as exc:
                await refuse(exc)
                raise
            await send(Welcome())
            welcome = await receive()
            if not isinstance(welcome, Welcome):
                raise RemoteProtocolError(f"expected Welcome, got {type(welcome).__name__}")
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise ConnectionLost("admission timed out") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await trio.aclose_forcefully(stream)
        raise ConnectionLost(f"stream broke during admission: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    # Frames that arrived right behind the peer's Auth (it may start pipelining at once).
    return Session(
        stream, admitted, limits=limits, handler=handler, decoder=decoder, early_frames=backlog
    )
