"""Content addressing: UnixFS files as IPFS-compatible DAGs of CIDv1 blocks.

:mod:`p2pdoc.content.dagpb` holds the pure dag-pb and UnixFS codecs,
:mod:`p2pdoc.content.unixfs` the importer, the DAG walker and their trio adapters.
The format is specified in ``docs/content-addressing.md``.
"""

from p2pdoc.content.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    Block,
    DagLimits,
    DagWalker,
    FileImporter,
    GetBlock,
    ImportResult,
    ImportSource,
    import_file,
    list_blocks,
    read_file,
)

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "Block",
    "DagLimits",
    "DagWalker",
    "FileImporter",
    "GetBlock",
    "ImportResult",
    "ImportSource",
    "import_file",
    "list_blocks",
    "read_file",
]
