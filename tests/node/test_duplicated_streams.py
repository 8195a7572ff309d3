"""Duplicated streams: every session stream reaches the recipient twice.

With ``duplicate_probability=1.0`` the memory router replays each stream a node opens, byte
for byte, to the peer's handler on a path of its own (as a retransmission or an on-path
replay would arrive). The replayed session must not be admitted: its Auth answers the
challenge (nonce) of the original listener, not the fresh one the replica's listener sent.
Documents still arrive exactly once, with receipts that verify.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from p2pdoc.delivery.evidence import Receipt, verify_evidence
from p2pdoc.delivery.states import OutboxState
from p2pdoc.network.memory import Faults
from p2pdoc.node.trustgate import TrustGate
from p2pdoc.simulation import Mesh

from .helpers import envelope, files

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
HA_NAM = "000.00.00.H35"


async def test_replayed_session_streams_are_refused_and_delivery_is_exactly_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p2pdoc.node.sessions")
    mesh = Mesh(seed=11, faults=Faults(latency=0.01, jitter=0.005, duplicate_probability=1.0))
    gov, qn, hn = (mesh.add_agency(code) for code in (GOV, QUANG_NINH, HA_NAM))
    verifier = TrustGate(mesh.trust_store(), mesh.clock)
    recipients = (qn, hn)
    with trio.fail_after(3600):  # virtual seconds
        async with mesh.run():
            handles = []
            for number in range(1, 4):
                document = await mesh.node(gov).create_document(
                    envelope(gov.code, qn.code, hn.code, number=number),
                    files(300, 70_000, seed=number),
                    signer=gov.signers,
                )
                handles.append(await mesh.node(gov).send(document))
            results = [await handle.wait() for handle in handles]
            await trio.sleep(5)  # let every replica run its course
            handed: dict[str, list[str]] = {}
            for agency in recipients:
                with trio.move_on_after(1):
                    async for item in mesh.node(agency).inbox():
                        handed.setdefault(str(agency.code), []).append(str(item.root))
                        await item.ack()
            health = {str(a.code): mesh.node(a).health() for a in (gov, qn, hn)}
            # Refusing a replay leaves the session it copies alone (nodes stopping later
            # break their connections, so this is counted while they run).
            assert mesh.router.stats.broken_connections == 0
    roots = sorted(str(handle.root) for handle in handles)
    for handle, entries in zip(handles, results, strict=True):
        for agency in recipients:
            entry = entries[agency.code]
            assert entry.state is OutboxState.DELIVERED, entry.last_error
            assert entry.attempts == 1  # refusing a replay leaves the real session alone
            assert entry.receipt is not None
            verified = verify_evidence(entry.receipt, verifier)
            assert verified.signer == agency.code
            receipt = Receipt.decode(verified.evidence.body)
            assert receipt.root == handle.root and receipt.recipient == agency.code
    # Exactly once: each inbox holds each document once, handed to the application once.
    for agency in recipients:
        inbox = await agency.store.list_records("inbox", limit=100)
        assert sorted(key for key, _ in inbox) == roots
        assert sorted(handed[str(agency.code)]) == roots
    # Every session stream was replayed, and every replay was refused at admission.
    stats = mesh.router.stats
    sessions = stats.streams - stats.replicas
    assert sessions >= 2 and stats.replicas == sessions
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refusals) == stats.replicas, refusals
    assert all("signature" in text for text in refusals), refusals
    # Each recipient refused the replays it got, and received each document once.
    counts = {code: (h["refused_peers"], h["received"]) for code, h in health.items()}
    assert counts == {GOV: (0, 0), QUANG_NINH: (1, 3), HA_NAM: (1, 3)}
