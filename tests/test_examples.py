"""The examples run as documented (they are part of the documentation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_embedding_example_delivers_and_shows_the_trail() -> None:
    out = run(str(EXAMPLES / "embedding.py"))
    assert "received 000.00.00.G22," in out
    assert "receipt: 000.00.00.H49 received bafy" in out
    assert "status trail: 01 (node) -> 03 (Trần Thị B) -> 04 (Trần Thị B) -> 06 (Trần Thị B)" in out


def test_simulation_example_delivers_to_every_agency() -> None:
    out = run(
        str(EXAMPLES / "simulate_directive.py"),
        "--districts",
        "3",
        "--communes",
        "6",
        "--seeds",
        "1",
    )
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["seed", "delivered"]
    assert lines[1].split()[1] == "10/10"
