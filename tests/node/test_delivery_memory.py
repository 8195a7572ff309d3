"""Delivery between real nodes on the in-memory network, under a virtual clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.documents import FileSource
from p2pdoc.delivery.evidence import Staff, StatusCode
from p2pdoc.delivery.states import OutboxEntry, OutboxState
from p2pdoc.errors import InvalidValue
from p2pdoc.node.config import DeliveryConfig, NodeConfig
from p2pdoc.node.sender import DRAFTS
from p2pdoc.protocol.messages import Offer, OfferResult
from p2pdoc.protocol.session import Session
from p2pdoc.simulation import Agency, Mesh
from p2pdoc.store.base import Pin, PutBlock, PutRecord, WriteOp
from p2pdoc.store.memory import MemoryStore

from .helpers import SIX_ROLES, envelope, file_bytes, files

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
HA_NAM = "000.00.00.H35"


async def test_document_with_six_signatures_reaches_two_provinces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = Mesh(seed=1, signature_roles=SIX_ROLES)
    gov = mesh.add_agency(GOV, "Văn phòng Chính phủ")
    qn = mesh.add_agency(QUANG_NINH, "UBND tỉnh Quảng Ninh")
    hn = mesh.add_agency(HA_NAM, "UBND tỉnh Hà Nam")
    async with mesh.run():
        sender = mesh.node(gov)
        document = await sender.create_document(
            envelope(gov.code, qn.code, hn.code), files(1000, 300_000, 5), signer=gov.signers
        )
        handle = await sender.send(document)
        with trio.fail_after(60):
            entries = await handle.wait()
        assert {e.state for e in entries.values()} == {OutboxState.DELIVERED}
        receipts = await handle.receipts()
        assert set(receipts) == {qn.code, hn.code}
        assert all(r.root == document.root for r in receipts.values())

        for agency in (qn, hn):
            async for item in mesh.node(agency).inbox():
                assert item.root == document.root
                assert await item.read_file("phu-luc-1.pdf") == file_bytes(300_000, 1)
                await item.ack()
                break


async def test_status_trail_reaches_the_sender(autojump_clock: trio.testing.MockClock) -> None:
    mesh = Mesh(seed=2)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        document = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        handle = await mesh.node(gov).send(document)
        with trio.fail_after(60):
            await handle.wait()
        # The arrival report came with the receipt and was kept in the same write: no push.
        arrived = await mesh.node(gov).status_trail(document.root, qn.code)
        assert [c.value for c in arrived.codes] == ["01"]
        assert mesh.node(qn).health()["status_pushed"] == 0
        recipient = mesh.node(qn)
        for code in (
            StatusCode.ACCEPTED,
            StatusCode.ASSIGNED,
            StatusCode.PROCESSING,
            StatusCode.COMPLETED,
        ):
            await recipient.report_status(
                document.root, code, staff=Staff(name="Nguyễn Văn C", department="Văn phòng")
            )
        with trio.fail_after(60):
            while True:
                trail = await mesh.node(gov).status_trail(document.root, qn.code)
                if len(trail.reports) == 5:
                    break
                await mesh.node(gov).wait_status(document.root)
        assert [c.value for c in trail.codes] == ["01", "03", "04", "05", "06"]
        assert trail.complete
        assert trail.reports[1].staff.name == "Nguyễn Văn C"


async def test_creating_the_same_document_twice_returns_the_stored_version(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Signing a version twice would leave a recipient holding the first signatures with a
    receipt the sender could never accept."""
    mesh = Mesh(seed=5)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        node = mesh.node(gov)
        first = await node.create_document(
            envelope(gov.code, qn.code), files(10, 400_000), signer=gov.signers
        )
        await (await node.send(first)).wait()
        await trio.sleep(5)  # a later signing time would change the signatures
        again = await node.create_document(
            envelope(gov.code, qn.code), files(10, 400_000), signer=gov.signers
        )
        assert again.root == first.root
        assert again.signatures == first.signatures
        entries = await (await node.send(again)).wait()
        assert entries[qn.code].state is OutboxState.DELIVERED


