"""Crash safety with real processes: SIGKILL a writer at random points, then check the file.

A child process (crash_child.py) writes batches (block + record + pin) as fast as it can and
prints each key once ``write`` returned. The parent kills it after a seeded random number of
acknowledgements, reopens the database and checks that every acknowledged batch is there and
intact, that no batch is there in part, that SQLite's integrity check passes and that the store
still takes writes. Each case kills twice on the same file (the second run starts from a
recovered database).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from p2pdoc.store import PutRecord, SQLiteStore
from tests.store.crash_child import block_for

CHILD = Path(__file__).with_name("crash_child.py")


async def _run_and_kill(path: Path, label: str, writers: int, kill_after: int) -> list[str]:
    """Start the child, SIGKILL it after ``kill_after`` acks; return every key it acked."""
    process = await trio.lowlevel.open_process(
        [sys.executable, str(CHILD), str(path), label, str(writers)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    acked: list[str] = []
    buffer = b""
    ready = False

    def take_lines() -> None:
        nonlocal buffer, ready
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line == b"ready":
                ready = True
            else:
                acked.append(line.decode())

    try:
        while len(acked) < kill_after:
            chunk = await process.stdout.receive_some(65536)
            assert chunk, f"the writer exited early with {process.poll()}"
            buffer += chunk
            take_lines()
        process.kill()
        # Lines written before the kill are acknowledgements too; a partial last line is not.
        while chunk := await process.stdout.receive_some(65536):
            buffer += chunk
            take_lines()
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdout.aclose()
    assert ready
    assert process.returncode == -signal.SIGKILL
    return acked


def _raw_integrity_check(path: Path) -> list[tuple[str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


async def _check_after_crash(path: Path, acked: set[str], label: str) -> None:
    assert _raw_integrity_check(path) == [("ok",)]
    async with await SQLiteStore.open(path) as store:
        await store.check_integrity()
        records = dict(await store.list_records("acked", limit=1_000_000))
        missing = acked - set(records)
        assert not missing, f"{len(missing)} acknowledged batches lost, e.g. {min(missing)}"
        total = 0
        for key, value in records.items():
            cid, data = block_for(key)
            assert value == {"cid": cid}
            assert await store.get_block(cid) == data, f"block of {key} damaged"
            assert await store.pinned(key) == {cid}
            total += len(data)
        # Every block belongs to a recorded batch: no batch was applied in part.
        assert await store.block_count() == (len(records), total)
        await store.write([PutRecord("after-crash", label, len(records))])
        assert await store.get_record("after-crash", label) == len(records)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
async def test_sigkill_loses_no_acknowledged_write(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "crash.db"
    acked: set[str] = set()
    with trio.fail_after(90):
        for round_ in range(2):
            label = f"s{seed}r{round_}"
            writers = rng.choice([1, 4, 16])
            kill_after = rng.randint(1, 120)
            keys = await _run_and_kill(path, label, writers, kill_after)
            assert len(keys) >= kill_after
            acked.update(keys)
            await _check_after_crash(path, acked, label)
