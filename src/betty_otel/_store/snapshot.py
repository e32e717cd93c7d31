"""Opening the log for reading: checked descriptors, and one consistent view of a rotated log.

Readers follow a symbolic link (writers never write through one), never block on a
FIFO or a device (``O_NONBLOCK``, then fstat must show a regular file) and raise
only `StoreError`. A missing file is an empty log.

Rotation renames each backup ``.k`` to ``.k+1`` (the oldest first), then gives the
file the name ``.1`` as well (a hard link) and renames a new file over the path, under
the writers' lock (`betty_otel._store.rotation`). A reader opens the file and each
backup, then checks that every name still names the file it opened, that the names
after the last one are still absent, and that no file was opened under two names (the
moment between the link and the rename). Files only move to a higher index, and a
descriptor held open keeps its inode number from being reused, so when every name
still matches, no rotation step happened in between: the descriptors are the log at
one moment, with no entry twice and none missing. Otherwise it tries again (a few
times, a few milliseconds in all); then it opens the files once more while holding
a shared lock on the current file, which a rotation (under the exclusive lock)
cannot pass, waiting at most LOCK_WAIT seconds; past that it reads the last view
and logs a warning. The lock is never held while reading.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from betty_otel._store.errors import StoreError
from betty_otel._store.files import backup_path

__all__ = ["LOCK_WAIT", "OpenFile", "log_files", "open_for_reading", "open_log", "read_errors"]

logger = logging.getLogger(__name__)

_READ_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_ATTEMPTS: Final = 20
"""Lock-free tries before the shared lock is taken."""
LOCK_WAIT: Final = 2.0
"""Seconds a reader waits for the shared lock before reading without it."""

_T = TypeVar("_T")


def open_for_reading(path: Path) -> int | None:
    """A read-only descriptor on the regular file at path (symlinks followed); None if missing.

    Raises:
        StoreError: path is a directory, a FIFO, a device or a socket, or cannot be
            read (permissions, a symlink loop, a file where a folder should be).
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _read_error(exc, path) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise StoreError(errno.EISDIR, "is a directory, not a regular file", str(path))
        raise StoreError(errno.EINVAL, "not a regular file", str(path))
    return fd


def _read_error(exc: OSError, path: Path) -> StoreError:
    return StoreError(exc.errno, f"cannot read the log: {exc.strerror}", str(path))


@contextlib.contextmanager
def read_errors(path: Path) -> Iterator[None]:
    """Turn an OSError while reading path (an I/O error, a file gone bad) into StoreError."""
    try:
        yield
    except StoreError:
        raise
    except OSError as exc:
        raise _read_error(exc, path) from exc


def _walk(path: Path, probe: Callable[[Path], _T | None]) -> list[tuple[Path, _T | None]]:
    """(backup, probe(backup)) in order, until two names in a row are absent.

    One absent name between present ones is stepped over: a rotation moving the
    files makes such a hole for a moment, and a backup deleted by hand leaves one.
    """
    found: list[tuple[Path, _T | None]] = []
    index = 1
    while len(found) < 2 or found[-1][1] is not None or found[-2][1] is not None:
        file = backup_path(path, index)
        found.append((file, probe(file)))
        index += 1
    return found


def log_files(path: Path) -> list[Path]:
    """The current file and its rotated backups, newest first (the backups that exist)."""
    backups = _walk(path, lambda file: True if os.path.lexists(file) else None)
    return [path, *(file for file, present in backups if present)]


@dataclass
class OpenFile:
    """One file of the log as opened: its descriptor (None: absent), identity and size."""

    file: Path
    fd: int | None
    ident: tuple[int, int] | None
    size: int


def _open_one(file: Path) -> OpenFile | None:
    fd = open_for_reading(file)
    if fd is None:
        return None
    info = os.fstat(fd)
    return OpenFile(file, fd, (info.st_dev, info.st_ino), info.st_size)


def _close(opened: list[OpenFile]) -> None:
    for item in opened:
        if item.fd is not None:
            with contextlib.suppress(OSError):
                os.close(item.fd)


def _open_all(path: Path) -> tuple[list[OpenFile], bool]:
    """Every name of the log opened in order (absent ones too); and whether one was skipped."""
    opened: list[OpenFile] = []
    try:
        opened.append(_open_one(path) or OpenFile(path, None, None, 0))
        backups = _walk(path, _open_one)
    except BaseException:
        _close(opened)
        raise
    hole = any(item is None for _, item in backups[:-2])
    opened.extend(item or OpenFile(file, None, None, 0) for file, item in backups)
    return opened, hole


def _still_named(opened: list[OpenFile]) -> bool:
    """True when each name still names the file opened under it (or is still absent)."""
    for item in opened:
        try:
            info = item.file.stat()
        except FileNotFoundError:
            ident = None
        except OSError:
            return False
        else:
            ident = (info.st_dev, info.st_ino)
        if ident != item.ident:
            return False
    return True


def _flock_shared(fd: int, deadline: float) -> bool:
    """Take a shared flock on fd (released when fd is closed); False at the deadline."""
    import fcntl  # noqa: PLC0415 - POSIX only, as in the writer

    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        else:
            return True


def _attempt(path: Path) -> list[OpenFile] | None:
    """One lock-free try: the opened files when they form one view, else None."""
    opened, hole = _open_all(path)
    idents = [item.ident for item in opened if item.ident is not None]
    if not hole and len(set(idents)) == len(idents) and _still_named(opened):
        return opened
    _close(opened)
    return None


def _locked_attempt(path: Path, deadline: float) -> list[OpenFile] | None:
    """One try holding a shared lock on the current file, which rotation cannot pass.

    A hole in the backups then is one deleted by hand, and is accepted.
    """
    fd = open_for_reading(path)
    try:
        if fd is not None and not _flock_shared(fd, deadline):
            return None
        opened, _ = _open_all(path)
        if fd is None:  # no current file to lock: the names must simply stay put
            current = _still_named(opened)
        else:
            info = os.fstat(fd)
            current = opened[0].ident == (info.st_dev, info.st_ino)
        if current:
            return opened
        _close(opened)
        return None
    finally:
        if fd is not None:
            os.close(fd)


def open_log(path: Path, *, rotated: bool = True) -> list[tuple[int, int, Path]]:
    """The log's files open for reading, newest first, as they were at one moment.

    Each is (descriptor, size when opened, file); absent files are left out. The
    caller closes each descriptor. Without rotated, only the file itself.

    Raises:
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    if not rotated:
        single = _open_one(path)
        return _present([single] if single is not None else [])
    for attempt in range(_ATTEMPTS):
        opened = _attempt(path)
        if opened is not None:
            return _present(opened)
        time.sleep(0.0002 * (attempt + 1))  # let the rotation finish
    deadline = time.monotonic() + LOCK_WAIT
    while time.monotonic() < deadline:
        opened = _locked_attempt(path, deadline)
        if opened is not None:
            return _present(opened)
        time.sleep(0.001)
    logger.warning(
        "%s: the log kept rotating while it was read; entries may be missing or repeated", path
    )
    return _present(_open_all(path)[0])


def _present(opened: list[OpenFile]) -> list[tuple[int, int, Path]]:
    """(descriptor, size, file) of the files that exist."""
    return [(item.fd, item.size, item.file) for item in opened if item.fd is not None]
