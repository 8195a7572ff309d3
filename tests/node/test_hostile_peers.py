"""Hostile and broken peers: each is refused with a clear reason; the node keeps serving."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.codecs.frames import encode_frame
from p2pdoc.delivery.evidence import sign_batch
from p2pdoc.delivery.states import OutboxState
from p2pdoc.errors import AdmissionRefused, NotFound, PeerUnreachable
from p2pdoc.model import AgencyCode
from p2pdoc.model.ids import PeerId
from p2pdoc.network.memory import MemoryNetwork, memory_addr
from p2pdoc.node.context import doc_owner
from p2pdoc.node.trustgate import IdentityCredentials
from p2pdoc.protocol.messages import OfferOutcome
from p2pdoc.protocol.session import establish
from p2pdoc.simulation import Mesh
from p2pdoc.store.base import DocumentRecord, Pin, PutBlock, PutDocument

from .helpers import envelope, files

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
HA_NAM = "000.00.00.H35"
LAO_CAI = "000.00.00.H41"


class AcceptAnything:
    """An attacker's gatekeeper: it does not care whom it talks to."""

    def admit(
        self, chain: object, peer: PeerId, payload: bytes, signature: bytes
    ) -> tuple[AgencyCode, object]:
        return AgencyCode(GOV), None


@pytest.fixture
def mesh() -> Mesh:
    mesh = Mesh(seed=3)
    for code in (GOV, QUANG_NINH, HA_NAM, LAO_CAI):
        mesh.add_agency(code)
    return mesh


async def offer_raw(
    mesh: Mesh, sender: str, recipient: str, manifest: bytes, signatures: bytes
) -> tuple[OfferOutcome, str]:
    session = await mesh.node(sender)._sessions.get(
        mesh.agencies[AgencyCode(recipient)].identity.peer_id
    )
    result = await session.offer(manifest, signatures)
    return result.outcome, result.reason


async def good_delivery_still_works(mesh: Mesh) -> None:
    gov = mesh.agencies[AgencyCode(GOV)]
    document = await mesh.node(gov).create_document(
        envelope(gov.code, AgencyCode(QUANG_NINH), number=99), files(100), signer=gov.signers
    )
    handle = await mesh.node(gov).send(document)
    entries = await handle.wait()
    assert entries[AgencyCode(QUANG_NINH)].state is OutboxState.DELIVERED


