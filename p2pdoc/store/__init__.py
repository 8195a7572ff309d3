"""Node state behind one interface: memory and SQLite implementations."""

from p2pdoc.store.base import (
    MAX_RECORD_SIZE,
    DeleteRecord,
    DocumentRecord,
    Pin,
    PutBlock,
    PutDocument,
    PutRecord,
    Store,
    Unpin,
    WriteOp,
    pins_for,
)
from p2pdoc.store.memory import MemoryStore
from p2pdoc.store.sqlite import SQLiteConfig, SQLiteStore, WriterStats

__all__ = [
    "MAX_RECORD_SIZE",
    "DeleteRecord",
    "DocumentRecord",
    "MemoryStore",
    "Pin",
    "PutBlock",
    "PutDocument",
    "PutRecord",
    "SQLiteConfig",
    "SQLiteStore",
    "Store",
    "Unpin",
    "WriteOp",
    "WriterStats",
    "pins_for",
]
