"""Two-process benchmark harness: run a peer in a child process, talk to it from this one.

A benchmark script re-runs itself as the peer (``python bench/x.py --peer <role>``). The child
builds its network, starts serving, prints one JSON line ``{"peer": ..., "addrs": [...]}`` on
stdout and runs until its stdin is closed. The parent reads that line, dials, measures, and
closes the child's stdin to stop it (then kills it if it lingers).

Usage, parent side::

    async with spawn_peer(__file__, "--peer", "libp2p") as child:
        net = new_network()
        ...  # await nursery.start(net.serve); net.add_addrs(child.peer, child.addrs)

Child side::

    await serve_peer(register_handlers)          # a Libp2pNetwork peer
    await announce_and_wait({"addrs": [...]})     # anything else (e.g. a raw TCP server)

Not importable as a package module on purpose: scripts import it with ``bench/`` on
``sys.path`` (true for ``python bench/x.py``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdoc.model.ids import PeerId
from p2pdoc.network.libp2p import Libp2pConfig, Libp2pNetwork

__all__ = [
    "ChildInfo",
    "announce_and_wait",
    "median_of",
    "new_network",
    "ratio",
    "serve_peer",
    "spawn_peer",
]

_READY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """What a child announced: its peer ID (if it runs a network), addresses, anything else."""

    peer: PeerId | None
    addrs: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def new_network(config: Libp2pConfig | None = None) -> Libp2pNetwork:
    """A Libp2pNetwork on 127.0.0.1 with a fresh identity."""
    return Libp2pNetwork(config or Libp2pConfig(), Ed25519PrivateKey.generate())


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            raise RuntimeError(f"peer process exited before announcing itself: {bytes(line)!r}")
        line += chunk
        if len(line) > _READY_LIMIT:
            raise RuntimeError("peer announcement line too long")
    return bytes(line)


@asynccontextmanager
async def spawn_peer(
    script: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_timeout: float = 30.0,
) -> AsyncIterator[ChildInfo]:
    """Run ``python script *args`` as a peer; yield what it announced; stop it on exit.

    Args:
        script: the benchmark script (it must call :func:`serve_peer` or
            :func:`announce_and_wait` in its child mode).
        env: extra environment variables for the child (merged over this process's).
        ready_timeout: seconds the child may take to announce itself.
    """
    child_env = dict(os.environ)
    child_env.update(env or {})
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        with trio.fail_after(ready_timeout):
            announced = json.loads(await _read_line(process.stdout))
        peer_text = announced.pop("peer", None)
        yield ChildInfo(
            peer=PeerId.parse(peer_text) if peer_text else None,
            addrs=list(announced.pop("addrs", [])),
            extra=announced,
        )
    finally:
        with trio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def announce_and_wait(info: dict[str, Any]) -> None:
    """Child side: print ``info`` as one JSON line, then return once stdin is closed."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        for _ in range(1_000_000):
            if not await stdin.receive_some(4096):
                return


async def serve_peer(
    setup: Callable[[Libp2pNetwork], None],
    config: Libp2pConfig | None = None,
) -> None:
    """Child side: a Libp2pNetwork with ``setup``'s handlers, served until stdin closes."""
    net = new_network(config)
    setup(net)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.serve)
        await announce_and_wait({"peer": str(net.local_peer), "addrs": net.listen_addrs})
        nursery.cancel_scope.cancel()


def median_of(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` as text, e.g. ``0.42x``."""
    return f"{value / baseline:.3g}x" if baseline else "n/a"
