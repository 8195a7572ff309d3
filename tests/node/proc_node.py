"""A real node in its own process, for crash tests and benchmarks.

Child side, run from the repository root::

    python -m tests.node.proc_node --home HOME --agency CODE --port PORT [options]

It runs one :class:`~p2pdoc.node.Node`: a :class:`~p2pdoc.store.sqlite.SQLiteStore`
(synchronous FULL) in ``HOME/<code>/data``, a :class:`~p2pdoc.network.libp2p.Libp2pNetwork` on
127.0.0.1:PORT, and the identity, signers, root certificate and peer directory that
:func:`write_setup` put in ``HOME``. It prints one event per line on stdout, flushed:

    READY <listen multiaddr>
    EXITED                            (added by the parent when the child's stdout ends)
    QUEUED <number> <root> <size>     a document is created (or found again) and queued
    DELIVERED <root> <recipient>      its receipt arrived and verified
    FAILED <root> <recipient>         its delivery failed for good
    ALL-DELIVERED <n>                 the n documents asked for so far are all delivered
    OFFER <root>                      (recipient) an offer for <root> arrived
    WRITE <blocks> <bytes>            (recipient) a store write holding blocks is starting
    INBOX <root>                      (recipient) the application took and acknowledged <root>

``--send-to CODE --first K --count N`` sends documents K .. K+N-1 to CODE; more are asked for
on stdin with lines ``send K N``. End of stdin stops the node cleanly (exit status 0).

Documents are a pure function of their number (envelope, file name and bytes), and a number
already in the store is not created again: the stored document (with its original
signatures) is sent instead. So a restarted sender asked for the same numbers re-creates what
it had not created yet and resumes the rest from its outbox (``Node.send`` does not queue a
root twice). Document ``k`` is ``--big-size`` bytes when ``k % --big-every == 0``, else
``--size`` bytes.

Parent side: :func:`write_setup` writes the PKI of a :class:`~p2pdoc.simulation.Mesh` and the
directory; :class:`NodeProcess` starts, reads, kills and stops a child.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.documents import FileSource
from p2pdoc.delivery.retry import RetryPolicy
from p2pdoc.delivery.states import OutboxState
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.model.manifest import Manifest
from p2pdoc.network.libp2p import Libp2pConfig, Libp2pNetwork
from p2pdoc.node.clock import TrioWallClock
from p2pdoc.node.config import DeliveryConfig, NodeConfig, ReceiveConfig
from p2pdoc.node.context import doc_owner
from p2pdoc.node.directory import PeerDirectory, PeerRecord
from p2pdoc.node.node import Node, SendHandle
from p2pdoc.node.sender import Document
from p2pdoc.node.trustgate import DocumentSigners, IdentityCredentials, SignaturePolicy, TrustGate
from p2pdoc.protocol.messages import Offer, OfferResult
from p2pdoc.protocol.session import Session
from p2pdoc.simulation import EPOCH_MS, Mesh
from p2pdoc.store.base import PutBlock, Store, WriteOp
from p2pdoc.store.sqlite import SQLiteConfig, SQLiteStore
from p2pdoc.trust.identity import NodeIdentity
from p2pdoc.trust.keys import load_signing_key, save_key
from p2pdoc.trust.validation import TrustStore

from .helpers import envelope

__all__ = [
    "REPO_ROOT",
    "NodeProcess",
    "document_bytes",
    "document_size",
    "load_trust",
    "node_config",
    "open_store",
    "run_node",
    "setup_clock",
    "write_setup",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_MAX_LINE = 4096
_READY_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_SETUP = "setup.json"


# -- setup written by the parent --------------------------------------------------------------


def write_setup(
    mesh: Mesh, home: Path, ports: dict[AgencyCode, int], *, epoch_ms: int = EPOCH_MS
) -> None:
    """Write ``mesh``'s root certificate, every agency's identity and signers, and the peer
    directory (agency -> peer ID and ``127.0.0.1:port`` address) into ``home``.

    The children's clock reads ``epoch_ms`` (the mesh's epoch) at the moment of this call and
    runs on with the system clock, so it stays monotonic across restarts and within the
    certificates' validity.
    """
    home.mkdir(parents=True, exist_ok=True)
    peers = {}
    for code, agency in mesh.agencies.items():
        folder = home / str(code)
        (folder / "identity").mkdir(parents=True, exist_ok=True)
        agency.identity.save(folder / "identity", overwrite=True)
        signers = []
        for index, (role, key, chain) in enumerate(agency.signers.signers):
            key_file = folder / f"signer-{index}.pem"
            save_key(key_file, key, overwrite=True)
            signers.append({"role": role, "key": key_file.name, "chain": [c.hex() for c in chain]})
        (folder / "signers.json").write_text(json.dumps(signers))
        peers[str(code)] = {
            "peer": str(agency.identity.peer_id),
            "addr": f"/ip4/127.0.0.1/tcp/{ports[code]}/p2p/{agency.identity.peer_id}",
        }
    setup = {
        "root": mesh.root_ca.certificate.hex(),
        "epoch_ms": epoch_ms,
        "wall_ms": int(time.time() * 1000),
        "peers": peers,
        "min_signatures": len(mesh.signature_roles),
    }
    (home / _SETUP).write_text(json.dumps(setup))


def _read_setup(home: Path) -> dict[str, object]:
    data = json.loads((home / _SETUP).read_text())
    assert isinstance(data, dict)
    return data


def load_trust(home: Path) -> TrustStore:
    """The trust store of the setup in ``home`` (its root certificate)."""
    root = _read_setup(home)["root"]
    assert isinstance(root, str)
    return TrustStore([bytes.fromhex(root)])


def setup_clock(home: Path) -> TrioWallClock:
    """The clock every node of the setup in ``home`` uses (see :func:`write_setup`)."""
    setup = _read_setup(home)
    epoch, wall = setup["epoch_ms"], setup["wall_ms"]
    assert isinstance(epoch, int) and isinstance(wall, int)
    return TrioWallClock(epoch + int(time.time() * 1000) - wall)


def data_dir(home: Path, agency: AgencyCode | str) -> Path:
    return home / str(agency) / "data"


async def open_store(home: Path, agency: AgencyCode | str) -> SQLiteStore:
    """The agency's store (for checks once its process has stopped)."""
    folder = data_dir(home, agency)
    folder.mkdir(parents=True, exist_ok=True)
    return await SQLiteStore.open(folder / "store.sqlite", config=SQLiteConfig(synchronous="FULL"))


