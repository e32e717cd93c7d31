"""A new, empty log at the path: created whole, and put in place of a rotated or foreign file.

The original Betty writer creates the log only when the path is missing (``[]``, written
without the lock and truncating whatever is there by then), and fails on any file
``json.load`` rejects, an empty one too. So betty_otel never leaves the path missing or
empty: a new log is written whole (`EMPTY_ARRAY`) under a temporary name beside it, then
linked to the path (creation: never over a file that is there) or renamed over it
(rotation and moving aside, once the current file also has its new name as a hard link).
A crash at any step leaves the path as it was or holding a valid JSON array; at worst a
temporary ``.telemetry.json.new-*`` file of 4 bytes stays beside it. Where hard links are
not supported, the current file is renamed and the new one created in place, which leaves
the path missing for a moment.

Every function here runs under the writers' lock on the current file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Final

from betty_otel._store.files import backup_path, fsync_dir, pwrite_all, write_private

__all__ = ["EMPTY_ARRAY", "create_log", "replace_with_new", "shift_backups"]

EMPTY_ARRAY: Final = b"[\n]\n"
"""What a new log holds: an empty array that json.load and the old writers read."""

_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
)
"""link(2) errors of a file system (or a policy) without hard links: fall back to renames."""


def _prepared(path: Path, *, sync: bool) -> Path:
    """A new private file beside path holding an empty array, under a name no one uses."""
    temp = path.with_name(f".{path.name}.new-{os.getpid()}-{os.urandom(4).hex()}")
    write_private(temp, EMPTY_ARRAY, sync=sync)
    return temp


def create_log(path: Path, *, sync: bool) -> None:
    """Create the log holding an empty array, whole or not at all; a file there is kept.

    Missing folders are created 0700 (with sync, flushed to disk).

    Raises:
        OSError: the folder is not writable, the disk is full, ... (nothing is left behind).
    """
    _make_folders(path.parent, sync=sync)
    temp = _prepared(path, sync=sync)
    try:
        os.link(temp, path, follow_symlinks=False)
    except FileExistsError:
        pass  # another writer (or an old one) created it first: it is the log
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        _create_in_place(path)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _make_folders(parent: Path, *, sync: bool) -> None:
    """Create the missing folders down to parent, each 0700."""
    if parent.exists():
        return
    # mkdir(parents=True) creates missing ancestors with the umask's mode, not 0o700.
    for folder in [*reversed(parent.parents), parent]:
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)
    if sync:
        fsync_dir(parent.parent if parent.parent != parent else parent)


def _create_in_place(path: Path) -> None:
    """Create path exclusively and write the empty array (no hard links here)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    try:
        pwrite_all(fd, EMPTY_ARRAY, 0)
    except BaseException:
        with contextlib.suppress(OSError):  # never an empty file at the path
            path.unlink()
        raise
    finally:
        os.close(fd)


def replace_with_new(path: Path, keep_as: Path, *, sync: bool) -> None:
    """Give the current file the name keep_as as well, then put a new empty log at path.

    keep_as must not exist. The path always names a valid log: the current file until the
    rename puts the new one over it. Writers that opened the current file before keep
    writing to it under its new name (an old Betty writer waiting for the lock does).

    Raises:
        OSError: the rename or the link failed; the path still names the current file.
    """
    temp = _prepared(path, sync=sync)
    linked = False
    try:
        try:
            os.link(path, keep_as, follow_symlinks=False)
            linked = True
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            path.rename(keep_as)  # no hard links: the path is missing until the next line
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        if linked:  # one file under two names would be read twice: take the new name back
            with contextlib.suppress(OSError):
                keep_as.unlink()
        raise


def shift_backups(path: Path, keep: int | None) -> None:
    """Make room for a new backup 1: each backup k is renamed to k + 1, the oldest first.

    With keep (rotation by size, as configured), backup keep is deleted first and none
    above it is touched; without it (rotation under the old writers' cap), every backup
    moves up and none is deleted: an audit log keeps them all.
    """
    if keep is not None:
        with contextlib.suppress(FileNotFoundError):
            backup_path(path, keep).unlink()
        top = keep - 1
    else:
        top = _highest_backup(path)
    for index in range(top, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            backup_path(path, index).rename(backup_path(path, index + 1))


def _highest_backup(path: Path) -> int:
    """The highest backup number in use, stepping over single gaps as readers do (0: none)."""
    highest = 0
    index = 1
    while os.path.lexists(backup_path(path, index)) or os.path.lexists(
        backup_path(path, index + 1)
    ):
        if os.path.lexists(backup_path(path, index)):
            highest = index
        index += 1
    return highest