async def test_offer_for_a_document_not_addressed_to_the_node(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        hn = mesh.agencies[AgencyCode(HA_NAM)]
        document = await mesh.node(hn).create_document(
            envelope(hn.code, AgencyCode(LAO_CAI)), files(10), signer=hn.signers
        )
        outcome, reason = await offer_raw(
            mesh, HA_NAM, QUANG_NINH, document.manifest_bytes, document.signatures
        )
        assert outcome is OfferOutcome.REJECTED
        assert "not a recipient" in reason
        assert mesh.node(QUANG_NINH).health()["received"] == 0
        await good_delivery_still_works(mesh)


async def test_certified_peer_cannot_send_in_another_agencys_name(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov = mesh.agencies[AgencyCode(GOV)]
        document = await mesh.node(gov).create_document(
            envelope(gov.code, AgencyCode(QUANG_NINH)), files(10), signer=gov.signers
        )
        # Ha Nam's node replays a Government document as if it were the sender.
        outcome, reason = await offer_raw(
            mesh, HA_NAM, QUANG_NINH, document.manifest_bytes, document.signatures
        )
        assert outcome is OfferOutcome.REJECTED
        assert "from 000.00.00.G22, the offer from 000.00.00.H35" in reason


async def test_signatures_over_another_document_are_rejected(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov = mesh.agencies[AgencyCode(GOV)]
        node = mesh.node(gov)
        first = await node.create_document(
            envelope(gov.code, AgencyCode(QUANG_NINH), number=1), files(10), signer=gov.signers
        )
        second = await node.create_document(
            envelope(gov.code, AgencyCode(QUANG_NINH), number=2), files(10), signer=gov.signers
        )
        outcome, reason = await offer_raw(
            mesh, GOV, QUANG_NINH, second.manifest_bytes, first.signatures
        )
        assert outcome is OfferOutcome.REJECTED
        assert "SignatureRootMismatch" in reason


async def test_signer_of_another_agency_is_rejected(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov, hn = mesh.agencies[AgencyCode(GOV)], mesh.agencies[AgencyCode(HA_NAM)]
        # A Government document signed by a Ha Nam official.
        document = await mesh.node(gov).create_document(
            envelope(gov.code, AgencyCode(QUANG_NINH)), files(10), signer=hn.signers
        )
        handle = await mesh.node(gov).send(document)
        entries = await handle.wait()
        entry = entries[AgencyCode(QUANG_NINH)]
        assert entry.state is OutboxState.FAILED
        assert "SignerNotAuthorised" in entry.last_error


async def test_corrupt_block_from_the_sender_is_refused_then_delivery_recovers(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov = mesh.agencies[AgencyCode(GOV)]
        node = mesh.node(gov)
        document = await node.create_document(
            envelope(gov.code, AgencyCode(QUANG_NINH)), files(600_000), signer=gov.signers
        )
        store = gov.store
        real_get = store.get_block
        corrupt = {"left": 2}

        async def flaky_get(cid: Cid) -> bytes:
            data = await real_get(cid)
            if cid.codec is Multicodec.RAW and corrupt["left"] > 0:
                corrupt["left"] -= 1
                return data[:-1] + bytes([data[-1] ^ 1])
            return data

        store.get_block = flaky_get  # type: ignore[method-assign]
        handle = await node.send(document)
        entries = await handle.wait()
        entry = entries[AgencyCode(QUANG_NINH)]
        assert entry.state is OutboxState.DELIVERED
        assert entry.attempts >= 2  # the corrupt attempts failed and were retried
        assert any("sent a corrupt block" in note for _, _, note in entry.history), entry.history


async def test_file_larger_than_its_manifest_entry_is_refused(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov, qn = mesh.agencies[AgencyCode(GOV)], mesh.agencies[AgencyCode(QUANG_NINH)]
        node = mesh.node(gov)
        real = await node.create_document(
            envelope(gov.code, qn.code), files(600_000), signer=gov.signers
        )
        # The same file DAG announced as 10 bytes: the recipient would fetch and store 60,000
        # times what the offer declared (and what its size limits were checked against).
        (entry,) = real.manifest.files
        manifest = dataclasses.replace(real.manifest, files=(dataclasses.replace(entry, size=10),))
        manifest_bytes = manifest.encode()
        root = Cid.of(Multicodec.DAG_CBOR, manifest_bytes)
        signatures = gov.signers.sign_document(root, node._ctx.now())
        record = DocumentRecord(
            root=root,
            document_id=str(manifest.envelope.document_id),
            sender=str(gov.code),
            manifest=manifest_bytes,
            signatures=signatures,
            created_at=0,
        )
        await gov.store.write(
            [
                PutBlock(root, manifest_bytes),
                Pin(doc_owner(root), (root, *real.blocks)),
                PutDocument(record),
            ]
        )
        held = await qn.store.block_count()
        outcome, reason = await offer_raw(mesh, GOV, QUANG_NINH, manifest_bytes, signatures)
        assert outcome is OfferOutcome.REJECTED
        assert "file size" in reason
        with pytest.raises(NotFound):
            await qn.store.get_document(root)
        # Refused for good: nothing of it is kept (what was fetched goes with the next
        # housekeeping round).
        assert await mesh.node(qn).inbox_entry(root) is None
        assert await qn.store.pinned(doc_owner(root)) == set()
        await mesh.node(qn).housekeeping()
        assert await qn.store.block_count() == held
        await good_delivery_still_works(mesh)


async def test_only_the_sender_gets_the_receipt_of_a_delivered_document(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov = mesh.agencies[AgencyCode(GOV)]
        document = await mesh.node(gov).create_document(
            envelope(gov.code, AgencyCode(QUANG_NINH), AgencyCode(HA_NAM)),
            files(10),
            signer=gov.signers,
        )
        entries = await (await mesh.node(gov).send(document)).wait()
        assert {e.state for e in entries.values()} == {OutboxState.DELIVERED}
        # Ha Nam, a co-recipient, holds the manifest and signatures and offers them on.
        outcome, reason = await offer_raw(
            mesh, HA_NAM, QUANG_NINH, document.manifest_bytes, document.signatures
        )
        assert outcome is OfferOutcome.REJECTED
        assert f"from {GOV}, the offer from {HA_NAM}" in reason
        # The sender itself still gets the receipt it was given.
        outcome, _ = await offer_raw(
            mesh, GOV, QUANG_NINH, document.manifest_bytes, document.signatures
        )
        assert outcome is OfferOutcome.DELIVERED


async def test_receipt_signed_by_the_wrong_node_is_not_accepted(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov, qn, hn = (mesh.agencies[AgencyCode(c)] for c in (GOV, QUANG_NINH, HA_NAM))
        receiver = mesh.node(qn)._receiver
        real_sign = receiver._batcher.sign

        async def forged_sign(bodies: list[bytes]) -> list[bytes]:
            # Ha Nam's node signs Quang Ninh's receipt.
            return sign_batch(bodies, IdentityCredentials(hn.identity), 1_552_348_800_000)

        receiver._batcher.sign = forged_sign  # type: ignore[method-assign]
        document = await mesh.node(gov).create_document(
            envelope(gov.code, qn.code), files(10), signer=gov.signers
        )
        handle = await mesh.node(gov).send(document, deadline=60)
        entries = await handle.wait()
        entry = entries[qn.code]
        assert entry.state is OutboxState.FAILED
        assert "receipt" in entry.last_error
        receiver._batcher.sign = real_sign  # type: ignore[method-assign]


async def test_garbage_frames_end_only_that_session(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        hn = mesh.agencies[AgencyCode(HA_NAM)]
        session = await mesh.node(hn)._sessions.get(
            mesh.agencies[AgencyCode(QUANG_NINH)].identity.peer_id
        )
        await session._stream.send_all(encode_frame(b"\x93\x63\x01\x02"))  # unknown message type 99
        await session.wait_closed()
        await good_delivery_still_works(mesh)


async def test_uncertified_peer_is_refused_at_admission(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    outsider = Mesh(seed=9)  # its own root CA: certificates the mesh does not trust
    stranger = outsider.add_agency(QUANG_NINH)
    async with mesh.run():
        network = MemoryNetwork(mesh.router, stranger.identity.peer_id)
        async with trio.open_nursery() as nursery:
            await nursery.start(network.serve)
            gov_peer = mesh.agencies[AgencyCode(GOV)].identity.peer_id
            network.add_addrs(gov_peer, [memory_addr(gov_peer)])
            stream = await network.open_stream(
                mesh.agencies[AgencyCode(GOV)].identity.peer_id, mesh.config.protocol
            )
            with pytest.raises(AdmissionRefused, match="unknown-issuer"):
                await establish(
                    stream,
                    local=stranger.identity.peer_id,
                    remote=mesh.agencies[AgencyCode(GOV)].identity.peer_id,
                    credentials=IdentityCredentials(stranger.identity),
                    gatekeeper=AcceptAnything(),
                    handler=mesh.node(GOV),
                )
            nursery.cancel_scope.cancel()
        assert mesh.node(GOV).health()["refused_peers"] == 1


async def test_revoked_node_is_refused_and_cannot_be_delivered_to(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        mesh.revoke(LAO_CAI)
        gov = mesh.agencies[AgencyCode(GOV)]
        document = await mesh.node(gov).create_document(
            envelope(gov.code, AgencyCode(LAO_CAI)), files(10), signer=gov.signers
        )
        handle = await mesh.node(gov).send(document, deadline=30)
        entries = await handle.wait()
        entry = entries[AgencyCode(LAO_CAI)]
        assert entry.state is OutboxState.FAILED
        assert "revoked" in entry.last_error
        with pytest.raises(PeerUnreachable, match="revoked"):
            await mesh.node(LAO_CAI)._sessions.get(gov.identity.peer_id)


async def test_a_node_revoked_while_connected_loses_its_sessions_at_once(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    async with mesh.run():
        gov, lc = mesh.agencies[AgencyCode(GOV)], mesh.agencies[AgencyCode(LAO_CAI)]
        document = await mesh.node(gov).create_document(
            envelope(gov.code, lc.code), files(10), signer=gov.signers
        )
        entries = await (await mesh.node(gov).send(document)).wait()
        assert entries[lc.code].state is OutboxState.DELIVERED
        session = mesh.node(gov)._sessions.find(lc.identity.peer_id)
        assert session is not None
        mesh.revoke(LAO_CAI)
        # Not at its next dial: now, with the reason.
        assert session.closed
        assert isinstance(session.close_reason, AdmissionRefused)
        assert "revoked" in str(session.close_reason)
        assert mesh.node(gov)._sessions.find(lc.identity.peer_id) is None
        # Sessions between agencies still in good standing are left alone.
        assert mesh.node(gov).readmit_peers() == 0
        await good_delivery_still_works(mesh)


async def test_peer_sending_an_oversized_frame_during_admission_is_unreachable(
    mesh: Mesh, autojump_clock: trio.testing.MockClock
) -> None:
    """A frame over the limit before admission is the peer's fault like any other broken
    handshake: the dialler gets PeerUnreachable and the connection is dropped."""
    stranger = Mesh(seed=9).add_agency(QUANG_NINH)
    async with mesh.run():
        network = MemoryNetwork(mesh.router, stranger.identity.peer_id)

        async def oversized(peer: PeerId, stream: trio.abc.Stream) -> None:
            await stream.send_all(b"\xff\xff\xff\xf0")
            await stream.receive_some()

        network.set_handler(mesh.config.protocol, oversized)
        async with trio.open_nursery() as nursery:
            await nursery.start(network.serve)
            gov = mesh.node(GOV)
            gov._network.add_addrs(
                stranger.identity.peer_id, [memory_addr(stranger.identity.peer_id)]
            )
            with trio.fail_after(30), pytest.raises(PeerUnreachable, match="frame"):
                await gov._sessions.get(stranger.identity.peer_id)
            assert gov.health()["refused_peers"] == 1
            nursery.cancel_scope.cancel()
        await good_delivery_still_works(mesh)
