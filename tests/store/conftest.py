"""Fixtures yielding each store implementation, so one suite checks them all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from p2pdoc.store import MemoryStore, SQLiteConfig, SQLiteStore, Store

Reopen = Callable[[Store], Awaitable[Store]]

IMPLEMENTATIONS = ["memory", "sqlite"]


async def _open(kind: str, path: Path, quota: int | None) -> Store:
    if kind == "memory":
        return MemoryStore(max_bytes=quota)
    return await SQLiteStore.open(path, config=SQLiteConfig(max_database_bytes=quota))


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
