"""The command line, run as a user would: ``python -m p2pdoc`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from p2pdoc.codecs import cbor
from p2pdoc.codecs.cid import Cid, Multicodec
from tests.content.helpers import fixture, vector_bytes

pytestmark = pytest.mark.slow


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "p2pdoc", *args],
        input=stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=120,
        check=False,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


def _vector(name: str) -> dict[str, object]:
    return next(v for v in fixture()["unixfs"]["vectors"] if v["name"] == name)


def _write_vector(directory: Path, name: str) -> tuple[Path, str]:
    vector = _vector(name)
    path = directory / f"{name}.bin"
    path.write_bytes(vector_bytes(str(vector["seed"]), int(vector["length"])))  # type: ignore[call-overload]
    return path, str(vector["root"])


def test_cid_prints_one_line_per_file(tmp_path: Path) -> None:
    files = [_write_vector(tmp_path, name) for name in ("multi-megabyte", "empty", "one-byte")]
    result = _run("cid", *(str(path) for path, _ in files))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{root}  {path}" for path, root in files]


def test_cid_reads_stdin() -> None:
    data = vector_bytes(str(_vector("one-chunk-plus-one")["seed"]), 262145)
    result = _run("cid", "-", stdin=data)
    assert result.stdout == f"{_vector('one-chunk-plus-one')['root']}  -\n"


def test_cid_reports_unreadable_files_and_goes_on(tmp_path: Path) -> None:
    path, root = _write_vector(tmp_path, "one-byte")
    missing = tmp_path / "missing.pdf"
    result = _run("cid", str(missing), str(path))
    assert result.returncode == 1
    assert result.stdout == f"{root}  {path}\n"
    assert str(missing) in result.stderr
    assert "No such file" in result.stderr


def test_cid_streams_a_large_file_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.bin"
    with open(path, "wb") as file:
        file.truncate(256 * 1024 * 1024)  # sparse: cheap to make, 256 MiB to read
    code = (
        "import resource, sys\n"
        "from p2pdoc.content.cli import main\n"
        "main(['cid', '/dev/null'])  # warm up: imports, thread pool, first buffers\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "status = main(['cid', sys.argv[1]])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(after - before, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"  {path}\n")
    growth_kib = int(result.stderr.strip().splitlines()[-1])
    assert growth_kib < 64 * 1024  # the 256 MiB file is never held in memory


def test_export_then_verify(tmp_path: Path) -> None:
    path, root = _write_vector(tmp_path, "multi-megabyte")
    blocks = tmp_path / "blocks"
    result = _run("export", str(path), str(blocks))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{root}  {path}\n"
    assert len(list(blocks.iterdir())) == _vector("multi-megabyte")["block_count"]
    assert (blocks / root).is_file()
    assert _run("export", str(path), str(blocks)).returncode == 0  # idempotent

    result = _run("verify", str(blocks), "--root", root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"ok: 22 blocks match their CIDs; file {root} is complete: 5255225 bytes in 22 blocks\n"
    )
    (blocks / ".partial.tmp").write_bytes(b"ignored")
    assert _run("verify", str(blocks)).returncode == 0


def _exported(tmp_path: Path) -> tuple[Path, str, list[Path]]:
    path, root = _write_vector(tmp_path, "one-chunk-plus-one")
    blocks = tmp_path / "blocks"
    assert _run("export", str(path), str(blocks)).returncode == 0
    leaves = sorted(p for p in blocks.iterdir() if p.name.startswith("bafk"))
    assert len(leaves) == 2
    return blocks, root, leaves


def test_verify_names_a_corrupted_block(tmp_path: Path) -> None:
    blocks, root, leaves = _exported(tmp_path)
    data = bytearray(leaves[0].read_bytes())
    data[100] ^= 0xFF
    leaves[0].write_bytes(bytes(data))
    for args in ((), ("--root", root)):
        result = _run("verify", str(blocks), *args)
        assert result.returncode == 1
        assert f"bad block {leaves[0].name}: content does not match its CID" in result.stderr
        assert not result.stdout


def test_verify_names_a_missing_block(tmp_path: Path) -> None:
    blocks, root, leaves = _exported(tmp_path)
    leaves[1].unlink()
    assert _run("verify", str(blocks)).returncode == 0  # what is there is fine
    result = _run("verify", str(blocks), "--root", root)
    assert result.returncode == 1
    assert f"missing block {leaves[1].name}" in result.stderr


def test_verify_rejects_files_not_named_by_a_cid(tmp_path: Path) -> None:
    blocks, _, leaves = _exported(tmp_path)
    (blocks / "notes.txt").write_text("hello")
    upper = blocks / ("B" + leaves[0].name[1:].upper())
    upper.write_bytes(leaves[0].read_bytes())
    result = _run("verify", str(blocks))
    assert result.returncode == 1
    assert "notes.txt: not a block file" in result.stderr
    assert f"{upper.name}: not the canonical name of {leaves[0].name}" in result.stderr


def test_verify_reports_a_dag_cbor_root_that_is_not_a_document(tmp_path: Path) -> None:
    blocks, _, _ = _exported(tmp_path)
    manifest = cbor.encode({"files": []})
    cid = Cid.of(Multicodec.DAG_CBOR, manifest)
    (blocks / str(cid)).write_bytes(manifest)
    result = _run("verify", str(blocks), "--root", str(cid))
    assert result.returncode == 1
    assert f"document {cid}: invalid manifest" in result.stderr


def test_verify_reports_bad_arguments(tmp_path: Path) -> None:
    blocks, _, _ = _exported(tmp_path)
    result = _run("verify", str(blocks), "--root", "Qmnotacid")
    assert result.returncode == 2
    assert "invalid CID" in result.stderr
    result = _run("verify", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "absent" in result.stderr


def test_usage_errors_exit_2() -> None:
    result = _run()
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert _run("cid").returncode == 2
