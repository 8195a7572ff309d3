"""Raw stream baseline: what one libp2p connection between two processes can carry.

Measures, between this process and a peer process on 127.0.0.1:
- bulk: 100 MB over one stream (MB/s), against the same transfer over a plain TCP socket;
- request/response with 10 KiB requests echoed back (10 KiB responses): pipelined on one
  long-lived stream (up to 32 in flight) against a new stream per request (sequential),
  and the pipelined figure against the same exchange over plain TCP;
- the two settings the adapter chose, against the alternative, in the same runs: writes of
  one Noise message per Yamux frame (vs. Yamux's own 64 KiB frames, two Noise messages
  each), and ``PY_YAMUX_RELEASE_ON_READ=0`` (vs. py-libp2p's default ``1``, set in both
  processes).

Every figure is the median of ``--runs`` runs, the measurements interleaved run by run so that
load from other processes on the machine hits all of them alike; ratios compare figures of the
same invocation. Besides rates it reports CPU cost (process time of both processes per MB or
per request), which other load on a shared machine disturbs far less than wall-clock rates.
Later delivery benchmarks compare against these numbers.

    python bench/bench_raw_stream.py [--runs 5] [--bulk-mb 100] [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import (
    ChildInfo,
    announce_and_wait,
    median_of,
    new_network,
    ratio,
    serve_peer,
    spawn_peer,
)

import p2pdoc.network.libp2p as libp2p_network
from p2pdoc.model.ids import PeerId
from p2pdoc.network.libp2p import Libp2pNetwork

BULK = "/p2pdoc-bench/bulk/1"
ECHO = "/p2pdoc-bench/echo/1"
CHUNK = 256 * 1024
MESSAGE = 10 * 1024
IN_FLIGHT = 32
MAX_FRAME = 1 << 20
RELEASE_ENV = "PY_YAMUX_RELEASE_ON_READ"
SCRIPT = Path(__file__).resolve()

StreamOpener = Callable[[], Awaitable[trio.abc.Stream]]


# -- wire helpers (the same code runs over TCP and libp2p streams) ---------------------------


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise EOFError(f"stream ended after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


async def serve_bulk(stream: trio.abc.Stream) -> None:
    """Read an 8-byte length, consume that many bytes, answer with the CPU seconds used."""
    (remaining,) = struct.unpack(">Q", await receive_exactly(stream, 8))
    cpu = time.process_time()
    while remaining > 0:
        chunk = await stream.receive_some(min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("bulk sender stopped early")
        remaining -= len(chunk)
    await stream.send_all(struct.pack(">d", time.process_time() - cpu))


async def serve_echo(stream: trio.abc.Stream) -> None:
    """Echo length-prefixed frames until the peer ends the stream.

    An empty frame is answered with the CPU seconds this process used since the stream began.
    """
    cpu = time.process_time()
    buffer = bytearray()
    for _ in range(100_000_000):
        chunk = await stream.receive_some()
        if not chunk:
            return
        buffer += chunk
        replies = bytearray()
        while len(buffer) >= 4:
            (size,) = struct.unpack_from(">I", buffer)
            if size > MAX_FRAME:
                raise ValueError("frame too large")
            if len(buffer) < 4 + size:
                break
            if size:
                replies += buffer[: 4 + size]
            else:
                replies += struct.pack(">Id", 8, time.process_time() - cpu)
            del buffer[: 4 + size]
        if replies:
            await stream.send_all(memoryview(replies))


async def bulk_once(stream: trio.abc.Stream, total: int) -> tuple[float, float]:
    """Send ``total`` bytes; (MB/s, CPU ms per MB of both processes together)."""
    block = memoryview(bytes(CHUNK))
    start, cpu = time.perf_counter(), time.process_time()
    await stream.send_all(struct.pack(">Q", total))
    sent = 0
    while sent < total:
        size = min(CHUNK, total - sent)
        await stream.send_all(block[:size])
        sent += size
    (peer_cpu,) = struct.unpack(">d", await receive_exactly(stream, 8))
    elapsed, own_cpu = time.perf_counter() - start, time.process_time() - cpu
    return total / elapsed / 1e6, (own_cpu + peer_cpu) * 1e3 / (total / 1e6)


async def pipelined_once(stream: trio.abc.Stream, count: int) -> tuple[float, float]:
    """``count`` echoed 10 KiB requests, up to IN_FLIGHT outstanding on one stream (a fresh
    one); (requests/s, CPU µs per request of both processes together)."""
    frame = struct.pack(">I", MESSAGE) + os.urandom(MESSAGE)
    credit = trio.Semaphore(IN_FLIGHT)
    cpu = time.process_time()

    async def sender() -> None:
        for _ in range(count):
            await credit.acquire()
            await stream.send_all(frame)

    async def receiver() -> None:
        remaining = count * len(frame)
        while remaining > 0:
            chunk = await stream.receive_some(min(remaining, 1 << 20))
            if not chunk:
                raise EOFError("echo peer stopped")
            before = remaining
            remaining -= len(chunk)
            for _ in range(before // len(frame) - remaining // len(frame)):
                credit.release()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    elapsed = time.perf_counter() - start
    await stream.send_all(struct.pack(">I", 0))
    _, peer_cpu = struct.unpack(">Id", await receive_exactly(stream, 12))
    own_cpu = time.process_time() - cpu
    return count / elapsed, (own_cpu + peer_cpu) * 1e6 / count


async def stream_per_request_once(open_stream: StreamOpener, count: int) -> float:
    """``count`` echoed 10 KiB requests, each on a new stream, one at a time; requests/s."""
    frame = struct.pack(">I", MESSAGE) + os.urandom(MESSAGE)
    start = time.perf_counter()
    for _ in range(count):
        stream = await open_stream()
        await stream.send_all(frame)
        if await receive_exactly(stream, len(frame)) != frame:
            raise RuntimeError("bad echo")
        await stream.aclose()
    return count / (time.perf_counter() - start)


# -- child roles ------------------------------------------------------------------------------


def register_handlers(net: Libp2pNetwork) -> None:
    async def bulk(peer: PeerId, stream: trio.abc.Stream) -> None:
        await serve_bulk(stream)

    async def echo(peer: PeerId, stream: trio.abc.Stream) -> None:
        await serve_echo(stream)

    net.set_handler(BULK, bulk)
    net.set_handler(ECHO, echo)


async def tcp_peer() -> None:
    async def handle(stream: trio.SocketStream) -> None:
        kind = await receive_exactly(stream, 1)
        await (serve_bulk if kind == b"B" else serve_echo)(stream)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        await announce_and_wait({"addrs": [f"127.0.0.1:{port}"]})
        nursery.cancel_scope.cancel()


# -- parent side ------------------------------------------------------------------------------


async def tcp_stream(child: ChildInfo, kind: bytes) -> trio.SocketStream:
    host, port = child.addrs[0].rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(kind)
    return stream


@contextmanager
def release_on_read(value: str) -> Iterator[None]:
    """This process's Yamux credit setting (py-libp2p reads it on every read)."""
    saved = os.environ.get(RELEASE_ENV)
    os.environ[RELEASE_ENV] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(RELEASE_ENV, None)
        else:
            os.environ[RELEASE_ENV] = saved