# -- documents --------------------------------------------------------------------------------


def document_size(number: int, size: int, big_size: int, big_every: int) -> int:
    return big_size if big_every and number % big_every == 0 else size


def document_bytes(number: int, size: int) -> bytes:
    """The one file of document ``number``: ``size`` bytes, a pure function of both."""
    rng = random.Random(number)
    piece = 1 << 20
    return b"".join(rng.randbytes(min(piece, size - at)) for at in range(0, size, piece))


def file_name(number: int) -> str:
    return f"van-ban-{number}.pdf"


async def find_or_create(
    node: Node,
    store: Store,
    signers: DocumentSigners,
    recipient: AgencyCode,
    number: int,
    size: int,
) -> tuple[Document, bool]:
    """Document ``number``: the stored one if it exists, else a new one. (document, created)."""
    header = envelope(node.agency, recipient, number=number)
    for record in await store.find_documents(str(header.document_id)):
        manifest = Manifest.decode(record.manifest, expected=record.root)
        if manifest.envelope == header:
            blocks = tuple(sorted(await store.pinned(doc_owner(record.root))))
            document = Document(
                manifest, record.manifest, record.signatures, blocks, manifest.total_size
            )
            return document, False
    source = FileSource(file_name(number), "application/pdf", document_bytes(number, size))
    return await node.create_document(header, [source], signer=signers), True


# -- the child --------------------------------------------------------------------------------


