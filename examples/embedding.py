"""Embedding p2pdoc in document-management software: two agencies exchange a document.

Runs two real nodes in one process (SQLite stores in a temporary directory, libp2p on
127.0.0.1), with a national root CA and a provincial sub-CA made on the spot. The Government
Office sends a directive with an attachment to a province; the province's software takes it
from the inbox, acknowledges it and reports its processing; the sender reads the signed
receipt and the status trail.

    python examples/embedding.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdoc import (
    AgencyCode,
    CertificateAuthority,
    DocumentRole,
    DocumentSigners,
    Envelope,
    FileSource,
    IdentityCredentials,
    Libp2pConfig,
    Libp2pNetwork,
    Node,
    NodeConfig,
    NodeIdentity,
    Organization,
    PeerDirectory,
    PeerRecord,
    SignerInfo,
    SigningKey,
    SQLiteStore,
    Staff,
    StatusCode,
    TrioWallClock,
    TrustGate,
    TrustStore,
)

GOVERNMENT_OFFICE = AgencyCode("000.00.00.G22")
QUANG_NINH = AgencyCode("000.00.00.H49")


def certify(
    now: dt.datetime,
) -> tuple[bytes, dict[AgencyCode, tuple[NodeIdentity, DocumentSigners]]]:
    """What the national CA and a province's sub-CA do, once, outside the nodes."""
    root = CertificateAuthority.create_root(
        name="Ban Cơ yếu Chính phủ", key=SigningKey.generate(), now=now
    )
    parties = {}
    for code, name in (
        (GOVERNMENT_OFFICE, "Văn phòng Chính phủ"),
        (QUANG_NINH, "UBND tỉnh Quảng Ninh"),
    ):
        ca_key = SigningKey.generate()
        ca = CertificateAuthority(
            ca_key,
            root.issue_sub_ca(
                agency=code, name=f"CA {name}", public_key=ca_key.public_key, now=now
            ),
        )
        identity = NodeIdentity.issue(ca, agency=code, name=name, now=now)
        official = SigningKey.generate()
        chain = ca.issue_signer(
            agency=code,
            full_name="Nguyễn Văn A",
            position="Chánh Văn phòng",
            public_key=official.public_key,
            now=now,
        )
        parties[code] = (
            identity,
            DocumentSigners(((DocumentRole.COMPETENT_SIGNER, official, chain),)),
        )
    return root.certificate, parties


async def main() -> None:
    clock = TrioWallClock()
    now = dt.datetime.now(dt.UTC)
    root_certificate, parties = certify(now)
    directory = PeerDirectory()  # from configuration until a signed directory exists
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            nodes: dict[AgencyCode, Node] = {}
            for code, (identity, _) in parties.items():
                store = await SQLiteStore.open(Path(tmp) / f"{code}.sqlite")
                key = Ed25519PrivateKey.from_private_bytes(
                    identity.signing_key.ed25519_private_bytes()
                )
                node = Node(
                    NodeConfig(),
                    store=store,
                    network=Libp2pNetwork(Libp2pConfig(listen_host="127.0.0.1"), key),
                    credentials=IdentityCredentials(identity),
                    trust=TrustGate(TrustStore([root_certificate]), clock),
                    directory=directory,
                    clock=clock,
                )
                nodes[code] = await nursery.start(run_node, node, store)
                directory.add(PeerRecord(code, node.peer, tuple(node.listen_addrs)))

            sender, recipient = nodes[GOVERNMENT_OFFICE], nodes[QUANG_NINH]
            envelope = Envelope(
                sender=Organization(code=GOVERNMENT_OFFICE, name="Văn phòng Chính phủ"),
                recipients=(Organization(code=QUANG_NINH, name="UBND tỉnh Quảng Ninh"),),
                number=2019,
                notation="VPCP-KSTT",
                promulgation_date=now.date(),
                subject="Về việc gửi, nhận văn bản điện tử qua Trục liên thông văn bản quốc gia",
                signer=SignerInfo(full_name="Nguyễn Văn A", position="Chánh Văn phòng"),
            )
            attachment = FileSource(
                "huong-dan.txt", "text/plain", "Hướng dẫn kết nối.\n".encode() * 1000
            )
            document = await sender.create_document(
                envelope, [attachment], signer=parties[GOVERNMENT_OFFICE][1]
            )
            handle = await sender.send(document)
            print(f"sent {document.envelope.document_id} as {document.root}")

            # The recipient's software: take the document, register it, acknowledge it.
            async for item in recipient.inbox():
                text = await item.read_file("huong-dan.txt")
                envelope = item.envelope
                print(f"received {envelope.document_id}: {envelope.subject} ({len(text)} bytes)")
                await item.ack()
                break
            for code in (StatusCode.ACCEPTED, StatusCode.ASSIGNED, StatusCode.COMPLETED):
                await recipient.report_status(
                    document.root, code, staff=Staff(name="Trần Thị B", department="Văn thư")
                )

            with trio.fail_after(30):
                await handle.wait()
                receipt = (await handle.receipts())[QUANG_NINH]
                print(f"receipt: {receipt.recipient} received {receipt.root}")
                while (
                    len((trail := await sender.status_trail(document.root, QUANG_NINH)).reports) < 4
                ):
                    await sender.wait_status(document.root)
            print(
                "status trail:",
                " -> ".join(f"{r.code.value} ({r.staff.name or 'node'})" for r in trail.reports),
            )
            nursery.cancel_scope.cancel()


async def run_node(node: Node, store: SQLiteStore, *, task_status: trio.TaskStatus[Node]) -> None:
    async with store, node:
        task_status.started(node)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
