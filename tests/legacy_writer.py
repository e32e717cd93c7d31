"""The original Betty writer, as the old ``telemetry.capture`` skill does it.

Open the file (created if missing), ``flock(LOCK_EX)`` it, ``json.load`` the whole
array (an empty file is ``[]``), append the entry, then rewrite the file in place
with ``json.dump(indent=2)`` and unlock. The store must coexist with this writer:
both lock the same file, and whatever one writes the other reads and keeps.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


def legacy_append(path: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """Append one entry the way the original Betty writer does: load, append, rewrite."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            text = handle.read()
            data: list[Any] = json.loads(text) if text.strip() else []
            data.append(entry)
            handle.seek(0)
            handle.truncate()
            json.dump(data, handle, indent=2)
            handle.flush()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
