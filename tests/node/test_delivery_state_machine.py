"""Stateful test of delivery: sends, crashes, restarts, lossy links, partitions, replays
(offers replayed in a session, and whole session streams duplicated by the router).

The mesh runs in a trio thread under a MockClock; virtual time moves only while a rule runs
(autojump on inside rules, off between them), so every example is deterministic. Invariants,
checked after every step: every DELIVERED outbox entry's receipt verifies, is signed by the
recipient and is the one the recipient stored; no document is handed to an application twice.
At the end, with links healed and every node up, every document reaches every recipient
exactly once, and each recipient's application is handed each of its documents.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import trio.testing
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from p2pdoc.codecs.cid import Cid
from p2pdoc.delivery.evidence import Receipt, verify_evidence
from p2pdoc.delivery.retry import RetryPolicy
from p2pdoc.delivery.states import InboxEntry, InboxState, OutboxEntry, OutboxState
from p2pdoc.network.memory import Faults
from p2pdoc.node import DeliveryConfig, FileSource, NodeConfig
from p2pdoc.node.trustgate import TrustGate
from p2pdoc.protocol.messages import OfferOutcome
from p2pdoc.simulation import Mesh
from p2pdoc.store.memory import MemoryStore

from .helpers import envelope

CODES = ("000.00.00.G22", "000.00.00.H49", "000.00.00.H35")
T = TypeVar("T")

CONFIG = NodeConfig(
    delivery=DeliveryConfig(
        retry=RetryPolicy(initial=1, factor=2, maximum=30),
        offer_timeout=20,
        dial_timeout=5,
        inline_limit=8 << 10,
    )
)


class TrioThread:
    """A trio run in a thread; ``call`` runs a coroutine in it with virtual time moving."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.clock = trio.testing.MockClock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("trio thread did not start")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            trio.run(self._run, clock=self.clock)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with self.mesh.run():
            self._ready.set()
            await self._stop.wait()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, horizon: float = 0.0) -> T:
        async def step() -> T:
            self.clock.autojump_threshold = 0
            try:
                with trio.fail_after(3600):
                    result = await fn(*args)
                    if horizon:
                        await trio.sleep(horizon)
                    return result
            finally:
                self.clock.autojump_threshold = math.inf

        return trio.from_thread.run(step, trio_token=self.token)

    def stop(self) -> None:
        def finish() -> None:
            self.clock.autojump_threshold = 0  # let shutdown timeouts run in virtual time
            self._stop.set()

        trio.from_thread.run_sync(finish, trio_token=self.token)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the mesh did not shut down"


def outbox(store: MemoryStore) -> Callable[[], Awaitable[dict[str, OutboxEntry]]]:
    async def read() -> dict[str, OutboxEntry]:
        return {
            k: OutboxEntry.from_value(v)
            for k, v in await store.list_records("outbox", limit=100_000)
        }

    return read


