"""The log file a command works on: resolved as everywhere, checked before it is opened.

A reader opening a directory, a FIFO or a device would fail with an errno message or
block; the command says plainly what is at the path instead. A symlink is followed:
readers read through one (writers refuse to write through one, in the store).
"""

from __future__ import annotations

import stat
from pathlib import Path

from betty_otel._store import resolve_path
from betty_otel.cli.parser import CommandError

__all__ = ["log_file"]


def log_file(file: str | None, *, must_exist: bool = False) -> Path:
    """The path of --file (or the default), if it is a regular file or (unless must_exist) absent.

    Raises:
        CommandError: the path is a directory or not a regular file, or must_exist and
            nothing is there.
        OSError: the path cannot be examined (permission denied, not a directory, ...).
    """
    path = resolve_path(file)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if must_exist:
            msg = f"{path} does not exist"
            raise CommandError(msg) from None
        return path
    if stat.S_ISDIR(mode):
        msg = f"{path} is a directory, not a telemetry file"
        raise CommandError(msg)
    if not stat.S_ISREG(mode):
        msg = f"{path} is not a regular file (a FIFO, socket or device)"
        raise CommandError(msg)
    return path
