"""Crash safety with real processes: nodes are SIGKILLed at random points and restarted.

Two node processes (:mod:`tests.node.proc_node`: SQLite with synchronous FULL, libp2p on
127.0.0.1) exchange a stream of documents, small ones and some of 3 MB so that transfers and
stores are in progress when a kill lands. The parent kills the sender or the recipient at
moments drawn from a seeded ``random.Random`` (after a random number of the children's
progress lines), plus deliberate points: the recipient right after an offer for a large
document arrives (it is fetching and storing blocks), the recipient as a block write starts,
and the sender while it imports a large document. Each killed process is restarted on the
same data directory and port; a restarted sender is asked for every document again and
resumes from its outbox.

At the end both stop cleanly and their stores are opened: every document is in the
recipient's inbox exactly once and stored (never left RECEIVING), its file is intact, every
outbox entry is DELIVERED with a receipt that verifies against the root certificate and is
the receipt the recipient stored, and SQLite's integrity check passes on both files.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pdoc.codecs.cid import Cid
from p2pdoc.content.unixfs import read_file
from p2pdoc.delivery.evidence import Evidence, Receipt, verify_evidence
from p2pdoc.delivery.states import InboxEntry, InboxState, OutboxEntry, OutboxState
from p2pdoc.model.manifest import Manifest
from p2pdoc.node.trustgate import TrustGate
from p2pdoc.simulation import Mesh

from .proc_node import (
    Event,
    NodeProcess,
    document_bytes,
    load_trust,
    open_store,
    setup_clock,
    write_setup,
)

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
SEED = 20190312
KILLS = 22
"""Kill/restart cycles, both sides together."""
BATCH = 8
"""Documents asked for at a time; every third one is big."""
SMALL, BIG, BIG_EVERY = 10 * 1024, 3 << 20, 3
MAX_EVENTS = 50_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True, slots=True)
class KillPoint:
    """Kill ``side`` when ``fires`` says so of an event (of either child's current run)."""

    side: str
    label: str
    fires: Callable[[Event], bool]


def _plan(rng: random.Random, big_roots: set[str]) -> list[KillPoint]:
    def after_lines(count: int) -> Callable[[Event], bool]:
        left = [count]

        def fires(event: Event) -> bool:
            left[0] -= 1
            return left[0] <= 0

        return fires

    def big_offer(event: Event) -> bool:
        return event.words[0] == "OFFER" and event.words[1] in big_roots

    def big_write(name: str) -> Callable[[Event], bool]:
        def fires(event: Event) -> bool:
            return event.name == name and event.words[0] == "WRITE" and int(event.words[2]) > SMALL

        return fires

    deliberate = [
        KillPoint("recipient", "recipient: offer for a large document arrived", big_offer),
        KillPoint("recipient", "recipient: block write starting", big_write("recipient")),
        KillPoint("sender", "sender: importing a large document", big_write("sender")),
    ]
    plan: list[KillPoint] = []
    for index in range(KILLS):
        if index % 7 == 1 and deliberate:
            plan.append(deliberate.pop(0))
            continue
        side = rng.choice(["sender", "recipient"])
        count = rng.randint(1, 16)
        plan.append(KillPoint(side, f"{side}: after {count} progress lines", after_lines(count)))
    return plan


@contextmanager
def _closing(*children: NodeProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for child in children:
            child.close()


async def test_killed_sender_and_recipient_deliver_every_document_exactly_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    mesh = Mesh(seed=SEED, transport="libp2p")
    gov = mesh.add_agency(GOV, "Văn phòng Chính phủ")
    qn = mesh.add_agency(QUANG_NINH, "UBND tỉnh Quảng Ninh")
    ports = {gov.code: _free_port(), qn.code: _free_port()}
    home = tmp_path / "mesh"
    write_setup(mesh, home, ports)
    common = ["--home", str(home), "--seed", str(SEED)]
    recipient = NodeProcess(
        "recipient",
        [*common, "--agency", str(qn.code), "--port", str(ports[qn.code])],
        tmp_path / "recipient.log",
    )
    sender = NodeProcess(
        "sender",
        [
            *common,
            *f"--agency {gov.code} --port {ports[gov.code]} --send-to {qn.code}".split(),
            *f"--size {SMALL} --big-size {BIG} --big-every {BIG_EVERY} --pace 0.03".split(),
        ],
        tmp_path / "sender.log",
    )
    children = {"sender": sender, "recipient": recipient}

    roots: dict[int, str] = {}
    big_roots: set[str] = set()
    taken: Counter[str] = Counter()
    killed: list[str] = []
    plan = _plan(rng, big_roots)
    requested = 0
    all_delivered = False
    send_events, events = trio.open_memory_channel[Event](10_000)

    with trio.fail_after(240), _closing(sender, recipient):
        async with trio.open_nursery() as nursery:
            await recipient.start(nursery, send_events)
            await sender.start(nursery, send_events)

            async def ask_more() -> None:
                nonlocal requested, all_delivered
                await sender.command(f"send {requested + 1} {BATCH}")
                requested += BATCH
                all_delivered = False

            await ask_more()
            for _ in range(MAX_EVENTS):
                if not plan and all_delivered:
                    break
                event = await events.receive()
                match event.words:
                    case ("QUEUED", queued, queued_root, queued_size):
                        assert roots.setdefault(int(queued), queued_root) == queued_root
                        if int(queued_size) > SMALL:
                            big_roots.add(queued_root)
                    case ("INBOX", taken_root):
                        taken[taken_root] += 1
                if event.run != children[event.name].runs:
                    continue  # a line a killed run printed before it died
                if event.words == ("EXITED",):
                    child = children[event.name]
                    raise AssertionError(f"{event.name} died:\n{child.log_tail()}")
                if event.words == ("ALL-DELIVERED", str(requested)):
                    all_delivered = True
                    if plan:
                        await ask_more()
                if plan and plan[0].fires(event):
                    point = plan.pop(0)
                    child = children[point.side]
                    await child.kill()
                    killed.append(point.label)
                    await child.start(nursery, send_events)
                    if child is sender:
                        all_delivered = False
                        await sender.command(f"send 1 {requested}")
            else:
                raise AssertionError("event budget exhausted")
            assert await sender.stop() == 0
            assert await recipient.stop() == 0
            nursery.cancel_scope.cancel()

    print(f"{requested} documents, {len(killed)} kills:", *killed, sep="\n  ")
    assert len(killed) == KILLS
    assert sum(label.startswith("recipient") for label in killed) >= 5
    assert sum(label.startswith("sender") for label in killed) >= 5
    assert sorted(roots) == list(range(1, requested + 1))
    assert max(taken.values(), default=1) == 1, "the application was handed a document twice"

    trust = TrustGate(load_trust(home), setup_clock(home))
    sent = set(roots.values())
    async with await open_store(home, gov.code) as outbox_store:
        outbox = dict(await outbox_store.list_records("outbox", limit=10_000))
        await outbox_store.check_integrity()
    async with await open_store(home, qn.code) as inbox_store:
        inbox = {
            key: InboxEntry.from_value(value)
            for key, value in await inbox_store.list_records("inbox", limit=10_000)
        }
        assert set(inbox) == sent
        for number, text in roots.items():
            assert inbox[text].state in (InboxState.STORED, InboxState.ACKED), text
            root = Cid.parse(text)
            record = await inbox_store.get_document(root)
            (file,) = Manifest.decode(record.manifest, expected=root).files
            content = b"".join([c async for c in read_file(file.cid, inbox_store.get_block)])
            assert content == document_bytes(number, BIG if number % BIG_EVERY == 0 else SMALL)
        await inbox_store.check_integrity()

    assert set(outbox) == {f"{text}|{qn.code}" for text in sent}
    for key, value in outbox.items():
        text = key.split("|")[0]
        delivery = OutboxEntry.from_value(value)
        assert delivery.state is OutboxState.DELIVERED, (key, delivery.last_error)
        assert delivery.receipt is not None
        assert verify_evidence(delivery.receipt, trust).signer == qn.code
        receipt = Receipt.decode(Evidence.decode(delivery.receipt).body)
        assert str(receipt.root) == text and receipt.recipient == qn.code
        assert delivery.receipt == inbox[text].receipt
