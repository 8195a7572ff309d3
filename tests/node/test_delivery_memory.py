"""Delivery between real nodes on the in-memory network, under a virtual clock."""

from __future__ import annotations

import trio
import trio.testing

from p2pdoc.delivery.evidence import Staff, StatusCode
from p2pdoc.delivery.states import OutboxState
from p2pdoc.simulation import Mesh

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