async def inbox_entries(store: MemoryStore) -> dict[str, InboxEntry]:
    return {
        k: InboxEntry.from_value(v) for k, v in await store.list_records("inbox", limit=100_000)
    }


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mesh = Mesh(seed=7, config=CONFIG, faults=Faults(latency=0.005))
        self.agencies = [self.mesh.add_agency(code) for code in CODES]
        self.verifier = TrustGate(self.mesh.trust_store(), self.mesh.clock)
        self.trio = TrioThread(self.mesh)
        self.down: set[int] = set()
        self.sent: dict[str, tuple[int, tuple[int, ...]]] = {}  # root -> (sender, recipients)
        self.handed: list[set[str]] = [set() for _ in CODES]
        self.number = 0

    def teardown(self) -> None:
        try:
            if self.sent:
                self.converge()
        finally:
            self.trio.stop()

    @initialize()
    def start(self) -> None:
        pass

    # -- actions ------------------------------------------------------------------------

    @rule(
        sender=st.integers(0, 2),
        recipients=st.sets(st.integers(0, 2), min_size=1, max_size=2),
        size=st.sampled_from([0, 500, 40_000, 600_000]),
    )
    def send(self, sender: int, recipients: set[int], size: int) -> None:
        recipients = {r for r in recipients if r != sender} or {(sender + 1) % 3}
        if sender in self.down:
            return
        self.number += 1
        agency = self.agencies[sender]
        data = bytes((self.number * 17 + i) % 256 for i in range(size))

        async def go() -> str:
            node = self.mesh.node(agency)
            env = envelope(
                agency.code,
                *(self.agencies[r].code for r in sorted(recipients)),
                number=self.number,
            )
            document = await node.create_document(
                env,
                [FileSource("van-ban.pdf", "application/pdf", io.BytesIO(data))],
                signer=agency.signers,
            )
            await node.send(document)
            return str(document.root)

        root = self.trio.call(go, horizon=0.2)
        self.sent[root] = (sender, tuple(sorted(recipients)))
        event(f"documents sent: {min(len(self.sent), 5)}+")

    @rule(index=st.integers(0, 2))
    def crash(self, index: int) -> None:
        self.trio.call(self.mesh.crash, self.agencies[index])
        self.down.add(index)

    @precondition(lambda self: self.down)
    @rule(pick=st.integers(0, 2))
    def restart(self, pick: int) -> None:
        # Draws never depend on the run's state, so every example replays exactly.
        index = sorted(self.down)[pick % len(self.down)]
        self.trio.call(self.mesh.start, self.agencies[index], horizon=0.1)
        self.down.discard(index)

    @rule(
        reset=st.sampled_from([0.0, 0.02, 0.2]),
        duplicate=st.sampled_from([0.0, 0.3, 1.0]),
    )
    def links(self, reset: float, duplicate: float) -> None:
        """Lossy links; streams replayed to the recipient (refused at admission)."""
        self.mesh.router.faults = Faults(
            latency=0.005, jitter=0.005, reset_probability=reset, duplicate_probability=duplicate
        )
        event(f"duplicate_probability={duplicate}")

    @rule(a=st.integers(0, 2), b=st.integers(0, 2))
    def partition(self, a: int, b: int) -> None:
        if a != b:
            peers = [self.agencies[i].identity.peer_id for i in (a, b)]
            self.trio.call(self._router, self.mesh.router.partition, [peers[0]], [peers[1]])

    @rule()
    def heal(self) -> None:
        self.trio.call(self._router, self.mesh.router.heal)

    @staticmethod
    async def _router(change: Callable[..., None], *args: Any) -> None:
        """Router changes break connections: they must happen in the trio thread."""
        change(*args)

    @rule(seconds=st.sampled_from([0.5, 3.0, 20.0, 90.0]))
    def advance(self, seconds: float) -> None:
        async def nothing() -> None:
            return None

        self.trio.call(nothing, horizon=seconds)

    @rule(index=st.integers(0, 2))
    def application_takes_inbox(self, index: int) -> None:
        if index in self.down:
            return
        node_agency = self.agencies[index]

        async def take() -> list[str]:
            taken = []
            with trio.move_on_after(0.05):
                async for item in self.mesh.node(node_agency).inbox():
                    taken.append(str(item.root))
                    await item.ack()
            return taken

        for root in self.trio.call(take):
            assert root not in self.handed[index], f"{root} handed to the application twice"
            self.handed[index].add(root)

    @rule(pick=st.integers(0, 50))
    def replay_offer(self, pick: int) -> None:
        """Deliver a duplicate offer of a document already delivered: same receipt back."""
        delivered = self.trio.call(self._delivered_pairs)
        candidates = [
            (root, s, r) for root, s, r in delivered if s not in self.down and r not in self.down
        ]
        if not candidates:
            return
        root, sender, recipient = sorted(candidates)[pick % len(candidates)]
        entries = self.trio.call(outbox(self.agencies[sender].store))  # type: ignore[arg-type]

        async def replay() -> tuple[OfferOutcome, bytes | None] | None:
            node = self.mesh.node(self.agencies[sender])
            record = await self.agencies[sender].store.get_document(Cid.parse(root))
            try:
                session = await node._sessions.get(self.agencies[recipient].identity.peer_id)
                result = await session.offer(record.manifest, record.signatures)
            except Exception:
                return None  # a lossy link may break the replay itself
            return result.outcome, result.receipt

        outcome = self.trio.call(replay)
        if outcome is not None:
            assert outcome[0] is OfferOutcome.DELIVERED
            assert outcome[1] == entries[f"{root}|{self.agencies[recipient].code}"].receipt

    async def _delivered_pairs(self) -> list[tuple[str, int, int]]:
        out = []
        for index, agency in enumerate(self.agencies):
            for key, entry in (await outbox(agency.store)()).items():  # type: ignore[arg-type]
                if entry.state is OutboxState.DELIVERED:
                    root, code = key.split("|")
                    out.append((root, index, CODES.index(code)))
        return out

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def delivered_means_stored_with_that_receipt(self) -> None:
        async def check() -> None:
            inboxes = [await inbox_entries(a.store) for a in self.agencies]  # type: ignore[arg-type]
            for agency in self.agencies:
                for key, entry in (await outbox(agency.store)()).items():  # type: ignore[arg-type]
                    root, code = key.split("|")
                    assert entry.state is not OutboxState.FAILED, (
                        f"{key} failed: {entry.last_error}"
                    )
                    if entry.state is OutboxState.DELIVERED:
                        stored = inboxes[CODES.index(code)].get(root)
                        assert stored is not None, f"{key} DELIVERED but the recipient has no entry"
                        assert stored.state is not InboxState.RECEIVING
                        assert stored.receipt == entry.receipt
                        verified = verify_evidence(entry.receipt, self.verifier)
                        assert str(verified.signer) == code
                        receipt = Receipt.decode(verified.evidence.body)
                        assert str(receipt.root) == root and str(receipt.recipient) == code

        self.trio.call(check)

    # -- the end --------------------------------------------------------------------------

    def converge(self) -> None:
        self.trio.call(self._router, self.mesh.router.heal)
        self.mesh.router.faults = Faults(latency=0.005)
        for index in sorted(self.down):
            self.trio.call(self.mesh.start, self.agencies[index])
        self.down.clear()

        async def settle() -> None:
            for _ in range(60):
                pairs = await self._delivered_pairs()
                if len(pairs) == sum(len(r) for _, r in self.sent.values()):
                    return
                await trio.sleep(30)

        self.trio.call(settle)
        delivered = {(root, s, r) for root, s, r in self.trio.call(self._delivered_pairs)}
        expected = {(root, s, r) for root, (s, rs) in self.sent.items() for r in rs}
        assert delivered == expected, f"not delivered: {sorted(expected - delivered)}"
        for index, agency in enumerate(self.agencies):
            inbox = self.trio.call(inbox_entries, agency.store)
            mine = {root for root, (_, rs) in self.sent.items() if index in rs}
            assert set(inbox) == mine
            assert all(e.state is not InboxState.RECEIVING for e in inbox.values())
            self.application_takes_inbox(index)
            assert self.handed[index] == mine, f"never handed over: {mine - self.handed[index]}"


TestDelivery = DeliveryMachine.TestCase
TestDelivery.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
