"""``python -m p2pdoc``: compute file CIDs, export a file's blocks, verify a block directory.

Commands::

    python -m p2pdoc cid FILE...              print "<cid>  <file>" per file ("-" = stdin)
    python -m p2pdoc export FILE DIR          write FILE's blocks into DIR, print its CID
    python -m p2pdoc verify DIR [--root CID]  check DIR's blocks (and the file or document CID)

A block directory holds one regular file per block, named by the block's CID in its canonical
text form (multibase base32 lower, ``b...``), containing exactly the block's bytes. Names
starting with ``.`` are ignored (``export`` writes ``.<cid>.tmp`` and renames it into place).
The layout is specified in ``docs/content-addressing.md``.

Exit status: 0 on success, 1 when a file cannot be read or a check fails (each problem is
reported on stderr, naming the CID or file), 2 for bad usage.

Files are read one 256 KiB chunk at a time, never whole; blocks are read one at a time.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO

import trio

from p2pdoc.codecs.cid import Cid, Multicodec
from p2pdoc.content.documents import verify_document
from p2pdoc.content.unixfs import (
    CHUNK_SIZE,
    Block,
    DagLimits,
    DagWalker,
    FileImporter,
    ImportResult,
)
from p2pdoc.errors import InvalidValue, P2pdocError

__all__ = ["main"]

_READ_SIZE = CHUNK_SIZE  # whole-chunk reads become leaves without another copy
_PROG = "python -m p2pdoc"


class _Failure(Exception):
    """A problem to report on stderr (exit status 1)."""


def _report(command: str, message: str) -> None:
    print(f"{_PROG} {command}: {message}", file=sys.stderr)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while data := stream.read(_READ_SIZE):
        yield data


def _import_stream(stream: BinaryIO) -> Iterator[Block | ImportResult]:
    """Yield every block of the stream's DAG, then the result."""
    importer = FileImporter()
    for data in _chunks(stream):
        yield from importer.write(data)
    result = importer.finish()
    yield from result.blocks
    yield result


def _root_of(stream: BinaryIO) -> Cid:
    importer = FileImporter()
    for data in _chunks(stream):
        importer.write(data)
    return importer.finish().root


def _file_cid(name: str) -> Cid:
    if name == "-":
        return _root_of(sys.stdin.buffer)
    with open(name, "rb") as file:
        return _root_of(file)


