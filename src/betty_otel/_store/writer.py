"""TelemetryStore: locked, O(1) appends to the file, repair of a torn tail, rotation.

Appending is O(1) in the file's size: under ``flock(LOCK_EX)`` on the data file
itself, the closing bracket is overwritten in place by the new entries and a new
closing bracket. The file is never read-modify-rewritten, so an old Betty writer
(which flocks the same file and rewrites it whole) can run beside this one. A store
that appended last checks with one read that the file still ends as it left it, and
then skips the search for the end (see last_write).

Crash safety: a writer killed mid-append leaves a torn tail; the next writer
repairs it under the lock, keeping every complete entry (the removed bytes are
saved beside the file). A file that is not a JSON array is moved aside, never
overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from betty_otel._logs import logger
from betty_otel._state import STATE
from betty_otel._store.errors import LockTimeoutError, StoreError
from betty_otel._store.files import (
    aside_path,
    backup_path,
    fcntl_flock,
    fsync_dir,
    pwrite_all,
    write_private,
)
from betty_otel._store.format import BOM, CLOSE, SEP, WHITESPACE, encode_entry
from betty_otel._store.last_write import still_ends_with, tail_to_remember
from betty_otel._store.lines import data_end, head_kind
from betty_otel._store.location import resolve_path
from betty_otel._store.tail import insertion_point, is_torn_append

__all__ = ["TelemetryStore"]

_OPEN_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


# In-process locking. flock is per open file description, so threads of one
# process share a per-path lock (in STATE); a forked child gets fresh locks and
# never uses (or unlocks) a descriptor inherited from its parent.


def _path_lock(key: str) -> threading.Lock:
    with STATE.path_locks_lock:
        lock = STATE.path_locks.get(key)
        if lock is None:
            lock = STATE.path_locks[key] = threading.Lock()
        return lock


def _after_fork_in_child() -> None:
    # The parent's lock may be held by a thread that did not fork: replace it.
    STATE.path_locks_lock = threading.Lock()
    STATE.path_locks.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Open:
    """A descriptor on the data file, valid in the process that opened it (a plain
    record: a one-shot capture does not import dataclasses)."""

    __slots__ = ("checked_head", "created", "end", "fd", "ino", "pid", "tail")

    def __init__(self, fd: int, pid: int, ino: tuple[int, int], *, created: bool) -> None:
        self.fd = fd
        self.pid = pid
        self.ino = ino
        self.checked_head = False
        self.created = created  # this store created the file and has not written to it yet
        self.end = 0
        """Where our last append through this descriptor left the end of the file."""
        self.tail = b""
        """The bytes that ended it (see last_write), or b'' when there is nothing to reuse."""


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
        self.path = resolve_path(path)
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self.max_bytes = max_bytes
        self.backups = backups
        self._key = str(self.path)
        self._open: _Open | None = None
        self._path_lock: tuple[int, threading.Lock] | None = None  # (pid, lock), see _lock

    # -- public -------------------------------------------------------------

    def append(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Append entries as one write; when this returns they are in the file.

        Raises:
            LockTimeoutError: the lock was not obtained within lock_timeout.
            StoreError / OSError: the write failed; the file was restored to its
                previous end, so nothing is half-written.
            TypeError: an entry is not JSON-serialisable (nothing is written).
        """
        lines = [encode_entry(entry) for entry in entries]
        if lines:
            self.append_encoded(lines)

    def append_encoded(self, lines: Sequence[bytes]) -> None:
        """Append already-encoded entry lines (see encode_entry) as one write."""
        if not lines:  # an empty batch would leave a trailing comma before the bracket
            return
        # The hot path: _lock/_unlock directly, not the generator behind locked().
        thread_lock, fd = self._lock()
        try:
            if self.max_bytes:
                fd = self._maybe_rotate(fd, sum(len(line) + 2 for line in lines) + 2)
            self._append_locked(fd, lines)
        finally:
            self._unlock(thread_lock)

    def repair(self) -> int:
        """Repair a torn tail under the lock; return the number of bytes removed."""
        with self.locked() as fd:
            return self._repair_locked(fd)

    def close(self) -> None:
        """Close the cached descriptor (reopened on next use); safe to call twice."""
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
        thread_lock, fd = self._lock()
        try:
            yield fd
        finally:
            self._unlock(thread_lock)

    # -- locking ------------------------------------------------------------

    def _lock(self) -> tuple[threading.Lock, int]:
        """Take the in-process lock, then flock; return both (the first for _unlock)."""
        deadline = time.monotonic() + self.lock_timeout
        # The per-path lock of this process, looked up in STATE once per process.
        pid = os.getpid()
        cached = self._path_lock
        if cached is None or cached[0] != pid:
            cached = self._path_lock = (pid, _path_lock(self._key))
        thread_lock = cached[1]
        if not thread_lock.acquire(timeout=self.lock_timeout):
            raise LockTimeoutError(errno.EAGAIN, "timed out waiting for the lock", str(self.path))
        try:
            return thread_lock, self._flock(deadline, pid)
        except BaseException:
            thread_lock.release()
            raise

    def _unlock(self, thread_lock: threading.Lock) -> None:
        """Release flock, then the in-process lock _lock took (the same object after a fork)."""
        # Rotation or moving a foreign file aside may have switched descriptors; a child
        # forked while the lock was held must not unlock its parent's descriptor.
        state = self._open
        if state is not None and state.pid == os.getpid():
            try:  # noqa: SIM105 - every append passes here: no context manager object
                fcntl_flock(state.fd, unlock=True)
            except OSError:
                pass  # the descriptor is gone: so is its lock
        thread_lock.release()

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
            self.close()

    def _descriptor(self, pid: int) -> _Open:
        state = self._open
        if state is not None and state.pid == pid:
            return state
        # Never use a parent's descriptor after fork: forget it without unlocking.
        self._open = None
        if state is not None:
            with contextlib.suppress(OSError):
                os.close(state.fd)
        self._make_folders()
        created = True
        try:
            try:
                fd = os.open(self.path, _OPEN_FLAGS | os.O_EXCL, 0o600)
            except FileExistsError:
                created = False
                fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                msg = "refusing to write through a symbolic link"
                raise StoreError(errno.ELOOP, msg, str(self.path)) from exc
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(errno.EINVAL, "not a regular file", str(self.path))
            if self.fsync:
                fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)  # a failed folder fsync must not leak the descriptor
            raise
        self._open = _Open(fd, pid, (info.st_dev, info.st_ino), created=created)
        return self._open

    def _make_folders(self) -> None:
        """Create the file's missing folders, each 0700."""
        parent = self.path.parent
        if parent.exists():
            return
        # mkdir(parents=True) creates missing ancestors with the umask's mode, not 0o700.
        for folder in [*reversed(parent.parents), parent]:
            if not folder.exists():
                folder.mkdir(mode=0o700, exist_ok=True)
        if self.fsync:
            fsync_dir(parent.parent if parent.parent != parent else parent)

    def _current(self) -> _Open:
        """The descriptor in use now (repair or rotation may have switched to a new file)."""
        state = self._open
        assert state is not None
        return state

    # -- appending ----------------------------------------------------------

    def _append_locked(self, fd: int, lines: Sequence[bytes]) -> None:
        state = self._current()
        if state.tail and still_ends_with(fd, state.end, state.tail):
            # The file ends as our last append left it: insertion_point would answer
            # this, and the bytes after pos are CLOSE (see last_write for the argument).
            size = state.end
            pos, prefix, old_tail = size - len(CLOSE), SEP, CLOSE
        else:
            fd, size, pos, prefix = self._insertion_point(fd)
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
            self._restore(fd, pos, old_tail)
            if size == 0 and state.created:
                self._discard_created(fd)
            raise
        state.created = False
        state.end = end
        state.tail = tail_to_remember(payload, lines[-1])

    def _insertion_point(self, fd: int) -> tuple[int, int, int, bytes]:
        """The careful path: check the head once, find the end, repair a torn tail.

        Returns the descriptor to write to (repair may have moved a foreign file aside
        and reopened), the file's size, the insertion point and the bytes before the
        new entries.
        """
        state = self._current()
        if not state.checked_head:
            fd = self._ensure_array(fd)
            self._current().checked_head = True
        size = os.fstat(fd).st_size
        pos, prefix = insertion_point(fd, size)
        if pos < 0:
            self._repair_locked(fd)
            fd = self._current().fd
            size = os.fstat(fd).st_size
            pos, prefix = insertion_point(fd, size)
            if pos < 0:  # pragma: no cover - repair always leaves a closed array
                raise StoreError(errno.EIO, "file still malformed after repair", str(self.path))
        return fd, size, pos, prefix

    def _discard_created(self, fd: int) -> None:
        """Remove the empty file a failed first append created: json.load rejects 0 bytes."""
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            current = self.path.lstat()
            if info.st_size == 0 and (current.st_dev, current.st_ino) == (info.st_dev, info.st_ino):
                self.path.unlink()

    def _restore(self, fd: int, pos: int, old_tail: bytes) -> None:
        """Put the file back to its previous end after a failed append."""
        try:
            os.ftruncate(fd, pos)
            pwrite_all(fd, old_tail, pos)
        except OSError:
            logger(__name__).exception(
                "could not restore %s after a failed append; the next writer repairs it",
                self.path,
            )

    def _ensure_array(self, fd: int) -> int:
        """Move a file that is not a JSON array aside and start a fresh one.

        A UTF-8 BOM is overwritten in place by spaces, so json.load reads the file.
        """
        if head_kind(fd) != "foreign":
            if os.pread(fd, len(BOM), 0) == BOM:
                pwrite_all(fd, b" " * len(BOM), 0)
            return fd
        return self._move_aside("is not a JSON array")

    def _move_aside(self, why: str) -> int:
        """Rename the whole file to ``.invalid-<UTC>`` (bytes intact) and lock a fresh one."""
        aside = aside_path(self.path, "invalid")
        self.path.rename(aside)
        logger(__name__).warning(
            "%s %s; moved it aside to %s and started a new log", self.path, why, aside
        )
        self.close()
        return self._flock(time.monotonic() + self.lock_timeout, os.getpid())

    def _repair_locked(self, fd: int) -> int:
        """Cut a torn tail back to the last complete element and close the array.

        Only a torn append after an array of entries is cut (see is_torn_append);
        any other file that starts with ``[`` is moved aside whole, like a foreign one.
        """
        if head_kind(fd) == "foreign":
            self._ensure_array(fd)
            return 0
        size = os.fstat(fd).st_size
        if insertion_point(fd, size)[0] >= 0:
            return 0
        # A NUL-filled tail (a crash extended the file, not its data) holds nothing to keep:
        # it is cut without being read.
        end = data_end(fd, size)
        # The tolerant parser, only for a repair: an append does not import it.
        from betty_otel._store.parser import array_prefix  # noqa: PLC0415

        cut, entries = array_prefix(fd, end)
        removed = os.pread(fd, end - cut, cut)
        if not (entries and is_torn_append(removed)):
            self._move_aside("is not a JSON array of entries")
            return 0
        if removed.strip(WHITESPACE):
            aside = aside_path(self.path, "torn")
            write_private(aside, removed)
            logger(__name__).warning(
                "repaired a torn tail of %s: removed %d bytes after the last complete entry "
                "(saved to %s)",
                self.path,
                len(removed),
                aside,
            )
        if end < size:
            logger(__name__).warning(
                "repaired %s: dropped %d NUL bytes at its end (a crash extended the file, "
                "not its data)",
                self.path,
                size - end,
            )
        closing = b"[" + CLOSE if cut == 0 else CLOSE
        os.ftruncate(fd, cut)
        pwrite_all(fd, closing, cut)
        if self.fsync:
            os.fsync(fd)
        return size - cut

    # -- rotation -----------------------------------------------------------

    def _maybe_rotate(self, fd: int, incoming: int) -> int:
        """Rotate under the lock when the append would pass max_bytes; return the fd to use."""
        if not self.max_bytes:
            return fd
        size = os.fstat(fd).st_size
        if size == 0 or size + incoming <= self.max_bytes:
            return fd
        # Settle the file before it becomes a backup: foreign content is moved aside (with
        # its warning), and a torn tail is repaired, or the backup would stay torn for good.
        if head_kind(fd) == "foreign" or insertion_point(fd, size)[0] < 0:
            self._repair_locked(fd)
            fd = self._current().fd
            size = os.fstat(fd).st_size
            if size == 0 or size + incoming <= self.max_bytes:
                return fd
        self._shift_backups()
        # Writers waiting on the old inode notice the path moved and reopen; we keep
        # the old lock until the new file is ours.
        old = self._open
        self._open = None
        try:
            return self._flock(time.monotonic() + self.lock_timeout, os.getpid())
        finally:
            if old is not None:
                with contextlib.suppress(OSError):
                    os.close(old.fd)

    def _shift_backups(self) -> None:
        """Rename the file to backup 1 and each backup to the next; drop the oldest."""
        for index in range(self.backups, 0, -1):
            older = backup_path(self.path, index)
            if index == self.backups:
                with contextlib.suppress(FileNotFoundError):
                    older.unlink()
            newer = self.path if index == 1 else backup_path(self.path, index - 1)
            with contextlib.suppress(FileNotFoundError):
                newer.rename(older)
