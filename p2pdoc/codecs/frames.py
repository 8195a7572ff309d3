"""Length-prefixed frames for the wire.

A frame is a 4-byte unsigned big-endian length followed by that many payload bytes::

    +----------------+---------------------+
    | length (u32be) | payload (length B)  |
    +----------------+---------------------+

Goals: bounded memory whatever the peer sends (a header declaring more than
``max_frame_size`` is refused as soon as its 4 bytes arrive, before any payload is
buffered), and the same frames from any split of the byte stream.
Non-goals: the meaning of payloads (see :mod:`p2pdoc.protocol`).
"""

from __future__ import annotations

import struct
from typing import Final

from p2pdoc.errors import DecodeError, InvalidValue, LimitExceeded

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "FrameDecoder", "encode_frame"]

HEADER_SIZE: Final = 4
DEFAULT_MAX_FRAME_SIZE: Final = (1 << 20) + (64 << 10)
"""Default largest payload: a 1 MiB block plus room for its message envelope."""

_HEADER = struct.Struct(">I")


def encode_frame(
    payload: bytes | bytearray | memoryview, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """Prefix ``payload`` with its length.

    Raises:
        LimitExceeded: the payload is larger than ``max_frame_size``.
    """
    if len(payload) > max_frame_size:
        raise LimitExceeded("frame", len(payload), max_frame_size)
    return _HEADER.pack(len(payload)) + bytes(payload)


class FrameDecoder:
    """Incremental frame parser: feed bytes as they arrive, take whole frames out.

    The decoder buffers at most one partial frame (``HEADER_SIZE + max_frame_size`` bytes)
    plus whatever the caller fed in one call. After an error it stays failed: a stream whose
    framing broke cannot be resynchronised.
    """

    __slots__ = ("_buffer", "_failed", "_max", "_start")

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size <= 0 or max_frame_size >= 1 << 32:
            raise InvalidValue("max_frame_size must be in 1 .. 2**32 - 1")
        self._max = max_frame_size
        self._buffer = bytearray()
        self._start = 0
        self._failed = False

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data`` and return every frame now complete, in order.

        Raises:
            LimitExceeded: a header declares a payload over ``max_frame_size``.
            DecodeError: the decoder already failed.
        """
        if self._failed:
            raise DecodeError("frame stream already failed")
        self._buffer += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        # Drop consumed bytes once they dominate the buffer (amortised O(1) per byte).
        if self._start and self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0
        return frames

    def _next(self) -> bytes | None:
        available = len(self._buffer) - self._start
        if available < HEADER_SIZE:
            return None
        (length,) = _HEADER.unpack_from(self._buffer, self._start)
        if length > self._max:
            self._failed = True
            raise LimitExceeded("frame", length, self._max)
        end = self._start + HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[self._start + HEADER_SIZE : end])
        self._start = end
        return frame

    def at_boundary(self) -> bool:
        """True when no partial frame is buffered (the stream may end cleanly here)."""
        return self.buffered == 0