def _cmd_cid(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        try:
            root = _file_cid(name)
        except OSError as exc:
            _report("cid", f"{name}: {exc.strerror or exc}")
            status = 1
            continue
        print(f"{root}  {name}", flush=True)
    return status


def _write_block(directory: Path, block: Block) -> bool:
    """Write one block file atomically; False if it was already there."""
    name = str(block.cid)
    target = directory / name
    if target.exists():
        return False
    temp = directory / f".{name}.tmp"
    with open(temp, "wb") as file:
        file.write(block.data)
    os.replace(temp, target)
    return True


def _cmd_export(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(args.file, "rb") as file:
            for item in _import_stream(file):
                if isinstance(item, ImportResult):
                    print(f"{item.root}  {args.file}", flush=True)
                else:
                    _write_block(directory, item)
    except OSError as exc:
        _report("export", f"{exc.filename or args.file}: {exc.strerror or exc}")
        return 1
    return 0


def _read_block(directory: Path, cid: Cid, limit: int) -> bytes:
    path = directory / str(cid)
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise _Failure(f"missing block {cid}") from None
    except OSError as exc:
        raise _Failure(f"cannot read block {cid}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise _Failure(f"block {cid} is larger than the {limit}-byte block limit")
    return data


def _check_blocks(directory: Path, limit: int) -> tuple[int, list[str]]:
    """Hash every block file against its name. Returns (blocks checked, problems)."""
    problems: list[str] = []
    count = 0
    with os.scandir(directory) as entries:
        names = sorted((entry.name, entry.is_file()) for entry in entries)
    for name, is_file in names:
        if name.startswith("."):
            continue
        try:
            cid = Cid.parse(name)
        except InvalidValue:
            problems.append(f"{name}: not a block file (its name is not a CID)")
            continue
        if str(cid) != name:
            problems.append(f"{name}: not the canonical name of {cid}")
            continue
        if not is_file:
            problems.append(f"{name}: not a regular file")
            continue
        try:
            cid.verify(_read_block(directory, cid, limit))
        except _Failure as exc:
            problems.append(str(exc))
            continue
        except P2pdocError:
            problems.append(f"bad block {cid}: content does not match its CID")
            continue
        count += 1
    return count, problems


def _check_dag(directory: Path, root: Cid, limits: DagLimits) -> tuple[int, int, int]:
    """Walk the file DAG of ``root``. Returns (file size, blocks walked, distinct blocks)."""
    distinct: set[Cid] = set()
    try:
        walker = DagWalker(root, limits=limits)
        while not walker.done:
            for cid in walker.next_wanted(64):
                walker.receive(cid, _read_block(directory, cid, limits.max_block_size))
                distinct.add(cid)
    except P2pdocError as exc:
        raise _Failure(f"file {root}: {exc}") from exc
    assert walker.file_size is not None
    return walker.file_size, walker.blocks_received, len(distinct)


def _check_document(directory: Path, root: Cid, limits: DagLimits) -> tuple[int, int]:
    """Verify the document whose manifest is ``root``. Returns (files, distinct blocks)."""

    async def get_block(cid: Cid) -> bytes:
        return _read_block(directory, cid, limits.max_block_size)

    try:
        verified = trio.run(partial(verify_document, limits=limits), root, get_block)
    except P2pdocError as exc:
        raise _Failure(f"document {root}: {exc}") from exc
    return len(verified.manifest.files), len(verified.blocks)


def _cmd_verify(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    limits = DagLimits()
    root: Cid | None = None
    if args.root is not None:
        try:
            root = Cid.parse(args.root)
        except InvalidValue as exc:
            _report("verify", str(exc))
            return 2
    try:
        count, problems = _check_blocks(directory, limits.max_block_size)
    except OSError as exc:
        _report("verify", f"{args.dir}: {exc.strerror or exc}")
        return 1
    for problem in problems:
        _report("verify", problem)
    status = 1 if problems else 0
    summary = f"{count} blocks match their CIDs"
    if root is not None:
        try:
            if root.codec is Multicodec.DAG_CBOR:
                files, distinct = _check_document(directory, root, limits)
                summary += f"; document {root} is complete: {files} files in {distinct} blocks"
            else:
                size, _, distinct = _check_dag(directory, root, limits)
                summary += f"; file {root} is complete: {size} bytes in {distinct} blocks"
        except _Failure as exc:
            _report("verify", str(exc))
            return 1
    if status == 0:
        print(f"ok: {summary}")
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="IPFS-compatible content addressing of files (CIDv1, UnixFS, raw leaves).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cid = commands.add_parser("cid", help="print the CID of each file")
    cid.add_argument("files", nargs="+", metavar="FILE", help='a file, or "-" for stdin')
    cid.set_defaults(run=_cmd_cid)

    export = commands.add_parser("export", help="write a file's blocks into a block directory")
    export.add_argument("file", metavar="FILE")
    export.add_argument("dir", metavar="DIR", help="created if missing")
    export.set_defaults(run=_cmd_export)

    verify = commands.add_parser(
        "verify", help="check a block directory (and with --root, that a file DAG is complete)"
    )
    verify.add_argument("dir", metavar="DIR")
    verify.add_argument(
        "--root",
        metavar="CID",
        help="a file, or a document (its manifest CID), whose whole DAG must be present",
    )
    verify.set_defaults(run=_cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    status: int = args.run(args)
    return status
