"""The file at a path, held: a descriptor that still names the path, under this
process's lock of the path and flock.

`LockedFile` is what `TelemetryStore` writes through. Every change to the file
happens between `_lock` and `_unlock` (or in `locked`): first the in-process lock of
the path (`betty_otel._store.files.PathLock`: threads of one process share flock's
open file description), then flock on a descriptor checked to still name the path
(a rotation by another process moves it). The in-process lock is re-entrant so that
a signal handler that records while the thread it interrupted holds the file is told
so at once (`ReentrantError`) instead of waiting for itself; the store then defers its
lines to the holder. A descriptor is never used across a fork, and never closed
under the append that uses it (`close`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from betty_otel._store.errors import LockTimeoutError, StoreError
from betty_otel._store.files import PathLock, fcntl_flock, fsync_dir, path_lock
from betty_otel._store.last_write import OpenLog

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = ["LockedFile", "ReentrantError"]

_OPEN_FLAGS: Final = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_TRIES: Final = 5
"""Creations in a row before giving up on a path that something keeps removing."""


class LockedFile:
    """The file at path, opened and locked on demand (see the module)."""

    def __init__(self, path: Path, *, fsync: bool, lock_timeout: float) -> None:
        self.path = path
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self._key = str(path)
        self._open: OpenLog | None = None
        self._path_lock: tuple[int, PathLock] | None = None  # (pid, lock), see _lock

    def close(self) -> None:
        """Close the cached descriptor (reopened on next use); safe to call twice. While an
        append of this process holds the file (another thread, another store of the path,
        or the frame a signal handler interrupted), that append closes it as it lets go:
        never under it (a file opened meanwhile could take its number and the entry),
        never waited for."""
        held = self._thread_lock(os.getpid())
        held.closing.append(self._forget_descriptor)
        if held.lock.acquire(blocking=False):  # else the holder runs it as it lets go
            while not held.depth and held.closing:
                held.closing.pop()()
            held.lock.release()

    def _forget_descriptor(self) -> None:
        """Close the cached descriptor (the in-process lock is held, or no thread uses it)."""
        state, self._open = self._open, None
        if state is not None and state.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(state.fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        """Hold the in-process and the file lock on the file the path names now.

        Yields the locked descriptor. Every change to the file happens inside this.

        Raises:
            LockTimeoutError: the locks were not obtained within lock_timeout.
        """
        held, fd = self._lock()
        try:
            yield fd
        finally:
            self._unlock(held)

    # -- locking ------------------------------------------------------------

    def _lock(self) -> tuple[PathLock, int]:
        """Take the in-process lock, then flock; return both (the first for _unlock).

        Raises:
            ReentrantError: this thread holds the file already (a signal handler interrupted it).
        """
        deadline = time.monotonic() + self.lock_timeout
        pid = os.getpid()
        held = self._thread_lock(pid)
        if not held.lock.acquire(timeout=self.lock_timeout):
            raise LockTimeoutError(errno.EAGAIN, "timed out waiting for the lock", str(self.path))
        if held.depth:
            held.lock.release()
            raise ReentrantError(errno.EDEADLK, _REENTERED, str(self.path), held)
        held.depth = 1
        try:
            return held, self._flock(deadline, pid)
        except BaseException:
            held.depth = 0
            held.lock.release()
            raise

    def _thread_lock(self, pid: int) -> PathLock:
        """Process pid's lock of the path (`_store.files.path_lock`), looked up once a process."""
        cached = self._path_lock
        if cached is None or cached[0] != pid:
            cached = self._path_lock = (pid, path_lock(self._key))
        return cached[1]

    def _unlock(self, held: PathLock) -> None:
        """Release flock, run the closes asked for meanwhile, then release the in-process
        lock _lock took (the same object after a fork)."""
        # Rotation or moving a foreign file aside may have switched descriptors; a child
        # forked while the lock was held must not unlock its parent's descriptor.
        state = self._open
        if state is not None and state.pid == os.getpid():
            try:  # noqa: SIM105 - every append passes here: no context manager object
                fcntl_flock(state.fd, unlock=True)
            except OSError:
                pass  # the descriptor is gone: so is its lock
        while held.closing:
            held.closing.pop()()
        held.depth = 0
        held.lock.release()

    def _flock(self, deadline: float, pid: int) -> int:
        """Take flock on a descriptor that still names the path's inode; reopen if not.

        pid is os.getpid() now (the caller has it): a descriptor opened by another
        process (a parent before fork) is never used.
        """
        delay = 0.0002
        while True:
            state = self._descriptor(pid)
            while not fcntl_flock(state.fd, unlock=False):
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        errno.EAGAIN, "timed out waiting for the lock", str(self.path)
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
            # A path lookup, not fstat: a rename (rotation by another process) keeps our
            # inode alive with st_nlink 1, so only the path tells that it moved.
            try:
                current = os.lstat(self._key)
                same = (current.st_dev, current.st_ino) == state.ino
            except FileNotFoundError:
                same = False
            if same:
                return state.fd
            # Rotated, replaced or removed while we waited: follow the path.
            fcntl_flock(state.fd, unlock=True)
            self._forget_descriptor()

    def _descriptor(self, pid: int) -> OpenLog:
        state = self._open
        if state is not None and state.pid == pid:
            return state
        # Never use a parent's descriptor after fork: forget it without unlocking.
        self._open = None
        if state is not None:
            with contextlib.suppress(OSError):
                os.close(state.fd)
        fd = self._open_or_create()
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(errno.EINVAL, "not a regular file", str(self.path))
            if self.fsync:
                fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)  # a failed folder fsync must not leak the descriptor
            raise
        self._open = OpenLog(fd, pid, (info.st_dev, info.st_ino))
        return self._open

    def _open_or_create(self) -> int:
        """Open the file for writing; a missing one is first created whole (see rotation)."""
        for _ in range(_CREATE_TRIES):
            try:
                return os.open(self.path, _OPEN_FLAGS)
            except FileNotFoundError:
                from betty_otel._store.rotation import create_log  # noqa: PLC0415 - creation only

                create_log(self.path, sync=self.fsync)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    msg = "refusing to write through a symbolic link"
                    raise StoreError(errno.ELOOP, msg, str(self.path)) from exc
                raise
        raise StoreError(errno.ENOENT, "the file kept disappearing", str(self.path))

    def _current(self) -> OpenLog:
        """The descriptor in use now (repair or rotation may have switched to a new file)."""
        state = self._open
        assert state is not None
        return state

    def _follow_path(self) -> int:
        """Lock the new file at the path, then let go of the old one; return the new fd.

        Writers waiting on the old inode notice the path moved and reopen; we keep the old
        lock until the new file is ours. The old one is unlocked before it is closed: a
        child forked meanwhile shares that lock, and closing our descriptor alone would
        leave it held for as long as the child lives.
        """
        old = self._open
        self._open = None
        try:
            return self._flock(time.monotonic() + self.lock_timeout, os.getpid())
        finally:
            if old is not None:
                with contextlib.suppress(OSError):
                    fcntl_flock(old.fd, unlock=True)
                with contextlib.suppress(OSError):
                    os.close(old.fd)


_REENTERED: Final = "the file is held by the code this signal handler interrupted"


class ReentrantError(LockTimeoutError):
    """This thread already holds the file: a signal handler interrupted its change of it.

    An append is then deferred (held.deferred); anything else fails at once, where it
    would otherwise wait lock_timeout for its own thread.
    """

    def __init__(self, code: int, message: str, path: str, held: PathLock) -> None:
        super().__init__(code, message, path)
        self.held = held
