"""Backups that cannot be written, and backups that are not backups: typed errors, and a
running node that keeps running."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from p2pdoc_node.config import CONFIG_FILE, Settings, parse_settings
from p2pdoc_node.daemon import Daemon
from p2pdoc_node.datadir import BACKUP_MANIFEST, create_backup, restore_backup

from p2pdoc.errors import ConfigError, StoreError

from .helpers import GOV


def blocked_settings(base: Path, **backup: object) -> Settings:
    """Settings whose backup directory lies under a regular file (so it cannot be made)."""
    (base / "api-token").write_text("token\n", encoding="utf-8")
    document = {"node": {"agency": GOV}, "backup": {"dir": "api-token/backups", **backup}}
    return parse_settings(document, path=base / CONFIG_FILE, env={})


async def test_a_backup_that_cannot_be_written_is_a_store_error(tmp_path: Path) -> None:
    settings = blocked_settings(tmp_path)
    target = settings.resolve(settings.backup.dir) / "backup-1"
    with pytest.raises(StoreError, match="cannot write the backup"):
        await create_backup(settings, target, agency=GOV, peer="")
    assert not target.exists()


async def test_a_failing_periodic_backup_leaves_the_daemon_running(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(blocked_settings(tmp_path, interval=60.0))
    with caplog.at_level(logging.WARNING, logger="p2pdoc_node.daemon"):
        # Three periods of virtual time: each backup fails, the loop carries on.
        with trio.move_on_after(3 * 60.0 + 1) as scope:
            await daemon._backup_loop()
    assert scope.cancelled_caught
    failures = [r for r in caplog.records if r.getMessage().startswith("periodic backup failed")]
    assert len(failures) == 3


@pytest.mark.parametrize("manifest", ["[]", '"backup"', '{"files": []}', "{"])
async def test_restore_refuses_a_manifest_that_is_not_one(tmp_path: Path, manifest: str) -> None:
    source = tmp_path / "backup"
    source.mkdir()
    (source / BACKUP_MANIFEST).write_text(manifest, encoding="utf-8")
    with pytest.raises(ConfigError, match="not a p2pdoc-node backup"):
        await restore_backup(source, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
