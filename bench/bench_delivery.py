"""Delivery benchmarks: real nodes in two processes, SQLite (synchronous FULL) on both sides,
libp2p (TCP + Noise + Yamux) on 127.0.0.1.

This process runs the sending node; a child process (``tests/node/proc_node.py``) runs the
recipient. Measured, each as the median of ``--runs`` runs:

- **bulk**: one document of ``--bulk-mb`` MB (a single file), MB/s from ``send`` to the
  verified receipt (the recipient fetched, checked and stored every block, signed the receipt,
  and the sender verified it). Baseline: 100 MB over one raw libp2p stream between the same
  kind of processes in the same run (``bench_raw_stream.py``'s code). Goal: ratio >= 0.9.
- **small**: 10 KiB signed documents with receipts, persisted on both sides, for
  ``--seconds`` (default 60) with ``--concurrency`` documents in flight: documents/s and the
  p50/p99 latency from ``create_document`` + ``send`` to the verified receipt. Baseline: 10 KiB
  requests echoed on one pipelined raw libp2p stream (requests/s), same run. Goal: 1,000/s.

Besides rates it reports CPU time per document or per MB of each process (``process_time``
here, ``/proc/<pid>/stat`` for the child), which load from other processes disturbs far less
than wall-clock rates, and the load average before and after.

    python bench/bench_delivery.py [--runs 3] [--bulk-mb 100] [--seconds 60]
                                   [--concurrency 128] [--only bulk|small]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from _procs import median_of, new_network, ratio, spawn_peer  # noqa: E402
from bench_raw_stream import BULK, ECHO, bulk_once, pipelined_once  # noqa: E402

from p2pdoc.content.documents import FileSource  # noqa: E402
from p2pdoc.delivery.states import OutboxState  # noqa: E402
from p2pdoc.model.ids import AgencyCode  # noqa: E402
from p2pdoc.simulation import Mesh  # noqa: E402
from tests.node.helpers import envelope  # noqa: E402
from tests.node.proc_node import (  # noqa: E402
    Event,
    NodeProcess,
    RunningNode,
    document_bytes,
    run_node,
    write_setup,
)

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
SMALL = 10 * 1024
RAW_REQUESTS = 3000
WARMUP = 2.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _child_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) {five:.2f} (5 min)"


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.recipient = AgencyCode(QUANG_NINH)
        self.number = 0
        self.samples: dict[str, list[float]] = {}

    def record(self, name: str, value: float) -> None:
        self.samples.setdefault(name, []).append(value)

    def next_number(self) -> int:
        self.number += 1
        return self.number

    async def bulk(self, running: RunningNode, recipient: NodeProcess) -> None:
        node, size = running.node, self.args.bulk_mb * 1_000_000
        number = self.next_number()
        data = document_bytes(number, size)
        document = await node.create_document(
            envelope(node.agency, self.recipient, number=number),
            [FileSource("bulk.bin", "application/octet-stream", data)],
            signer=running.signers,
        )
        del data
        assert recipient.process is not None
        child_cpu, cpu = _child_cpu(recipient.process.pid), time.process_time()
        start = time.perf_counter()
        handle = await node.send(document)
        entries = await handle.wait()
        elapsed = time.perf_counter() - start
        cpu, child_cpu = time.process_time() - cpu, _child_cpu(recipient.process.pid) - child_cpu
        assert {e.state for e in entries.values()} == {OutboxState.DELIVERED}
        self.record("bulk", size / elapsed / 1e6)
        self.record("bulk_cpu_sender", cpu * 1e3 / (size / 1e6))
        self.record("bulk_cpu_recipient", child_cpu * 1e3 / (size / 1e6))

    async def small(self, running: RunningNode, recipient: NodeProcess) -> None:
        node, to = running.node, self.recipient
        latencies: list[float] = []
        measuring = [False]
        done = [0]
        stop_at = [float("inf")]

        async def worker() -> None:
            for _ in range(10_000_000):
                if time.perf_counter() >= stop_at[0]:
                    return
                number = self.next_number()
                start = time.perf_counter()
                document = await node.create_document(
                    envelope(node.agency, to, number=number),
                    [FileSource("van-ban.pdf", "application/pdf", document_bytes(number, SMALL))],
                    signer=running.signers,
                )
                handle = await node.send(document)
                entries = await handle.wait()
                end = time.perf_counter()
                if entries[to].state is not OutboxState.DELIVERED:
                    raise RuntimeError(f"delivery failed: {entries[to].last_error}")
                if measuring[0] and end <= stop_at[0]:
                    latencies.append(end - start)
                    done[0] += 1

        assert recipient.process is not None
        async with trio.open_nursery() as nursery:
            for _ in range(self.args.concurrency):
                nursery.start_soon(worker)
            await trio.sleep(WARMUP)
            measuring[0] = True
            child_cpu, cpu = _child_cpu(recipient.process.pid), time.process_time()
            start = time.perf_counter()
            stop_at[0] = start + self.args.seconds
            await trio.sleep(self.args.seconds)
            cpu = time.process_time() - cpu
            child_cpu = _child_cpu(recipient.process.pid) - child_cpu
        count = done[0]
        self.record("small", count / self.args.seconds)
        latencies.sort()
        self.record("small_p50", 1e3 * latencies[len(latencies) // 2])
        self.record(
            "small_p99", 1e3 * latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)]
        )
        self.record("small_cpu_sender", cpu * 1e6 / max(1, count))
        self.record("small_cpu_recipient", child_cpu * 1e6 / max(1, count))

    async def raw(self) -> None:
        """The raw libp2p baselines (``bench_raw_stream.py``), same machine, same run."""
        async with (
            spawn_peer(BENCH / "bench_raw_stream.py", "--peer", "libp2p") as child,
            trio.open_nursery() as nursery,
        ):
            net = new_network()
            await nursery.start(net.serve)
            assert child.peer is not None
            net.add_addrs(child.peer, child.addrs)
            if self.args.only in (None, "bulk"):
                stream = await net.open_stream(child.peer, BULK)
                rate, cpu = await bulk_once(stream, self.args.bulk_mb * 1_000_000)
                await stream.aclose()
                self.record("raw_bulk", rate)
                self.record("raw_bulk_cpu", cpu)
            if self.args.only in (None, "small"):
                stream = await net.open_stream(child.peer, ECHO)
                rate, cpu = await pipelined_once(stream, RAW_REQUESTS)
                await stream.aclose()
                self.record("raw_echo", rate)
                self.record("raw_echo_cpu", cpu)
            nursery.cancel_scope.cancel()


async def main(args: argparse.Namespace) -> None:
    print(
        f"{args.runs} runs, medians; bulk {args.bulk_mb} MB; small: 10 KiB documents for "
        f"{args.seconds} s, {args.concurrency} in flight; load average {_load()}"
    )
    with tempfile.TemporaryDirectory(prefix="p2pdoc-bench-") as tmp:
        home = Path(tmp)
        mesh = Mesh(seed=1, transport="libp2p")
        gov, qn = mesh.add_agency(GOV), mesh.add_agency(QUANG_NINH)
        ports = {gov.code: _free_port(), qn.code: _free_port()}
        write_setup(mesh, home, ports)
        bench = Bench(args, home)
        recipient = NodeProcess(
            "recipient",
            [
                *("--home", str(home), "--agency", str(qn.code), "--port", str(ports[qn.code])),
                *("--quiet", "--write-batch", str(4 << 20)),
            ],
            home / "recipient.log",
        )
        send_events, events = trio.open_memory_channel[Event](1000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, events)
            await recipient.start(nursery, send_events)
            async with run_node(home, gov.code, ports[gov.code]) as running:
                for run in range(args.runs):
                    await bench.raw()
                    if args.only in (None, "bulk"):
                        await bench.bulk(running, recipient)
                    if args.only in (None, "small"):
                        await bench.small(running, recipient)
                    print(f"  run {run + 1} done; load average {_load()}", flush=True)
            await recipient.stop()
            nursery.cancel_scope.cancel()
    report(bench.samples)
    print(f"load average at the end: {_load()}")


async def _drain(events: trio.MemoryReceiveChannel[Event]) -> None:
    async for _ in events:
        pass


def report(samples: dict[str, list[float]]) -> None:
    m = {name: median_of(values) for name, values in samples.items()}
    print(f"{'':48s} {'median':>9s} {'':6s} {'ratio':>8s}")
    if "bulk" in m:
        print(f"{'raw libp2p stream, 100 MB (baseline)':48s} {m['raw_bulk']:9.1f} MB/s")
        print(
            f"{'document node to node, send -> receipt':48s} {m['bulk']:9.1f} MB/s  "
            f"{ratio(m['bulk'], m['raw_bulk']):>8s} of raw"
        )
        print(
            f"  CPU ms/MB: raw (both) {m['raw_bulk_cpu']:.1f}; node sender "
            f"{m['bulk_cpu_sender']:.1f}, recipient {m['bulk_cpu_recipient']:.1f}"
        )
    if "small" in m:
        print(f"{'raw libp2p 10 KiB echo, pipelined (baseline)':48s} {m['raw_echo']:9.1f} req/s")
        print(
            f"{'10 KiB signed documents with receipts':48s} {m['small']:9.1f} doc/s "
            f"{ratio(m['small'], m['raw_echo']):>8s} of raw; goal 1000/s: "
            f"{ratio(m['small'], 1000.0)}"
        )
        print(
            f"  latency create+send -> receipt: p50 {m['small_p50']:.1f} ms, "
            f"p99 {m['small_p99']:.1f} ms"
        )
        print(
            f"  CPU us/document: sender {m['small_cpu_sender']:.0f}, recipient "
            f"{m['small_cpu_recipient']:.0f}; raw echo (both) {m['raw_echo_cpu']:.0f} us/req"
        )
    print("samples:")
    for name, values in samples.items():
        print(
            f"  {name:22s} "
            + " ".join(f"{x:.1f}" for x in values)
            + f"  (spread {_spread(values)})"
        )


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    return f"{(max(values) - min(values)) / statistics.median(values):.0%}"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bulk-mb", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--only", choices=["bulk", "small"])
    args = parser.parse_args()
    if not 1 <= args.runs <= 20 or not 1 <= args.bulk_mb <= 2000 or not 1 <= args.seconds <= 600:
        parser.error("--runs 1..20, --bulk-mb 1..2000, --seconds 1..600")
    if not 1 <= args.concurrency <= 4096:
        parser.error("--concurrency 1..4096")
    trio.run(main, args)


if __name__ == "__main__":
    cli()
