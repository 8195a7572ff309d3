"""Logging for the daemon: one line per event, as text or as JSON.

Goals: the daemon and the library log through :mod:`logging`; the operator picks ``text``
(readable, for a terminal or journald) or ``json`` (one object per line with ``ts``,
``level``, ``logger``, ``msg`` and any structured fields passed as ``extra``), a level, and
standard error or a file. Never logged: keys, passphrases, the API token, document contents.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from pathlib import Path
from typing import Final

__all__ = ["JsonFormatter", "setup_logging"]

_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
_HANDLER_NAME: Final = "p2pdoc-node"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; ``extra`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text", file: Path | None = None) -> None:
    """Send the root logger's records at ``level`` and above to standard error or ``file``.

    Replaces a handler installed by an earlier call (so a process may reconfigure).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8")
        if file is not None
        else logging.StreamHandler(sys.stderr)
    )
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Hypercorn's access log repeats what the API's own request log says.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