def emit(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


class _ReportingStore(SQLiteStore):
    """Says when a write holding blocks starts (a kill point while a document is stored)."""

    report = True

    async def write(self, ops: Sequence[WriteOp]) -> None:
        blocks = [op for op in ops if isinstance(op, PutBlock)]
        if blocks and self.report:
            emit("WRITE", len(blocks), sum(len(op.data) for op in blocks))
        await super().write(ops)


class _ReportingNode(Node):
    """Says when an offer arrives."""

    report = True

    async def offer(self, session: Session, request: Offer) -> OfferResult:
        if self.report:
            emit("OFFER", Cid.of(Multicodec.DAG_CBOR, request.manifest))
        return await super().offer(session, request)


def _load_signers(folder: Path) -> DocumentSigners:
    entries = json.loads((folder / "signers.json").read_text())
    return DocumentSigners(
        tuple(
            (
                e["role"],
                load_signing_key(folder / e["key"]),
                tuple(bytes.fromhex(c) for c in e["chain"]),
            )
            for e in entries
        )
    )


class _Sending:
    """The documents this process was asked to send, and how many are finished."""

    def __init__(self, node: Node, store: Store, signers: DocumentSigners, args: Namespace) -> None:
        self.node, self.store, self.signers, self.args = node, store, signers, args
        assert args.send_to is not None
        self.recipient = AgencyCode(args.send_to)
        self.asked: set[int] = set()
        self.finished = 0
        self.lock = trio.Lock()

    async def send(self, first: int, count: int, nursery: trio.Nursery) -> None:
        args = self.args
        async with self.lock:
            for number in range(first, first + count):
                if number in self.asked:
                    continue
                self.asked.add(number)
                size = document_size(number, args.size, args.big_size, args.big_every)
                document, created = await find_or_create(
                    self.node, self.store, self.signers, self.recipient, number, size
                )
                handle = await self.node.send(document)
                emit("QUEUED", number, document.root, size)
                nursery.start_soon(self._watch, handle)
                if created and args.pace:
                    await trio.sleep(args.pace)

    async def _watch(self, handle: SendHandle) -> None:
        entries = await handle.wait()
        for recipient, entry in entries.items():
            word = "DELIVERED" if entry.state is OutboxState.DELIVERED else "FAILED"
            emit(word, handle.root, recipient)
        self.finished += 1
        if self.finished == len(self.asked):
            emit("ALL-DELIVERED", self.finished)


class Namespace(argparse.Namespace):
    home: str
    agency: str
    port: int
    send_to: str | None
    first: int
    count: int
    size: int
    big_size: int
    big_every: int
    pace: float
    write_batch: int
    quiet: bool
    seed: int


async def _read_commands(send: trio.MemorySendChannel[str]) -> None:
    """Stdin lines into ``send``; the channel closes at end of input."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream, send:
        for _ in range(10_000_000):
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                await send.send(line.decode())
            if len(buffer) > _MAX_LINE:
                return


def node_config(write_batch: int = 1 << 20) -> NodeConfig:
    """The configuration of test and benchmark nodes: quick retries after a peer restarts."""
    return NodeConfig(
        delivery=DeliveryConfig(
            retry=RetryPolicy(initial=0.25, factor=2.0, maximum=1.0), offer_timeout=30.0
        ),
        receive=ReceiveConfig(write_batch_bytes=write_batch),
    )


@dataclass(slots=True)
class RunningNode:
    node: Node
    store: SQLiteStore
    signers: DocumentSigners


@asynccontextmanager
async def run_node(
    home: Path,
    agency: AgencyCode | str,
    port: int,
    *,
    config: NodeConfig | None = None,
    report: bool = False,
    seed: int = 0,
) -> AsyncIterator[RunningNode]:
    """Run the node of ``agency`` from the setup in ``home`` in this process (its store in
    ``data_dir(home, agency)``); stop it and close its store on exit.

    Args:
        report: print OFFER and WRITE events (see the module docstring).
    """
    code = AgencyCode(str(agency))
    setup = _read_setup(home)
    folder = home / str(code)
    identity = NodeIdentity.load(folder / "identity")
    peers = setup["peers"]
    assert isinstance(peers, dict)
    directory = PeerDirectory(
        PeerRecord(AgencyCode(c), PeerId.parse(p["peer"]), (p["addr"],)) for c, p in peers.items()
    )
    clock = setup_clock(home)
    min_signatures = setup["min_signatures"]
    assert isinstance(min_signatures, int)
    trust = TrustGate(
        load_trust(home), clock, signatures=SignaturePolicy(min_signatures=min_signatures)
    )
    folder_data = data_dir(home, code)
    folder_data.mkdir(parents=True, exist_ok=True)
    store = await _ReportingStore.open(
        folder_data / "store.sqlite", config=SQLiteConfig(synchronous="FULL")
    )
    assert isinstance(store, _ReportingStore)
    store.report = report
    key = Ed25519PrivateKey.from_private_bytes(identity.signing_key.ed25519_private_bytes())
    network = Libp2pNetwork(Libp2pConfig(listen_port=port), key)
    node = _ReportingNode(
        config or node_config(),
        store=store,
        network=network,
        credentials=IdentityCredentials(identity),
        trust=trust,
        directory=directory,
        clock=clock,
        rng=random.Random(f"{seed}:{code}:{time.time_ns()}"),
    )
    node.report = report
    async with store, node:
        yield RunningNode(node, store, _load_signers(folder))


async def run_child(args: Namespace) -> None:
    config = node_config(args.write_batch)
    send_command, commands = trio.open_memory_channel[str](math.inf)
    async with (
        run_node(
            Path(args.home), args.agency, args.port, config=config, report=not args.quiet
        ) as running,
        trio.open_nursery() as nursery,
    ):
        node = running.node
        emit("READY", node.listen_addrs[0])

        async def take_inbox() -> None:
            async for item in node.inbox():
                await item.ack()
                if not args.quiet:
                    emit("INBOX", item.root)

        nursery.start_soon(take_inbox)
        sending = _Sending(node, running.store, running.signers, args) if args.send_to else None
        if sending is not None and args.count:
            nursery.start_soon(sending.send, args.first, args.count, nursery)
        nursery.start_soon(_read_commands, send_command)
        async for line in commands:
            words = line.split()
            if words[:1] == ["send"] and len(words) == 3 and sending is not None:
                nursery.start_soon(sending.send, int(words[1]), int(words[2]), nursery)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one p2pdoc node (tests and benchmarks).")
    parser.add_argument("--home", required=True, help="directory written by write_setup")
    parser.add_argument("--agency", required=True, help="this node's agency code")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--send-to", help="agency code to send documents to")
    parser.add_argument("--first", type=int, default=1, help="first document number")
    parser.add_argument("--count", type=int, default=0, help="documents to send at start")
    parser.add_argument("--size", type=int, default=10 * 1024, help="document size (bytes)")
    parser.add_argument("--big-size", type=int, default=3 << 20, help="big document size")
    parser.add_argument("--big-every", type=int, default=0, help="every n-th document is big")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between new documents")
    parser.add_argument("--write-batch", type=int, default=1 << 20, help="receive write batch")
    parser.add_argument("--quiet", action="store_true", help="print only READY and totals")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv, namespace=Namespace())
    trio.run(run_child, args)


# -- the parent -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One line a child printed: which child, which of its runs, the words."""

    name: str
    run: int
    words: tuple[str, ...]


class NodeProcess:
    """A child node: start (waiting for READY), read its events, kill, stop.

    Events of every run go to the ``events`` channel given to :meth:`start`.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", "tests.node.proc_node", *argv]
        self.log = log
        self.runs = 0
        self.addr = ""
        self.process: trio.Process | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def _next_log(self) -> IO[bytes]:
        """The log file (stderr) for the next run, appended to."""
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = self.log.open("ab")
        self._log_file.write(f"--- run {self.runs}\n".encode())
        self._log_file.flush()
        return self._log_file

    async def start(self, nursery: trio.Nursery, events: trio.MemorySendChannel[Event]) -> None:
        """Start a run and return once it printed READY (within 60 s); its later lines go to
        ``events``."""
        self.runs += 1
        log = self._next_log()
        process = await trio.lowlevel.open_process(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(REPO_ROOT),
        )
        self.process = process
        assert process.stdout is not None
        reader = _LineReader(process.stdout)
        with trio.fail_after(_READY_TIMEOUT):
            while True:
                words = (await reader.line()).split()
                if words[:1] == ["READY"]:
                    self.addr = words[1]
                    break
        nursery.start_soon(self._pump, reader, events.clone(), self.runs)

    async def _pump(
        self, reader: _LineReader, events: trio.MemorySendChannel[Event], run: int
    ) -> None:
        async with events:
            for _ in range(10_000_000):
                try:
                    line = await reader.line()
                except EOFError:
                    await events.send(Event(self.name, run, ("EXITED",)))
                    return
                await events.send(Event(self.name, run, tuple(line.split())))

    async def command(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the children's stderr, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        assert self.process is not None
        self.process.kill()
        with trio.fail_after(30):
            await self.process.wait()

    def close(self) -> None:
        """Kill the current run if it is still going (cleanup after a failure)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def stop(self) -> int:
        """Close stdin (a clean stop) and wait up to 30 s, then kill. Exit status."""
        process = self.process
        if process is None:
            return 0
        if process.stdin is not None:
            await process.stdin.aclose()
        with trio.move_on_after(_STOP_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        assert process.returncode is not None
        return process.returncode


class _LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def line(self) -> str:
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_LINE:
                raise ValueError("line too long from child")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError("child closed its stdout")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


if __name__ == "__main__":
    main()
