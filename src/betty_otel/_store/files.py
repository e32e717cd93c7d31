"""File operations of the writer: whole writes (undone when they fail), private copies,
names set aside, locks.

Nothing is ever overwritten: a file moved or saved aside gets a new name that
says why, and a failed private copy leaves nothing behind.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from betty_otel._logs import logger
from betty_otel._store.errors import StoreError

__all__ = [
    "PathLock",
    "after_fork_in_child",
    "aside_path",
    "backup_path",
    "fcntl_flock",
    "fsync_dir",
    "on_reset",
    "path_lock",
    "pwrite_all",
    "restore_end",
    "run_closes",
    "write_private",
]


def aside_path(path: Path, kind: str) -> Path:
    """A new name beside path saying why (``.invalid-<UTC>``, ``.torn-<UTC>``), never one in use.

    The clock can repeat a reading (a stepped-back clock, a restored VM): a counter keeps
    an earlier file from being overwritten. Called under the lock, so no writer of ours races.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    candidate = path.with_name(f"{path.name}.{kind}-{stamp}")
    count = 1
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.name}.{kind}-{stamp}-{count}")
        count += 1
    return candidate


def backup_path(path: Path, index: int) -> Path:
    """The name of the index-th rotated backup (``telemetry.json.1`` is the newest)."""
    return path.with_name(f"{path.name}.{index}")


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of data at offset, looping over short writes."""
    written = os.pwrite(fd, data, offset)
    if written == len(data):  # the usual case: one call, no view
        return
    view = memoryview(data)[written:]
    offset += written
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:  # pragma: no cover - pwrite raises rather than returning 0 on Linux
            raise StoreError(errno.EIO, "short write made no progress")
        view = view[written:]
        offset += written


def restore_end(fd: int, pos: int, old_tail: bytes, path: Path) -> None:
    """Put the file back to its previous end (old_tail at pos) after a failed append."""
    try:
        os.ftruncate(fd, pos)
        pwrite_all(fd, old_tail, pos)
    except OSError:
        logger(__name__).exception(
            "could not restore %s after a failed append; the next writer repairs it", path
        )


def write_private(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Create path (mode 0600, never an existing name or a symlink) holding data.

    With sync, data is on disk (fsync) before this returns: a file renamed or linked into
    place afterwards is never found empty after a power loss.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        pwrite_all(fd, data, 0)
        if sync:
            os.fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):  # no empty or partial copy left by a full disk
            path.unlink()
        raise
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a created or renamed file) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fcntl_flock(fd: int, *, unlock: bool) -> bool:
    """Try LOCK_EX without blocking (True when held), or release the lock."""
    import fcntl  # noqa: PLC0415 - POSIX only; imported where used to keep the module importable

    if unlock:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# In-process locking. flock is per open file description, so threads of one
# process share a per-path lock (kept here); a forked child gets fresh locks and
# never uses (or unlocks) a descriptor inherited from its parent. The locks come from
# _thread: they are the very objects threading.Lock() makes, and a one-shot capture
# then never imports threading. A path's lock is not re-entrant, unlike every other
# lock a recording takes: a signal handler that appends while its own thread is
# inside an append must not write into it; it waits lock_timeout and fails instead.


class PathLock:
    """The in-process lock of one log file, and the descriptor closes waiting for it.

    A store's close that finds the lock held (by any store of the path) leaves its close
    in closing: the holder runs it when it lets go (`run_closes`), as no store's
    descriptor is in use then. A close left behind by a store no one uses again would
    otherwise leak its descriptor.
    """

    __slots__ = ("closing", "lock")

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.closing: list[Callable[[], None]] = []


def run_closes(held: PathLock) -> None:
    """Run the closes waiting for held (whose lock the caller holds), then release it, and
    again while a close arrived meanwhile and the lock is free: none is left behind."""
    closing = held.closing
    while True:
        try:  # a signal handler that raises (Ctrl-C) must not leave the lock held
            while closing:
                closing.pop()()
        finally:
            held.lock.release()
        if not closing or not held.lock.acquire(blocking=False):
            return


_path_locks: dict[str, PathLock] = {}
"""One in-process lock per log file, beside flock; emptied by `betty_otel._state.reset`."""
_path_locks_lock = _thread.RLock()


def path_lock(key: str) -> PathLock:
    """The lock that the threads of this process take before flock on the file key."""
    with _path_locks_lock:
        held = _path_locks.get(key)
        if held is None:
            held = _path_locks[key] = PathLock()
        return held


def after_fork_in_child() -> None:
    """Locks of the child's: a thread of the parent may have held one at the fork."""
    global _path_locks_lock
    _path_locks_lock = _thread.RLock()
    _path_locks.clear()


def on_reset() -> None:
    """Forget the path locks (a store still open keeps its own; flock still excludes)."""
    with _path_locks_lock:
        _path_locks.clear()
