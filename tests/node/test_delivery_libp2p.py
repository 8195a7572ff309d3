"""Delivery over real libp2p hosts (TCP + Noise + Yamux) on 127.0.0.1."""

from __future__ import annotations

import trio

from p2pdoc.delivery.evidence import Staff, StatusCode
from p2pdoc.delivery.states import OutboxState
from p2pdoc.simulation import Mesh

from .helpers import SIX_ROLES, envelope, file_bytes, files

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
HA_NAM = "000.00.00.H35"


async def wait_trail(
    mesh: Mesh, sender: str, recipient: str, root: object, length: int
) -> list[str]:
    node = mesh.node(sender)
    while True:
        trail = await node.status_trail(
            root, mesh.agencies[next(a for a in mesh.agencies if str(a) == recipient)].code
        )  # type: ignore[arg-type]
        if len(trail.reports) >= length:
            assert trail.complete
            return [c.value for c in trail.codes]
        await node.wait_status(root)  # type: ignore[arg-type]


async def test_two_nodes_deliver_with_receipt_and_full_status_trail() -> None:
    mesh = Mesh(transport="libp2p", signature_roles=SIX_ROLES)
    gov = mesh.add_agency(GOV, "Văn phòng Chính phủ")
    qn = mesh.add_agency(QUANG_NINH, "UBND tỉnh Quảng Ninh")
    with trio.fail_after(60):
        async with mesh.run():
            document = await mesh.node(gov).create_document(
                envelope(gov.code, qn.code), files(2_000, 700_000, 30_000), signer=gov.signers
            )
            handle = await mesh.node(gov).send(document)
            entries = await handle.wait()
            assert entries[qn.code].state is OutboxState.DELIVERED
            receipt = (await handle.receipts())[qn.code]
            assert receipt.root == document.root
            assert receipt.files == tuple(f.cid for f in document.manifest.files)

            async for item in mesh.node(qn).inbox():
                assert len(item.manifest.files) == 3
                assert await item.read_file("phu-luc-1.pdf") == file_bytes(700_000, 1)
                await item.ack()
                break
            for code in (
                StatusCode.ACCEPTED,
                StatusCode.ASSIGNED,
                StatusCode.PROCESSING,
                StatusCode.COMPLETED,
            ):
                await mesh.node(qn).report_status(
                    document.root, code, staff=Staff(name="Lê Văn D", department="Văn thư")
                )
            codes = await wait_trail(mesh, GOV, QUANG_NINH, document.root, 5)
            assert codes == ["01", "03", "04", "05", "06"]


async def test_three_nodes_second_recipient_fetches_from_first() -> None:
    mesh = Mesh(transport="libp2p", signature_roles=SIX_ROLES)
    gov = mesh.add_agency(GOV)
    qn = mesh.add_agency(QUANG_NINH)
    hn = mesh.add_agency(HA_NAM)
    with trio.fail_after(60):
        async with mesh.run():
            # Ha Nam is offline while Quang Ninh receives; it then gets the offer naming
            # Quang Ninh as a holder and fetches blocks from both.
            await mesh.crash(hn)
            document = await mesh.node(gov).create_document(
                envelope(gov.code, qn.code, hn.code), files(3_000_000, 10, 20), signer=gov.signers
            )
            handle = await mesh.node(gov).send(document)
            while handle.states().get(qn.code) is not OutboxState.DELIVERED:
                await mesh.node(gov)._sender.wait_changed(document.root)
            await mesh.start(hn)
            entries = await handle.wait()
            assert {e.state for e in entries.values()} == {OutboxState.DELIVERED}
            assert mesh.node(qn).health()["blocks_served"] > 0  # Quang Ninh served Ha Nam too
            async for item in mesh.node(hn).inbox():
                assert await item.read_file("phu-luc-0.pdf") == file_bytes(3_000_000, 0)
                break