@contextmanager
def frame_payload(size: int) -> Iterator[None]:
    """Measurement only: the adapter's write size (private constant, this process only)."""
    saved = libp2p_network._FRAME_PAYLOAD
    libp2p_network._FRAME_PAYLOAD = size  # type: ignore[misc]
    try:
        yield
    finally:
        libp2p_network._FRAME_PAYLOAD = saved  # type: ignore[misc]


async def main(args: argparse.Namespace) -> None:
    script = SCRIPT
    total = args.bulk_mb * 1_000_000
    print(
        f"{args.runs} interleaved runs, medians; bulk {args.bulk_mb} MB; "
        f"{MESSAGE} B requests echoed ({args.requests} pipelined, "
        f"{args.stream_requests} stream-per-request)"
    )
    samples: dict[str, list[float]] = {}

    def record(name: str, value: float | tuple[float, float]) -> None:
        if isinstance(value, tuple):
            samples.setdefault(name, []).append(value[0])
            samples.setdefault(name + "_cpu", []).append(value[1])
        else:
            samples.setdefault(name, []).append(value)

    async with (
        spawn_peer(script, "--peer", "tcp") as tcp_child,
        spawn_peer(script, "--peer", "libp2p") as child,
        spawn_peer(script, "--peer", "libp2p", env={RELEASE_ENV: "1"}) as eager_child,
        trio.open_nursery() as nursery,
    ):
        net = new_network()  # sets this process's RELEASE_ENV default ("0")
        await nursery.start(net.serve)
        for peer_child in (child, eager_child):
            assert peer_child.peer is not None
            net.add_addrs(peer_child.peer, peer_child.addrs)
        peer, eager_peer = child.peer, eager_child.peer
        assert peer is not None and eager_peer is not None

        async def libp2p_bulk(target: PeerId) -> tuple[float, float]:
            stream = await net.open_stream(target, BULK)
            try:
                return await bulk_once(stream, total)
            finally:
                await stream.aclose()

        async def libp2p_pipelined(target: PeerId) -> tuple[float, float]:
            stream = await net.open_stream(target, ECHO)
            try:
                return await pipelined_once(stream, args.requests)
            finally:
                await stream.aclose()

        async def opener() -> trio.abc.Stream:
            return await net.open_stream(peer, ECHO)

        for _ in range(args.runs):
            stream = await tcp_stream(tcp_child, b"B")
            record("tcp_bulk", await bulk_once(stream, total))
            await stream.aclose()
            stream = await tcp_stream(tcp_child, b"E")
            record("tcp_pipelined", await pipelined_once(stream, args.requests))
            await stream.aclose()

            with release_on_read("0"):
                record("bulk", await libp2p_bulk(peer))
                record("pipelined", await libp2p_pipelined(peer))
                record(
                    "stream_per_request",
                    await stream_per_request_once(opener, args.stream_requests),
                )
                with frame_payload(65536 - 12):
                    record("bulk_yamux_frames", await libp2p_bulk(peer))
            with release_on_read("1"):
                record("bulk_release_on_read", await libp2p_bulk(eager_peer))
                record("pipelined_release_on_read", await libp2p_pipelined(eager_peer))
        nursery.cancel_scope.cancel()

    m = {name: median_of(values) for name, values in samples.items()}

    def row(label: str, name: str, unit: str, cpu_unit: str, base: str, base_label: str) -> None:
        rate, cpu = m[name], m.get(name + "_cpu")
        text = f"{label:42s} {rate:8.1f} {unit:5s}"
        if base:
            text += f" {ratio(rate, m[base]):>7s} {base_label:9s}"
        else:
            text += " " * 18
        if cpu is not None:
            text += f" {cpu:8.1f} {cpu_unit}"
            if base and base + "_cpu" in m:
                text += f" {ratio(cpu, m[base + '_cpu']):>7s}"
        print(text)

    print(f"{'':42s} {'median':>8s} {'':5s} {'ratio':>7s} {'to':9s} {'CPU':>8s}")
    row("TCP bulk (baseline)", "tcp_bulk", "MB/s", "ms/MB", "", "")
    row("libp2p bulk, one stream", "bulk", "MB/s", "ms/MB", "tcp_bulk", "TCP")
    row(
        "  if 64 KiB Yamux frames (2 Noise msgs)",
        "bulk_yamux_frames",
        "MB/s",
        "ms/MB",
        "bulk",
        "chosen",
    )
    row(f"  if {RELEASE_ENV}=1", "bulk_release_on_read", "MB/s", "ms/MB", "bulk", "chosen")
    row("TCP 10 KiB echo, pipelined (baseline)", "tcp_pipelined", "req/s", "us/req", "", "")
    row("libp2p 10 KiB echo, pipelined", "pipelined", "req/s", "us/req", "tcp_pipelined", "TCP")
    row(
        f"  if {RELEASE_ENV}=1",
        "pipelined_release_on_read",
        "req/s",
        "us/req",
        "pipelined",
        "chosen",
    )
    row(
        "libp2p 10 KiB echo, new stream per request",
        "stream_per_request",
        "req/s",
        "",
        "pipelined",
        "pipelined",
    )
    print("CPU: both processes together (process_time), robust to other load on the machine.")
    print("samples:")
    for name, values in samples.items():
        print(f"  {name:30s} " + " ".join(f"{x:.1f}" for x in values))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bulk-mb", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000, help="pipelined requests per run")
    parser.add_argument(
        "--stream-requests", type=int, default=300, help="stream-per-request requests per run"
    )
    parser.add_argument("--peer", choices=["libp2p", "tcp"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer == "libp2p":
        trio.run(serve_peer, register_handlers)
    elif args.peer == "tcp":
        trio.run(tcp_peer)
    else:
        if not 1 <= args.runs <= 50 or not 1 <= args.bulk_mb <= 10_000:
            parser.error("--runs must be 1..50 and --bulk-mb 1..10000")
        trio.run(main, args)


if __name__ == "__main__":
    cli()
