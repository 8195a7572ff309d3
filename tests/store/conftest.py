"""Fixtures yielding each store implementation, so one suite checks them all."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from p2pdoc.store import MemoryStore, SQLiteConfig, SQLiteStore, Store

Reopen = Callable[[Store], Awaitable[Store]]

# The SQLite store three ways: as configured by default (small reads and writes on the event
# loop's thread); everything in threads (loop_*_bytes=0); and with limits so small that most
# reads start on the loop and finish in a worker, and most groups mix batches applied on the
# loop with batches applied by the writer thread. Values: (loop_read_bytes, loop_write_bytes).
SQLITE_LOOP_BYTES: dict[str, tuple[int, int] | None] = {
    "sqlite": None,
    "sqlite-threads": (0, 0),
    "sqlite-mixed": (96, 2048),
}

IMPLEMENTATIONS = ["memory", *SQLITE_LOOP_BYTES]


def sqlite_config(kind: str, *, max_database_bytes: int | None = None) -> SQLiteConfig:
    """The :class:`SQLiteConfig` of an implementation named in :data:`SQLITE_LOOP_BYTES`."""
    config = SQLiteConfig(max_database_bytes=max_database_bytes)
    loop_bytes = SQLITE_LOOP_BYTES[kind]
    if loop_bytes is None:
        return config
    read, write = loop_bytes
    return dataclasses.replace(config, loop_read_bytes=read, loop_write_bytes=write)


async def _open(kind: str, path: Path, quota: int | None) -> Store:
    if kind == "memory":
        return MemoryStore(max_bytes=quota)
    return await SQLiteStore.open(path, config=sqlite_config(kind, max_database_bytes=quota))


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each implementation, closed after the test."""
    opened = await _open(kind, tmp_path / "node.db", None)
    async with opened:
        yield opened


@pytest.fixture
def reopen(tmp_path: Path) -> Reopen:
    """Close a store and open it again on the same data, as a restarted node would."""

    async def reopen(old: Store) -> Store:
        await old.aclose()
        if isinstance(old, MemoryStore):
            return old.reopen()
        assert isinstance(old, SQLiteStore)
        return await SQLiteStore.open(old.path, config=old.config)

    return reopen


@pytest.fixture
def open_with_quota(kind: str, tmp_path: Path) -> Callable[[int], Awaitable[Store]]:
    """Open a store of each implementation holding at most about ``quota`` bytes."""

    async def open_with_quota(quota: int) -> Store:
        return await _open(kind, tmp_path / "quota.db", quota)

    return open_with_quota
