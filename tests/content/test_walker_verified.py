"""A walker fed blocks its caller already verified skips hashing them, and only then."""

from __future__ import annotations

import pytest

from p2pdoc.content.unixfs import DagWalker, FileImporter
from p2pdoc.errors import ContentMismatch


def test_verified_blocks_are_not_hashed_again_but_others_are() -> None:
    importer = FileImporter()
    blocks = {b.cid: b.data for b in importer.write(bytes(range(256)) * 5000)}
    result = importer.finish()
    blocks.update((b.cid, b.data) for b in result.blocks)

    trusting = DagWalker(result.root)
    while not trusting.done:
        for cid in trusting.next_wanted(16):
            trusting.receive(cid, blocks[cid], verified=True)
    assert trusting.file_size == 256 * 5000

    checking = DagWalker(result.root)
    (root,) = checking.next_wanted(1)
    checking.receive(root, blocks[root])
    leaf = checking.next_wanted(1)[0]
    with pytest.raises(ContentMismatch, match=str(leaf)):
        checking.receive(leaf, b"x" + blocks[leaf][1:])
