"""The log file a command works on: resolved as everywhere, checked before it is opened.

A reader opening a directory, a FIFO or a device would fail with an errno message or
block; the command says plainly what is at the path instead. A symlink is followed:
readers read through one (writers refuse to write through one, in the store).

A log that does not exist is an error for the commands that read or check it (exit
status 1, the path on stderr): a mistyped ``--file`` must not look like an empty log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from betty_otel._store import log_files, resolve_path
from betty_otel.cli.commandline import CommandError

__all__ = ["log_exists", "log_file"]


def log_exists(path: Path) -> bool:
    """True when the log's file, or one of its rotated backups, is there."""
    return os.path.lexists(path) or len(log_files(path)) > 1


def _missing_text(path: Path, given: str | None) -> str:
    """Why the log at path is not there and where to look, for a message."""
    if given:
        return f"{path} does not exist (check the --file path)"
    return (
        f"{path} does not exist: nothing has been recorded there yet (the log is"
        " $BETTY_TELEMETRY_FILE, else registry/telemetry.json of $BETTY_HOME or of the"
        " enclosing Betty repository; --file chooses another)"
    )


def log_file(file: str | None, *, must_exist: bool) -> Path:
    """The path of --file (or the default), if it is a regular file or (unless must_exist) absent.

    A log whose current file is absent but has rotated backups exists.

    Raises:
        CommandError: the path is a directory or not a regular file, or must_exist and
            neither the file nor a rotated backup of it is there.
        OSError: the path cannot be examined (permission denied, not a directory, ...).
    """
    path = resolve_path(file)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if must_exist and path.is_symlink():
            msg = f"{path} is a symbolic link to {path.readlink()}, which does not exist"
            raise CommandError(msg) from None
        if must_exist and not log_exists(path):
            raise CommandError(_missing_text(path, file)) from None
        return path
    if stat.S_ISDIR(mode):
        msg = f"{path} is a directory, not a telemetry file"
        raise CommandError(msg)
    if not stat.S_ISREG(mode):
        msg = f"{path} is not a regular file (a FIFO, socket or device)"
        raise CommandError(msg)
    return path
