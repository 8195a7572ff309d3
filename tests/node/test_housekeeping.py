"""Housekeeping: receptions a sender abandoned are given up and their blocks collected."""

from __future__ import annotations

import trio
import trio.testing

from p2pdoc.delivery.states import InboxState, OutboxState
from p2pdoc.network.memory import Faults
from p2pdoc.node.config import NodeConfig, ReceiveConfig
from p2pdoc.node.context import doc_owner
from p2pdoc.node.receiver import RECEIVING
from p2pdoc.simulation import Mesh
from p2pdoc.store.base import PutRecord

from .helpers import envelope, files

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
DAY = 86400.0
CONFIG = NodeConfig(
    receive=ReceiveConfig(abandon_after=2 * DAY, write_batch_bytes=256 << 10),
    housekeeping_interval=3600.0,
)


async def test_a_reception_its_sender_abandons_is_given_up_and_its_blocks_collected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A slow link (100 kB/s) so that the sender can die in the middle of a transfer.
    mesh = Mesh(seed=11, config=CONFIG, faults=Faults(bandwidth=100_000))
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        baseline = await qn.store.block_count()
        document = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code), files(3_000_000), signer=gov.signers
        )
        await mesh.node(gov).send(document, deadline=DAY)
        receiver = mesh.node(qn)
        await trio.sleep(15)  # virtual: about half of the transfer at 100 kB/s
        await mesh.crash(gov)  # and it never comes back
        assert (await qn.store.block_count())[1] > baseline[1] + 1_000_000
        entry = await receiver.inbox_entry(document.root)
        assert entry is not None and entry.state is InboxState.RECEIVING
        assert await qn.store.pinned(doc_owner(document.root))

        # Nothing is given up before abandon_after without progress...
        await trio.sleep(DAY)
        assert receiver.health()["abandoned_receptions"] == 0
        # ...then the node's own housekeeping gives it up and collects its blocks.
        await trio.sleep(DAY + CONFIG.housekeeping_interval)
        health = receiver.health()
        assert health["abandoned_receptions"] == 1
        assert health["blocks_collected"] > 0
        assert await receiver.inbox_entry(document.root) is None
        assert await qn.store.pinned(doc_owner(document.root)) == set()
        assert await qn.store.block_count() == baseline
        assert await qn.store.list_records(RECEIVING) == []

        # The sender, back before its deadline... would start afresh: here, a new sending.
        await mesh.start(gov)
        again = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code, number=2), files(300_000), signer=gov.signers
        )
        entries = await (await mesh.node(gov).send(again)).wait()
        assert entries[qn.code].state is OutboxState.DELIVERED


async def test_a_stored_document_is_never_given_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = Mesh(seed=12, config=CONFIG)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    async with mesh.run():
        document = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code), files(700_000), signer=gov.signers
        )
        entries = await (await mesh.node(gov).send(document)).wait()
        assert entries[qn.code].state is OutboxState.DELIVERED
        # A progress record left behind (say, by an earlier attempt) next to a stored document.
        await qn.store.write([PutRecord(RECEIVING, str(document.root), 0)])
        held = await qn.store.block_count()
        assert await mesh.node(qn).housekeeping() == (0, 0)
        assert await qn.store.block_count() == held
        item = await mesh.node(qn).received(document.root)
        assert [f.size for f in item.files] == [700_000]
        assert await qn.store.list_records(RECEIVING) == []