async def test_concurrent_status_reports_on_one_document_each_get_their_own_number(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two reports made at once must chain (n, n+1), not both take number n and replace one
    another: the sender would then refuse the second and hold a trail with a hole."""
    mesh = Mesh(seed=6)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        document = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        with trio.fail_after(60):
            await (await mesh.node(gov).send(document)).wait()
        recipient = mesh.node(qn)
        await recipient.report_status(document.root, StatusCode.ACCEPTED)
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(recipient.report_status, document.root, StatusCode.ASSIGNED)
        own = await recipient.status_trail(document.root, qn.code)
        assert [r.seq for r in own.reports] == [1, 2, 3, 4]
        assert own.complete
        with trio.fail_after(60):
            while True:
                trail = await mesh.node(gov).status_trail(document.root, qn.code)
                if len(trail.reports) == 4:
                    break
                await mesh.node(gov).wait_status(document.root)
        assert trail.complete
        assert [c.value for c in trail.codes] == ["01", "03", "04", "04"]


async def test_documents_received_together_keep_their_inbox_places_across_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Receptions finishing together may commit in any order, leaving the stored arrival
    counter behind a number in use; after a restart the next document must not take the
    place of an unacknowledged one (which the application would then never see)."""
    mesh = Mesh(seed=0)
    qn = mesh.add_agency(QUANG_NINH)
    senders = [mesh.add_agency(f"000.00.{i:02d}.G22") for i in range(1, 9)]
    async with mesh.run():

        async def deliver(sender: Agency, number: int) -> Cid:
            node = mesh.node(sender)
            document = await node.create_document(
                envelope(sender.code, qn.code, number=number), files(10), signer=sender.signers
            )
            with trio.fail_after(60):
                await (await node.send(document)).wait()
            return document.root

        roots: set[Cid] = set()

        async def collect(sender: Agency) -> None:
            roots.add(await deliver(sender, 1))

        async with trio.open_nursery() as nursery:
            for sender in senders:
                nursery.start_soon(collect, sender)
        await mesh.restart(qn)
        roots.add(await deliver(senders[0], 2))
        pending = await mesh.node(qn).pending_inbox()
        assert len(roots) == 9
        assert {item.root for _, item in pending} == roots


class _HeldOutbox(MemoryStore):
    """Holds the first outbox write until ``release`` is set, or for 1 s at most."""

    def __init__(self) -> None:
        super().__init__()
        self.outbox_writes = 0
        self.release = trio.Event()

    async def write(self, ops: Sequence[WriteOp]) -> None:
        if any(isinstance(op, PutRecord) and op.table == "outbox" for op in ops):
            self.outbox_writes += 1
            if self.outbox_writes == 1:
                with trio.move_on_after(1):
                    await self.release.wait()
        await super().write(ops)


async def test_sending_a_document_twice_at_once_queues_it_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The second send() must not reset the first one's delivery (in flight or finished)
    to QUEUED: the attempt would then meet a state its transition table does not allow."""
    mesh = Mesh(seed=8)
    store = _HeldOutbox()
    gov = mesh.add_agency(GOV, store=store)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        node = mesh.node(gov)
        document = await node.create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        receiver = mesh.node(qn)._receiver
        real_offer = receiver.offer

        async def offer(session: Session, request: Offer) -> OfferResult:
            # The second send() queued first and its attempt is in flight: let the first
            # send() finish its write now.
            store.release.set()
            await trio.testing.wait_all_tasks_blocked()
            return await real_offer(session, request)

        receiver.offer = offer  # type: ignore[method-assign]
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(node.send, document)
            entries = await node.handle(document).wait()
        assert entries[qn.code].state is OutboxState.DELIVERED
        assert [state for _, state, _ in entries[qn.code].history].count("queued") == 1
        stored = OutboxEntry.from_value(
            await store.get_record("outbox", f"{document.root}|{qn.code}")
        )
        assert stored.state is OutboxState.DELIVERED


async def test_holder_that_stops_answering_block_requests_does_not_stall_a_reception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Blocks asked of a holder that never answers (its session still up) go back to the
    other holders after the no-progress timeout, instead of holding the reception forever."""
    mesh = Mesh(seed=4, config=NodeConfig(delivery=DeliveryConfig(offer_timeout=30)))
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    hn = mesh.add_agency(HA_NAM)
    async with mesh.run():
        await mesh.crash(hn)
        sender = mesh.node(gov)
        document = await sender.create_document(
            envelope(gov.code, qn.code, hn.code), files(3_000_000), signer=gov.signers
        )
        handle = await sender.send(document)
        with trio.fail_after(600):
            while handle.states().get(qn.code) is not OutboxState.DELIVERED:
                await sender.wait_delivery_change(document.root)

        async def stall(*args: object) -> Sequence[Cid]:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        mesh.node(qn)._blocks.serve = stall  # type: ignore[method-assign]
        await mesh.start(hn)
        with trio.fail_after(3600):
            entries = await handle.wait()
        assert entries[hn.code].state is OutboxState.DELIVERED
        async for item in mesh.node(hn).inbox():
            assert await item.read_file("phu-luc-0.pdf") == file_bytes(3_000_000, 0)
            break


async def test_finished_deliveries_do_not_keep_their_timers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A delivered document's deadline timer (days away) must not stay queued: a node that
    sends steadily would hold one per document sent in the last deadline period."""
    mesh = Mesh(seed=9)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        node = mesh.node(gov)

        async def deliver(number: int) -> None:
            document = await node.create_document(
                envelope(gov.code, qn.code, number=number), files(10), signer=gov.signers
            )
            with trio.fail_after(600):
                await (await node.send(document)).wait()

        for batch in range(60):
            async with trio.open_nursery() as nursery:
                for number in range(10 * batch, 10 * batch + 10):
                    nursery.start_soon(deliver, number)
        # Without the clean-up: 600 deadline timers, one per document delivered.
        assert len(node._sender._timers) < 300


async def test_a_deadline_that_is_no_duration_queues_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = Mesh(seed=5)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        node = mesh.node(gov)
        document = await node.create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        for deadline in (0, -1, float("inf"), float("nan"), 1e300):
            with pytest.raises(InvalidValue):
                await node.send(document, deadline=deadline)
        assert await node.sent_entries(document.root) == {}
        entries = await (await node.send(document, deadline=60)).wait()
        assert entries[qn.code].state is OutboxState.DELIVERED


class _FailingRead:
    """A file that yields 700 kB and then cannot be read any more (a disk error)."""

    def __init__(self) -> None:
        self.left = 700_000

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        n = min(self.left, size if size > 0 else self.left)
        self.left -= n
        return bytes(n)


async def test_documents_whose_creation_fails_leave_no_blocks_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = Mesh(seed=5)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        node = mesh.node(gov)
        before = await gov.store.block_count()
        # A name refused after a large file: checked before anything is imported.
        bad_name = [*files(700_000), FileSource("../x.pdf", "application/pdf", b"x")]
        with pytest.raises(InvalidValue):
            await node.create_document(envelope(gov.code, qn.code), bad_name, signer=gov.signers)
        assert await gov.store.block_count() == before
        # A file that breaks off mid-import: what was imported is released.
        broken = [FileSource("hong.pdf", "application/pdf", _FailingRead())]
        with pytest.raises(OSError, match="Input/output"):
            await node.create_document(envelope(gov.code, qn.code), broken, signer=gov.signers)
        await gov.store.collect_garbage()
        assert await gov.store.block_count() == before
        # A crash mid-import leaves its draft; the next start releases it.
        draft = "draft:crashed"
        data = bytes(range(256)) * 1000
        cid = Cid.of(Multicodec.RAW, data)
        await gov.store.write(
            [PutRecord(DRAFTS, draft, 0), PutBlock(cid, data), Pin(draft, (cid,))]
        )
        await mesh.crash(gov)
        await mesh.start(gov)
        await gov.store.collect_garbage()
        assert await gov.store.block_count() == before
        assert not await gov.store.has_block(cid)


async def test_a_deadline_passed_during_downtime_fails_the_delivery_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Its retry and its deadline both fall due at the restart: one failure, written and
    logged once; and the handle of a document finished before a restart still answers."""
    mesh = Mesh(seed=5)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        await mesh.crash(qn)  # the recipient is down throughout
        node = mesh.node(gov)
        document = await node.create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        await node.send(document, deadline=600)
        await trio.sleep(30)
        (state,) = mesh.node(gov).handle(document).states().values()
        assert state is OutboxState.RETRY_WAIT
        await mesh.crash(gov)
        await trio.sleep(3600)  # both its retry and its deadline fall due while it is down
        await mesh.start(gov)
        with trio.fail_after(60):
            entries = await mesh.node(gov).handle(document).wait()
        entry = entries[qn.code]
        assert entry.state is OutboxState.FAILED
        failed = [h for h in entry.history if h[1] == OutboxState.FAILED.value]
        assert len(failed) == 1, entry.history
        logged = [r for r in caplog.records if "failed: deadline" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        # Finished before a restart: the handle answers from the store.
        await mesh.crash(gov)
        await mesh.start(gov)
        with trio.fail_after(60):
            again = await mesh.node(gov).handle(document).wait()
        assert again[qn.code].state is OutboxState.FAILED


async def test_two_acknowledgements_at_once_count_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = Mesh(seed=5)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        document = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        await (await mesh.node(gov).send(document)).wait()
        outcomes: list[bool] = []

        async def ack() -> None:
            outcomes.append(await mesh.node(qn).ack(document.root))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ack)
            nursery.start_soon(ack)
        assert sorted(outcomes) == [False, True]
        assert await mesh.node(qn).ack(document.root) is False
