"""TelemetryStore: locked, O(1) appends to the file, repair of a torn tail, rotation.

Appending is O(1) in the file's size: under ``flock(LOCK_EX)`` on the data file
itself, the closing bracket is overwritten in place by the new entries and a new
closing bracket. The file is never read-modify-rewritten, so an old Betty writer (which
flocks the same file and rewrites it whole) can run beside this one. A store that appended
last checks with one read that the file still ends as it left it (see last_write).

Crash safety: a writer killed mid-append leaves a torn tail; the next writer repairs it
under the lock, keeping every complete entry (the removed bytes are saved beside the
file, see repair). A file that is not a JSON array is moved aside, never overwritten, and
a new log takes its place (see rotation: the path never goes missing or empty). Both are
imported where used: an append to a sound file loads neither. legacy keeps the original
Betty writer's late bytes and its cap in check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator, Mapping, Sequence

from betty_otel._logs import logger
from betty_otel._store.errors import LockTimeoutError, StoreError
from betty_otel._store.files import (
    PathLock,
    aside_path,
    backup_path,
    fcntl_flock,
    fsync_dir,
    path_lock,
    pwrite_all,
    restore_end,
    run_closes,
)
from betty_otel._store.format import BOM, CLOSE, SEP, encode_entry
from betty_otel._store.last_write import OpenLog, still_ends_with, tail_to_remember
from betty_otel._store.legacy import ORIGINAL_CAP, CapGuard, late_newline_at, settled_end
from betty_otel._store.lines import head_kind
from betty_otel._store.location import resolve_path
from betty_otel._store.tail import insertion_point

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["TelemetryStore"]

_OPEN_FLAGS: Final = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_TRIES: Final = 5
"""Creations in a row before giving up on a path that something keeps removing."""


class TelemetryStore:
    """Append entries to, and repair, one telemetry file.

    Args:
        path: the file; None means $BETTY_TELEMETRY_FILE or the default.
        fsync: fsync the file after every append (and its folder on creation).
            Audit-grade durability against power loss; costs a disk flush per append.
        lock_timeout: seconds to wait for the lock before giving up with
            LockTimeoutError, so a stuck writer never hangs the program.
        max_bytes: rotate when an append would grow the file past this size; 0 (the
            default) never rotates, since an audit log must not drop data silently.
        backups: rotated files kept (``telemetry.json.1`` newest); the oldest beyond
            this count is deleted at rotation.
        legacy_cap: the most entries the original Betty writer keeps when it rewrites
            the log. Once one has been seen writing it, the live file is rotated before
            it holds more than 90% of this (see legacy), so that writer drops nothing.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        lock_timeout: float = 10.0,
        max_bytes: int = 0,
        backups: int = 5,
        legacy_cap: int = ORIGINAL_CAP,
    ) -> None:
        if not lock_timeout > 0:
            msg = f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}"
            raise ValueError(msg)
        if max_bytes < 0:
            msg = f"max_bytes must be >= 0 (0 disables rotation), got {max_bytes!r}"
            raise ValueError(msg)
        if max_bytes and backups < 1:
            msg = f"backups must be >= 1 when rotating (max_bytes={max_bytes}), got {backups!r}"
            raise ValueError(msg)
        if legacy_cap < 10:
            msg = f"legacy_cap must be >= 10 entries, got {legacy_cap!r}"
            raise ValueError(msg)
        self.path = resolve_path(path)
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self.max_bytes = max_bytes
        self.backups = backups
        self._key = str(self.path)
        self._open: OpenLog | None = None
        self._path_lock: tuple[int, PathLock] | None = None  # (pid, lock), see _lock
        self._cap = CapGuard(self.path, legacy_cap)

    # -- public -------------------------------------------------------------

    def append(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Append entries as one write; when this returns they are in the file.

        Raises:
            LockTimeoutError: the lock was not obtained within lock_timeout.
            StoreError / OSError: the write failed; the file was restored to its
                previous end, so nothing is half-written.
            TypeError: an entry is not JSON-serialisable (nothing is written).
        """
        self.append_encoded([encode_entry(entry) for entry in entries])

    def append_encoded(self, lines: Sequence[bytes]) -> None:
        """Append already-encoded entry lines (see encode_entry) as one write."""
        if not lines:  # an empty batch would leave a trailing comma before the bracket
            return
        # The hot path: _lock/_unlock directly, not the generator behind locked().
        held, fd = self._lock()
        try:
            if self.max_bytes:
                fd = self._maybe_rotate(fd, sum(len(line) + 2 for line in lines) + 2)
            self._append_locked(fd, lines)
        finally:
            self._unlock(held)

    def repair(self) -> int:
        """Repair the file under the lock; return the number of bytes removed.

        A torn tail is cut back to the last complete entry (saved beside the file), a
        file that is not a JSON array is moved aside and a new log started, and an empty
        file gets an empty array. A tail an old Betty writer may still be writing is
        waited for first (see legacy).

        Raises:
            LockTimeoutError: the lock, or a settled file, was not had within lock_timeout.
        """
        with self.locked() as fd:
            return self._repair_locked(fd)

    def close(self) -> None:
        """Close the cached descriptor (reopened on next use); safe to call twice. While an
        append of this process holds the file (through this store or another, in another
        thread or the frame a signal handler interrupted), that append closes it as it
        lets go: never under it (a file opened meanwhile could take its number and the
        entry), never waited for, never left open."""
        held = self._in_process_lock(os.getpid())
        held.closing.append(self._forget_descriptor)  # never raises
        if held.lock.acquire(blocking=False):
            run_closes(held)

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
        """Take the in-process lock, then flock; return both (the first for _unlock)."""
        deadline = time.monotonic() + self.lock_timeout
        pid = os.getpid()
        held = self._in_process_lock(pid)
        if not held.lock.acquire(timeout=self.lock_timeout):
            raise LockTimeoutError(errno.EAGAIN, "timed out waiting for the lock", str(self.path))
        try:
            return held, self._flock(deadline, pid)
        except BaseException:
            run_closes(held)
            raise

    def _in_process_lock(self, pid: int) -> PathLock:
        """Process pid's lock of the path (`_store.files.path_lock`), looked up once a process."""
        cached = self._path_lock
        if cached is None or cached[0] != pid:
            cached = self._path_lock = (pid, path_lock(self._key))
        return cached[1]

    def _unlock(self, held: PathLock) -> None:
        """Release flock, then the in-process lock _lock took (the same object after a fork),
        running the closes asked for meanwhile."""
        # Rotation or moving a foreign file aside may have switched descriptors; a child
        # forked while the lock was held must not unlock its parent's descriptor.
        state = self._open
        if state is not None and state.pid == os.getpid():
            try:  # noqa: SIM105 - every append passes here: no context manager object
                fcntl_flock(state.fd, unlock=True)
            except OSError:
                pass  # the descriptor is gone: so is its lock
        run_closes(held)

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

    # -- appending ----------------------------------------------------------

    def _append_locked(self, fd: int, lines: Sequence[bytes]) -> None:
        state = self._current()
        if state.tail and still_ends_with(fd, state.end, state.tail) and self._cap.fits(len(lines)):
            # The file ends as our last append left it: insertion_point would answer
            # this, and the bytes after pos are CLOSE (see last_write for the argument).
            size = state.end
            pos, prefix, old_tail = size - len(CLOSE), SEP, CLOSE
        else:
            fd, size, pos, prefix = self._insertion_point(fd, len(lines))
            state = self._current()
            old_tail = os.pread(fd, size - pos, pos) if size > pos else b""
        payload = b"".join((prefix, SEP.join(lines), CLOSE))
        try:
            pwrite_all(fd, payload, pos)
            end = pos + len(payload)
            if end < size:
                os.ftruncate(fd, end)
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            restore_end(fd, pos, old_tail, self.path)
            raise
        state.end = end
        state.tail = tail_to_remember(payload, lines[-1])
        self._cap.appended(state.ino, end - len(CLOSE), len(lines), payload)

    def _insertion_point(self, fd: int, incoming: int) -> tuple[int, int, int, bytes]:
        """The careful path: check the head once, find the end, repair a torn tail, keep
        the file under the old writers' cap.

        Returns the descriptor to write to (a repair or rotation may have put a new file at
        the path), the file's size, the insertion point and the bytes before the entries.
        """
        unchecked = not self._current().checked_head
        if unchecked:
            fd = self._ensure_array(fd)
            self._current().checked_head = True
        deadline = time.monotonic() + self.lock_timeout
        size, pos, prefix, landing = settled_end(fd, deadline, self.path)
        if pos < 0 and not landing:
            self._cut(fd, size)
            fd = self._current().fd
            size = os.fstat(fd).st_size
            pos, prefix = insertion_point(fd, size)
            if pos < 0:  # pragma: no cover - repair always leaves a closed array
                raise StoreError(errno.EIO, "file still malformed after repair", str(self.path))
        if landing or self._cap.must_rotate(fd, self._current().ino, pos, incoming):
            # A tail that may still land is set aside whole, never written into (see legacy).
            old_writer = landing and size > 0  # an old writer's dump, not just an empty file
            fd = self._rotate(keep=None)
            size = os.fstat(fd).st_size
            pos, prefix = insertion_point(fd, size)
            self._cap.rotated(fd, self._current().ino, pos, old_writer=old_writer)
        # A UTF-8 BOM is overwritten by spaces so that json.load reads the log, once a
        # file: only now that it is kept (one moved aside keeps its bytes as they were).
        if unchecked and os.pread(fd, len(BOM), 0) == BOM:
            pwrite_all(fd, b" " * len(BOM), 0)
        return fd, size, pos, late_newline_at(fd, size, pos, prefix)

    # -- repair -------------------------------------------------------------

    def _ensure_array(self, fd: int) -> int:
        """Move a file that is not a JSON array aside and start a fresh one."""
        if head_kind(fd) != "foreign":
            return fd
        return self._move_aside("is not a JSON array")

    def _move_aside(self, why: str) -> int:
        """Move the whole file to ``.invalid-<UTC>``; lock the new empty log put in its place."""
        from betty_otel._store.rotation import replace_with_new  # noqa: PLC0415 - a foreign file

        aside = aside_path(self.path, "invalid")
        replace_with_new(self.path, aside, sync=self.fsync)
        logger(__name__).warning(
            "%s %s; moved it aside to %s and started a new log", self.path, why, aside
        )
        return self._follow_path()

    def _repair_locked(self, fd: int) -> int:
        """Settle the file, then cut a torn tail back to the last complete element and close
        the array, or give an empty file an empty array; return the bytes removed.

        Only a torn append after an array of entries is cut (see is_torn_append);
        any other file that starts with ``[`` is moved aside whole, like a foreign one.
        """
        if head_kind(fd) == "foreign":
            self._ensure_array(fd)
            return 0
        # An explicit repair cuts what stayed the same for the grace period (see legacy).
        size, pos, _, _ = settled_end(fd, time.monotonic() + self.lock_timeout, self.path)
        if pos >= 0:
            from betty_otel._store.repair import fill_empty  # noqa: PLC0415 - repair only

            fill_empty(fd, self.path, fsync=self.fsync)
            return 0
        return self._cut(fd, size)

    def _cut(self, fd: int, size: int) -> int:
        """Cut a settled torn tail (see repair.cut_torn_tail) or move the file aside."""
        from betty_otel._store.repair import cut_torn_tail  # noqa: PLC0415 - repair only

        removed = cut_torn_tail(fd, self.path, size, fsync=self.fsync)
        if removed is None:
            self._move_aside("is not a JSON array of entries")
            return 0
        return removed

    # -- rotation -----------------------------------------------------------

    def _maybe_rotate(self, fd: int, incoming: int) -> int:
        """Rotate under the lock when the append would pass max_bytes (> 0); return the fd."""
        size = os.fstat(fd).st_size
        if size == 0 or size + incoming <= self.max_bytes:
            return fd
        # Settle the file before it becomes a backup: foreign content is moved aside (with
        # its warning), and a torn tail is repaired, or the backup would stay torn for good;
        # but one that may still land goes into the backup as it is (see legacy).
        if head_kind(fd) == "foreign":
            fd = self._ensure_array(fd)
        elif insertion_point(fd, size)[0] < 0:
            size, pos, _, landing = settled_end(fd, time.monotonic() + self.lock_timeout, self.path)
            if pos < 0 and not landing:
                self._cut(fd, size)
        fd = self._current().fd
        size = os.fstat(fd).st_size
        if size == 0 or size + incoming <= self.max_bytes:
            return fd
        return self._rotate(keep=self.backups)

    def _rotate(self, *, keep: int | None) -> int:
        """Make the file backup 1 (see shift_backups for keep); return the new file's fd, locked."""
        from betty_otel._store.rotation import replace_with_new, shift_backups  # noqa: PLC0415

        shift_backups(self.path, keep)
        replace_with_new(self.path, backup_path(self.path, 1), sync=self.fsync)
        return self._follow_path()

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
