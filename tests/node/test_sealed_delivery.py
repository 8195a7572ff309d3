"""Confidential documents travel sealed: only the listed recipients' nodes can read them."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pdoc.codecs.cid import Cid
from p2pdoc.content.documents import FileSource
from p2pdoc.content.unixfs import import_file
from p2pdoc.delivery.states import OutboxState
from p2pdoc.errors import PeerUnreachable, PolicyRefused
from p2pdoc.model import AgencyCode, Classification, Envelope, Manifest
from p2pdoc.model.manifest import FileEntry
from p2pdoc.node.context import doc_owner
from p2pdoc.protocol.messages import OfferOutcome
from p2pdoc.simulation import Mesh
from p2pdoc.store.memory import MemoryStore
from p2pdoc.trust.sealing import DocumentSealer, PlainFile, RecipientKey, seal_stream

from .helpers import envelope

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
HA_NAM = "000.00.00.H35"
SECRET_TEXT = "Nội dung mật: kế hoạch phòng chống thiên tai năm 2019.".encode() * 40_000  # ~2.4 MB


def confidential(
    sender: AgencyCode, *recipients: AgencyCode, level: Classification = Classification.CONFIDENTIAL
) -> Envelope:
    return dataclasses.replace(
        envelope(sender, *recipients, subject="Kế hoạch mật về phòng chống thiên tai"),
        classification=level,
    )


async def document_blocks(store: MemoryStore, root: Cid) -> list[bytes]:
    """Every block a node keeps for a document: what it would serve or relay."""
    cids = await store.pinned(doc_owner(root))
    assert cids
    return [await store.get_block(cid) for cid in cids]


@pytest.fixture
def mesh() -> Mesh:
    mesh = Mesh(seed=21)
    for code in (GOV, QUANG_NINH, HA_NAM):
        mesh.add_agency(code)
    return mesh


async def test_confidential_document_is_sealed_and_only_recipients_read_it(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    gov, qn, hn = (mesh.agencies[AgencyCode(c)] for c in (GOV, QUANG_NINH, HA_NAM))
    async with mesh.run():
        document = await mesh.node(gov).create_document(
            confidential(gov.code, qn.code, hn.code),
            [FileSource("ke-hoach.txt", "text/plain", SECRET_TEXT)],
            signer=gov.signers,
        )
        assert document.manifest.seal is not None
        assert "Kế hoạch mật" not in document.manifest_bytes.decode("utf-8", "replace")
        assert [f.name for f in document.manifest.files] == ["sealed-0001"]
        entries = await (await mesh.node(gov).send(document)).wait()
        assert {e.state for e in entries.values()} == {OutboxState.DELIVERED}

        for agency in (qn, hn):
            async for item in mesh.node(agency).inbox():
                assert item.sealed
                assert item.envelope.subject == "Kế hoạch mật về phòng chống thiên tai"
                assert [f.name for f in item.files] == ["ke-hoach.txt"]
                assert await item.read_file("ke-hoach.txt") == SECRET_TEXT
                break
        # What every node stores (and would serve or relay) is ciphertext.
        marker = "phòng chống thiên tai".encode()
        for agency in (gov, qn, hn):
            blocks = await document_blocks(agency.store, document.root)  # type: ignore[arg-type]
            assert not any(marker in block for block in blocks)


async def test_policy_refuses_unsealed_confidential_and_any_secret(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    gov, qn = (mesh.agencies[AgencyCode(c)] for c in (GOV, QUANG_NINH))
    async with mesh.run():
        node = mesh.node(gov)
        plain = await node.create_document(
            confidential(gov.code, qn.code),
            [FileSource("a.txt", "text/plain", b"x")],
            signer=gov.signers,
            seal=False,
        )
        with pytest.raises(PolicyRefused, match="must be sealed"):
            await node.send(plain)
        secret = await node.create_document(
            confidential(gov.code, qn.code, level=Classification.SECRET),
            [FileSource("a.txt", "text/plain", b"x")],
            signer=gov.signers,
            seal=True,
        )
        with pytest.raises(PolicyRefused, match="may not be sent"):
            await node.send(secret)
        assert mesh.node(qn).health()["received"] == 0


async def test_a_seal_the_recipient_cannot_open_is_rejected(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    gov, qn = (mesh.agencies[AgencyCode(c)] for c in (GOV, QUANG_NINH))
    stranger_key = (
        X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    async with mesh.run():
        # Sealed for Quang Ninh's agency code but another key: Quang Ninh's node cannot open it.
        sealer = DocumentSealer([RecipientKey(qn.code, stranger_key)])
        store = MemoryStore()
        ciphertext = b"".join(seal_stream([b"noi dung"], sealer.content_key, file_index=0))
        result = await import_file(ciphertext, store)
        plain = PlainFile(name="a.txt", media_type="text/plain", size=8)
        routing, seal = sealer.seal(confidential(gov.code, qn.code), [plain])
        manifest = Manifest(
            envelope=routing, files=(sealer.sealed_entry(0, plain, result.root),), seal=seal
        )
        assert isinstance(manifest.files[0], FileEntry)
        signatures = gov.signers.sign_document(manifest.root, mesh._now)
        session = await mesh.node(gov)._sessions.get(qn.identity.peer_id)
        answer = await session.offer(manifest.encode(), signatures, [(result.root, ciphertext)])
        assert answer.outcome is OfferOutcome.REJECTED
        assert "NotARecipient" in answer.reason


async def test_sealing_needs_every_recipient_reachable(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    gov, qn = (mesh.agencies[AgencyCode(c)] for c in (GOV, QUANG_NINH))
    async with mesh.run():
        await mesh.crash(qn)
        with pytest.raises(PeerUnreachable, match=r"cannot seal to 000\.00\.00\.H49"):
            await mesh.node(gov).create_document(
                confidential(gov.code, qn.code),
                [FileSource("a.txt", "text/plain", b"x")],
                signer=gov.signers,
            )
