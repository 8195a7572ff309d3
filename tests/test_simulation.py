"""Simulated meshes repeat exactly for a given seed (so studies can be reproduced)."""

from __future__ import annotations

import trio
import trio.testing

from p2pdoc import Faults, FileSource, Mesh

from .node.helpers import envelope


async def scenario(seed: int) -> list[tuple[str, tuple[tuple[int, str, str], ...]]]:
    mesh = Mesh(seed=seed, faults=Faults(latency=0.01, jitter=0.02, reset_probability=0.05))
    sender = mesh.add_agency("000.00.00.G22")
    codes = [mesh.add_agency(f"000.00.{d:02d}.H35").code for d in range(1, 5)]
    async with mesh.run():
        await mesh.crash(codes[0])
        document = await mesh.node(sender).create_document(
            envelope(sender.code, *codes),
            [FileSource("a.pdf", "application/pdf", bytes(700_000))],
            signer=sender.signers,
        )
        handle = await mesh.node(sender).send(document)
        await trio.sleep(30)
        await mesh.start(codes[0])
        entries = await handle.wait()
    return sorted((str(code), entry.history) for code, entry in entries.items())


def run(seed: int) -> list[tuple[str, tuple[tuple[int, str, str], ...]]]:
    return trio.run(scenario, seed, clock=trio.testing.MockClock(autojump_threshold=0))


def test_same_seed_same_history_different_seed_different_history() -> None:
    first = run(4)
    assert run(4) == first
    assert run(5) != first
    assert all(history[-1][1] == "delivered" for _, history in first)


async def test_a_simulation_leaves_trios_own_task_shuffling_as_it_found_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    generator = trio._core._run._r  # the generator trio shuffles ready tasks with
    before = generator.getstate()
    mesh = Mesh(seed=3)
    mesh.add_agency("000.00.00.G22")
    async with mesh.run():
        await trio.sleep(1)
        assert generator.getstate() != before  # seeded for the simulation
    assert generator.getstate() == before
