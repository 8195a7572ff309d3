"""``p2pdoc-node demo`` in a subprocess: the whole hierarchy exchanges documents, prints its
receipts, status trails and dashboards, and stops by itself after ``--duration`` or cleanly
on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from .processes import SCRIPT, TIMEOUT, Lines

pytestmark = pytest.mark.slow

CODES = (
    "000.00.00.G22", "000.00.00.H49", "000.00.00.H35", "000.00.05.H49", "000.00.03.H35",
    "001.00.05.H49", "007.00.03.H35",
)  # fmt: skip


def test_demo_runs_the_hierarchy_and_exits_after_its_duration(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "demo", "--dir", str(tmp_path / "demo"), "--duration", "15"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "demo complete" in out, out
    assert "--duration 15 s reached: stopping" in out and "all nodes stopped" in out
    for code in CODES:
        assert re.search(rf"{re.escape(code)} .*\n\s+API http://127\.0\.0\.1:\d+ +token \S+", out)
        assert (tmp_path / "demo" / code / "node.sqlite").exists()
    assert out.count("/dashboard#token=") == len(CODES)
    # Directives went down every level and reports came back up, each with its receipt...
    assert out.count(": sent directive") == 5 and out.count(": sent report") == 6
    assert out.count(": receipt from") == 12
    # ... and every trail, at every sender, ended in 06.
    assert out.count("-> 06 (completed)") == 12
    assert "VPCP: status from UBND-QN on 000.00.00.G22" in out
    assert "Traceback" not in done.stderr


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "demo", "--dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        out = Lines(process.stdout)
        out.expect("nodes running")
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=TIMEOUT)
        printed = out.rest()
        errors = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)
        process.stdout.close()
        process.stderr.close()
    assert code == 0, printed + errors
    assert "interrupted: stopping" in printed and "all nodes stopped" in printed
    assert "Traceback" not in errors
