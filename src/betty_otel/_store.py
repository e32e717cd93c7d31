"""The telemetry file: a locked, append-only JSON array (the only code that touches it).

Layout (canonical): ``[``, one compact entry per line separated by ``,\\n``, then
``\\n]\\n``. Any other valid JSON array layout (the old tools' ``indent=2``, CRLF,
a BOM, no final newline) is read and appended to as it is.

Appending is O(1) in the file's size: under ``flock(LOCK_EX)`` on the data file
itself, the closing bracket is overwritten in place by the new entries and a new
closing bracket. The file is never read-modify-rewritten, so an old Betty writer
(which flocks the same file and rewrites it whole) can run beside this one.

Crash safety: a writer killed mid-append leaves a torn tail; the next writer
repairs it under the lock, keeping every complete entry (the removed bytes are
saved beside the file), and readers skip it without writing. A file that is not
a JSON array is moved aside, never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = [
    "DEFAULT_PATH",
    "ENV_FILE",
    "Damage",
    "FileReport",
    "LockTimeoutError",
    "StoreError",
    "TelemetryStore",
    "check_file",
    "iter_entries",
    "log_files",
    "open_log_files",
    "resolve_path",
]

logger = logging.getLogger("betty_otel")

ENV_FILE: Final = "BETTY_TELEMETRY_FILE"
DEFAULT_PATH: Final = Path("registry") / "telemetry.json"
"""Relative to the working directory, where Betty keeps its registry."""

_BOM: Final = b"\xef\xbb\xbf"
_WS: Final = b" \t\r\n"
_CLOSE: Final = b"\n]\n"
_SEP: Final = b",\n"
_BLOCK: Final = 1 << 16
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Characters that can end a JSON value: where the next element's separator goes.
_VALUE_END: Final = frozenset(b'}]"0123456789el')
# Before an entry line, these mean the array already ended there (lines added after it).
_AFTER_END: Final = frozenset(b"]}")
# Structural tokens of one line; JSON strings never contain a raw newline.
_TOKENS: Final = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[\[\]{},]')


class StoreError(OSError):
    """The telemetry file could not be appended to; nothing was written."""


class LockTimeoutError(StoreError):
    """The file lock was not obtained within the configured wait."""


def resolve_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the telemetry file: the argument, else $BETTY_TELEMETRY_FILE, else the default."""
    if path is not None and os.fspath(path) != "":
        return Path(path)
    env = os.environ.get(ENV_FILE, "")
    return Path(env) if env else DEFAULT_PATH


def encode_entry(entry: Mapping[str, Any]) -> bytes:
    """One entry as a compact JSON line (no newline inside, by JSON's rules)."""
    return orjson.dumps(entry)


# ---------------------------------------------------------------------------
# In-process locking. flock is per open file description, so threads of one
# process share a per-path lock; a forked child gets fresh locks and never uses
# (or unlocks) a descriptor inherited from its parent.
# ---------------------------------------------------------------------------

_registry_lock = threading.Lock()
_path_locks: dict[str, threading.Lock] = {}


def _path_lock(key: str) -> threading.Lock:
    with _registry_lock:
        lock = _path_locks.get(key)
        if lock is None:
            lock = _path_locks[key] = threading.Lock()
        return lock


def _after_fork_in_child() -> None:
    # The parent's lock may be held by a thread that did not fork: replace it.
    global _registry_lock
    _registry_lock = threading.Lock()
    _path_locks.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _aside_path(path: Path, kind: str) -> Path:
    """A new name beside path saying why (``.invalid-<UTC>``, ``.torn-<UTC>``), never one in use.

    The clock can repeat a reading (a stepped-back clock, a restored VM): a counter keeps
    an earlier file from being overwritten. Called under the lock, so no writer of ours races.
    """
    stamp = _utc_stamp()
    candidate = path.with_name(f"{path.name}.{kind}-{stamp}")
    count = 1
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.name}.{kind}-{stamp}-{count}")
        count += 1
    return candidate


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of data at offset, looping over short writes."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:  # pragma: no cover - pwrite raises rather than returning 0 on Linux
            raise StoreError(errno.EIO, "short write made no progress")
        view = view[written:]
        offset += written


def _first_byte(fd: int) -> tuple[int, int]:
    """Offset and value of the file's first byte after a BOM and whitespace; (-1, -1) if none."""
    offset = 0
    while True:
        chunk = os.pread(fd, 512, offset)
        if not chunk:
            return -1, -1
        if offset == 0 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
            offset += len(_BOM)
        stripped = chunk.lstrip(_WS)
        if stripped:
            return offset + len(chunk) - len(stripped), stripped[0]
        offset += len(chunk)


def _head_kind(fd: int) -> str:
    """Classify the file's start: 'empty' (only whitespace), 'array', or 'foreign'."""
    offset, byte = _first_byte(fd)
    if offset < 0:
        return "empty"
    return "array" if byte == ord("[") else "foreign"


def _head_bracket(fd: int) -> int:
    """Offset of the array's opening bracket (first byte after a BOM and whitespace), or -1."""
    offset, byte = _first_byte(fd)
    return offset if byte == ord("[") else -1


def _line_ending_at(fd: int, end: int) -> bytes:
    """The bytes from the start of the line holding offset end - 1 up to end."""
    parts: list[bytes] = []
    pos = end
    while pos > 0:
        start = max(0, pos - 4096)
        chunk = os.pread(fd, pos - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            parts.append(chunk[newline + 1 :])
            break
        parts.append(chunk)
        pos = start
    return b"".join(reversed(parts))


def _closes_array(fd: int, before: int, last: int) -> bool:
    """True when the ``]`` at last closes the top-level array, not a nested one in a torn tail.

    A torn tail can end in ``]`` (``{"args": [1, 2]``, or a string ``"x]``). Cheap cases
    first: a bracket at the start of its line after a whole canonical entry line (our own
    tail), or after an indented line (json.dump(indent=N) puts only the top-level bracket at
    column 0). Otherwise (compact layouts, torn tails) the last complete element must end
    right before the bracket.
    """
    if last > 0 and os.pread(fd, 1, last - 1) == b"\n":
        line = _line_ending_at(fd, before + 1)
        if line[:1] in (b" ", b"\t"):
            return True
        if _is_entry_line(line) and _last_non_ws(fd, before + 1 - len(line))[1] not in _AFTER_END:
            try:
                _parse_entry_line(line)
            except orjson.JSONDecodeError:
                pass
            else:
                return True
    return _last_complete_element(fd, last + 1) == before + 1


def _last_non_ws(fd: int, end: int) -> tuple[int, int]:
    """Return (offset, byte) of the last non-whitespace byte before end, or (-1, -1)."""
    while end > 0:
        start = max(0, end - 4096)
        chunk = os.pread(fd, end - start, start)
        stripped = chunk.rstrip(_WS)
        if stripped:
            index = start + len(stripped) - 1
            if index < len(_BOM) and start == 0 and chunk.startswith(_BOM):
                return -1, -1
            return index, stripped[-1]
        end = start
    return -1, -1


@dataclass
class _Open:
    """A descriptor on the data file, valid in the process that opened it."""

    fd: int
    pid: int
    ino: tuple[int, int]
    checked_head: bool = False
    created: bool = False  # this store created the file and has not written to it yet


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
        self._key = str(self.path.absolute())
        self._open: _Open | None = None

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
        with self._locked() as locked_fd:
            fd = self._maybe_rotate(locked_fd, sum(len(line) + 2 for line in lines) + 2)
            self._append_locked(fd, lines)

    def repair(self) -> int:
        """Repair a torn tail under the lock; return the number of bytes removed."""
        with self._locked() as fd:
            return self._repair_locked(fd)

    def close(self) -> None:
        """Close the cached descriptor (reopened on next use); safe to call twice."""
        state, self._open = self._open, None
        if state is not None and state.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(state.fd)

    # -- locking ------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """Hold the in-process and the file lock on the file the path names now."""
        deadline = time.monotonic() + self.lock_timeout
        thread_lock = _path_lock(self._key)
        if not thread_lock.acquire(timeout=self.lock_timeout):
            raise LockTimeoutError(errno.EAGAIN, "timed out waiting for the lock", str(self.path))
        try:
            yield self._flock(deadline)
        finally:
            # Rotation or moving a foreign file aside may have switched descriptors.
            state = self._open
            if state is not None and state.pid == os.getpid():
                with contextlib.suppress(OSError):
                    fcntl_flock(state.fd, unlock=True)
            thread_lock.release()

    def _flock(self, deadline: float) -> int:
        """Take flock on a descriptor that still names the path's inode; reopen if not."""
        delay = 0.0002
        while True:
            state = self._descriptor()
            while not fcntl_flock(state.fd, unlock=False):
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        errno.EAGAIN, "timed out waiting for the lock", str(self.path)
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
            try:
                current = self.path.lstat()
                same = (current.st_dev, current.st_ino) == state.ino
            except FileNotFoundError:
                same = False
            if same:
                return state.fd
            # Rotated, replaced or removed while we waited: follow the path.
            fcntl_flock(state.fd, unlock=True)
            self.close()

    def _descriptor(self) -> _Open:
        state = self._open
        if state is not None and state.pid == os.getpid():
            return state
        # Never use a parent's descriptor after fork: forget it without unlocking.
        self._open = None
        if state is not None:
            with contextlib.suppress(OSError):
                os.close(state.fd)
        parent = self.path.parent
        if not parent.exists():
            # mkdir(parents=True) creates missing ancestors with the umask's mode, not 0o700.
            for folder in [*reversed(parent.parents), parent]:
                if not folder.exists():
                    folder.mkdir(mode=0o700, exist_ok=True)
            if self.fsync:
                _fsync_dir(parent.parent if parent.parent != parent else parent)
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
                _fsync_dir(parent)
        except BaseException:
            os.close(fd)  # a failed folder fsync must not leak the descriptor
            raise
        self._open = _Open(fd, os.getpid(), (info.st_dev, info.st_ino), created=created)
        return self._open

    # -- appending ----------------------------------------------------------

    def _append_locked(self, fd: int, lines: Sequence[bytes]) -> None:
        state = self._open
        assert state is not None
        if not state.checked_head:
            fd = self._ensure_array(fd)
            state = self._open
            assert state is not None
            state.checked_head = True
        size = os.fstat(fd).st_size
        pos, prefix = self._insertion_point(fd, size)
        if pos < 0:
            self._repair_locked(fd)
            # Repair may have moved a foreign file aside and reopened: use the new descriptor.
            state = self._open
            assert state is not None
            fd = state.fd
            size = os.fstat(fd).st_size
            pos, prefix = self._insertion_point(fd, size)
            if pos < 0:  # pragma: no cover - repair always leaves a closed array
                raise StoreError(errno.EIO, "file still malformed after repair", str(self.path))
        payload = b"".join((prefix, _SEP.join(lines), _CLOSE))
        old_tail = os.pread(fd, size - pos, pos) if size > pos else b""
        try:
            _pwrite_all(fd, payload, pos)
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
            _pwrite_all(fd, old_tail, pos)
        except OSError:
            logger.exception(
                "could not restore %s after a failed append; the next writer repairs it",
                self.path,
            )

    def _insertion_point(self, fd: int, size: int) -> tuple[int, bytes]:
        """Where new entries go and what precedes them; (-1, b'') for a torn tail."""
        if size == 0:
            return 0, b"[\n"
        # Fast path, one read: our own canonical tail, a whole entry line and then "\n]\n".
        start = max(0, size - 4096)
        tail = os.pread(fd, size - start, start)
        if tail.endswith(b"}" + _CLOSE):
            newline = tail.rfind(b"\n", 0, len(tail) - len(_CLOSE))
            line = tail[newline + 1 : len(tail) - len(_CLOSE)]
            if newline >= 0 and _is_entry_line(line):
                earlier = tail[:newline].rstrip(_WS)
                prev = earlier[-1] if earlier else _last_non_ws(fd, start)[1]
                try:
                    _parse_entry_line(line)
                except orjson.JSONDecodeError:
                    pass  # a damaged last entry: the careful path below decides
                else:
                    if prev not in _AFTER_END:
                        return size - len(_CLOSE), _SEP
        last, char = _last_non_ws(fd, size)
        if last < 0:  # only whitespace (or a BOM): an empty log
            return 0, b"[\n"
        if char != ord("]"):
            return -1, b""
        before, prev = _last_non_ws(fd, last)
        if prev == ord("["):
            # Empty only if it is the opening bracket; "[\n{"a": []" is a torn tail.
            return (before + 1, b"\n") if before == _head_bracket(fd) else (-1, b"")
        if prev in _VALUE_END and _closes_array(fd, before, last):
            return before + 1, _SEP
        return -1, b""

    def _ensure_array(self, fd: int) -> int:
        """Move a file that is not a JSON array aside and start a fresh one.

        A UTF-8 BOM is overwritten in place by spaces, so json.load reads the file.
        """
        kind = _head_kind(fd)
        if kind != "foreign":
            if os.pread(fd, len(_BOM), 0) == _BOM:
                _pwrite_all(fd, b" " * len(_BOM), 0)
            return fd
        aside = _aside_path(self.path, "invalid")
        self.path.rename(aside)
        logger.warning(
            "%s is not a JSON array; moved it aside to %s and started a new log", self.path, aside
        )
        self.close()
        return self._flock(time.monotonic() + self.lock_timeout)

    def _repair_locked(self, fd: int) -> int:
        """Cut a torn tail back to the last complete element and close the array."""
        if _head_kind(fd) == "foreign":
            self._ensure_array(fd)
            return 0
        size = os.fstat(fd).st_size
        if self._insertion_point(fd, size)[0] >= 0:
            return 0
        cut = _last_complete_element(fd, size)
        removed = os.pread(fd, size - cut, cut)
        if removed.strip(_WS):
            aside = _aside_path(self.path, "torn")
            _write_private(aside, removed)
            logger.warning(
                "repaired a torn tail of %s: removed %d bytes after the last complete entry "
                "(saved to %s)",
                self.path,
                len(removed),
                aside,
            )
        closing = b"[" + _CLOSE if cut == 0 else _CLOSE
        os.ftruncate(fd, cut)
        _pwrite_all(fd, closing, cut)
        if self.fsync:
            os.fsync(fd)
        return len(removed)

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
        if _head_kind(fd) == "foreign" or self._insertion_point(fd, size)[0] < 0:
            self._repair_locked(fd)
            state = self._open
            assert state is not None
            fd = state.fd
            size = os.fstat(fd).st_size
            if size == 0 or size + incoming <= self.max_bytes:
                return fd
        for index in range(self.backups, 0, -1):
            older = _backup(self.path, index)
            if index == self.backups:
                with contextlib.suppress(FileNotFoundError):
                    older.unlink()
            newer = self.path if index == 1 else _backup(self.path, index - 1)
            with contextlib.suppress(FileNotFoundError):
                newer.rename(older)
        # Writers waiting on the old inode notice the path moved and reopen; we keep
        # the old lock until the new file is ours.
        old = self._open
        self._open = None
        try:
            return self._flock(time.monotonic() + self.lock_timeout)
        finally:
            if old is not None:
                with contextlib.suppress(OSError):
                    os.close(old.fd)


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


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _pwrite_all(fd, data, 0)
    except BaseException:
        with contextlib.suppress(OSError):  # no empty or partial copy left by a full disk
            path.unlink()
        raise
    finally:
        os.close(fd)


def _backup(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def log_files(path: Path) -> list[Path]:
    """The current file and its rotated backups, newest first."""
    files = [path]
    index = 1
    while _backup(path, index).exists():
        files.append(_backup(path, index))
        index += 1
    return files


# ---------------------------------------------------------------------------
# Reading. Streaming, memory bounded by a block plus one element; readers never
# write and never lock.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """A region of the file that is not a complete entry."""

    offset: int
    length: int
    reason: str


def _is_entry_line(line: bytes) -> bool:
    """True for a canonical entry line: ``{...}`` or ``{...},`` starting at column 0."""
    return line[:1] == b"{" and (line[-1:] == b"}" or line[-2:] == b"},")


def _parse_entry_line(line: bytes) -> Any:
    return orjson.loads(line[:-1] if line[-1:] == b"," else line)


def _lines_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, raw line without its newline) from start to end."""
    offset = start
    rest = b""
    rest_offset = start
    while offset < end:
        chunk = os.pread(fd, min(_BLOCK, end - offset), offset)
        if not chunk:
            break
        offset += len(chunk)
        data = rest + chunk if rest else chunk
        pos = 0
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            yield rest_offset + pos, data[pos:newline]
            pos = newline + 1
        rest_offset += pos
        rest = data[pos:]
    if rest:
        yield rest_offset, rest


def _lines_backward(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, raw line without its newline) from end back to the start."""
    pos = end
    carry = b""
    while pos > 0:
        start = max(0, pos - _BLOCK)
        data = os.pread(fd, pos - start, start) + carry
        pos = start
        lines = data.split(b"\n")
        if pos > 0:
            # The first piece may begin in the block before this one.
            carry = lines[0]
            lines = lines[1:]
            offset = pos + len(carry) + 1
        else:
            carry = b""
            offset = 0
        offsets = []
        for line in lines:
            offsets.append(offset)
            offset += len(line) + 1
        for index in range(len(lines) - 1, -1, -1):
            yield offsets[index], lines[index]


def _entry_line_end(offset: int, line: bytes) -> int:
    """Offset just after the closing brace of a canonical entry line."""
    body = line.rstrip(b"\r")
    return offset + len(body) - (1 if body[-1:] == b"," else 0)


class _ForwardParser:
    """Tolerant forward parser of a JSON array, fed one raw line at a time.

    Canonical lines parse directly; other layouts go through a small tokenizer that
    tracks nesting (JSON strings cannot span lines, so string state is per line).
    A damaged region resynchronises at the next line. Damage is only reported once
    a later element parses; what is still pending at the end is the torn tail.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.started = False
        self.closed = False
        self.parts: list[bytes] = []
        self.part_offset = -1
        self.damage: list[Damage] = []
        self.pending: list[Damage] = []
        self.torn: list[Damage] = []
        self.after_comma = False  # a separator was read and no element after it yet
        # The line that opens a top-level element in an indented layout ("  {" for the
        # old tools' indent=2): learnt from the first element, it is where damage that
        # unbalanced the nesting resynchronises.
        self.element_start: bytes | None = None

    def feed(self, offset: int, raw: bytes) -> Iterator[tuple[int, Any]]:
        """Feed one line; yield (end offset, value) for each element it completes."""
        line = raw
        if not self.started:
            if offset == 0 and line.startswith(_BOM):
                line = line[len(_BOM) :]
                offset += len(_BOM)
            stripped = line.lstrip(_WS)
            if not stripped:
                return
            self.started = True
            if stripped[:1] != b"[":
                self.closed = True
                self.pending.append(Damage(offset, len(line), "not a JSON array"))
                return
            self.depth = 1
            skip = len(line) - len(stripped) + 1
            line = line[skip:]
            offset += skip
        body = line.rstrip(b"\r")
        if _is_entry_line(body):
            try:
                value = _parse_entry_line(body)
            except orjson.JSONDecodeError:
                pass  # damage, or several elements on one line ("[{..},{..},"): tokenize it
            else:
                if self.parts or self.depth != 1 or self.closed:
                    # A whole entry line after damage that left the nesting wrong (an
                    # unbalanced brace, a stray bracket): resynchronise, as the
                    # newest-first reader does, instead of losing every later entry.
                    if self.parts:
                        length = len(b"".join(self.parts))
                        self.pending.append(
                            Damage(self.part_offset, length, "element is not valid JSON")
                        )
                    self.parts = []
                    self.part_offset = -1
                    self.depth = 1
                    self.closed = False
                self._accept()
                self.after_comma = body[-1:] == b","
                yield _entry_line_end(offset, line), value
                return
        if body == self.element_start and (self.parts or self.depth != 1 or self.closed):
            # A damaged element left the nesting wrong; a new top-level element starts here.
            if self.parts:
                length = len(b"".join(self.parts))
                self.pending.append(Damage(self.part_offset, length, "element is not valid JSON"))
            self.parts = []
            self.part_offset = -1
            self.depth = 1
            self.closed = False
        if self.closed:
            if line.strip(_WS):
                self.pending.append(Damage(offset, len(line), "data after the closing bracket"))
            return
        if (
            self.element_start is None
            and self.depth == 1
            and not self.parts
            and body[-1:] == b"{"
            and body[:-1].strip(b" \t") == b""
            and body[:-1]
        ):
            self.element_start = body
        yield from self._tokenize(offset, line)

    def _accept(self) -> None:
        """A complete element parsed: earlier pending problems are damage, not a torn tail."""
        if self.pending:
            self.damage.extend(self.pending)
            self.pending = []

    def _add_part(self, offset: int, part: bytes) -> None:
        if self.part_offset < 0:
            stripped = part.lstrip(_WS)
            if not stripped:
                return
            offset += len(part) - len(stripped)
            part = stripped
            self.part_offset = offset
        self.parts.append(part)
        self.after_comma = False

    def _finish(self) -> Iterator[tuple[int, Any]]:
        element = b"".join(self.parts)
        start = self.part_offset
        self.parts = []
        self.part_offset = -1
        text = element.rstrip(_WS)
        if not text:
            return
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.pending.append(Damage(start, len(element), "element is not valid JSON"))
            return
        self._accept()
        yield start + len(text), value

    def _resync(self, offset: int, length: int, reason: str) -> None:
        self.pending.append(Damage(offset, length, reason))
        self.parts = []
        self.part_offset = -1
        self.depth = 1

    def _tokenize(self, offset: int, line: bytes) -> Iterator[tuple[int, Any]]:
        start = 0
        for match in _TOKENS.finditer(line):
            token = match.group()
            if len(token) > 1 or token == b'"':
                if token == b'"':
                    self._resync(offset, len(line), "unterminated string")
                    return
                continue
            index = match.start()
            if token in b"{[":
                self.depth += 1
            elif token in b"}]":
                self.depth -= 1
                if self.depth == 0:
                    self._add_part(offset + start, line[start:index])
                    if self.after_comma and not self.parts:  # "..},]": json.load rejects it
                        self.pending.append(Damage(offset + index, 1, "comma before the bracket"))
                    yield from self._finish()
                    self.closed = True
                    rest = line[index + 1 :]
                    if rest.strip(_WS):
                        self.pending.append(
                            Damage(offset + index + 1, len(rest), "data after the closing bracket")
                        )
                    return
            elif self.depth == 1:  # the comma between two elements
                self._add_part(offset + start, line[start:index])
                yield from self._finish()
                self.after_comma = True
                start = index + 1
        self._add_part(offset + start, line[start:] + b"\n")

    def flush(self) -> Iterator[tuple[int, Any]]:
        """End of input: an element whose closing brace is in the file is complete, even
        before its separator or the bracket arrived (an old writer killed right after it)."""
        if self.parts and self.depth == 1 and not self.closed:
            yield from self._finish()

    def finish(self) -> None:
        """End of input: an open element or pending damage is the torn tail."""
        if self.parts:
            self.torn.append(Damage(self.part_offset, len(b"".join(self.parts)), "torn tail"))
        elif self.started and not self.closed:
            self.torn.append(Damage(-1, 0, "missing closing bracket"))
        self.torn.extend(self.pending)
        self.pending = []


def _last_complete_element(fd: int, size: int) -> int:
    """Offset just after the last complete element, or just after ``[`` when there is none.

    Canonical files are scanned backwards line by line and stop at the first whole
    entry line; other layouts are parsed forward (rare: only a torn legacy file). An entry
    line right after ``]`` or a separator-less ``}`` lies after the array's end (lines added
    to a complete file) and is not kept.
    """
    for offset, line in _lines_backward(fd, size):
        body = line.rstrip(b"\r")
        if body[:1] == b"{" and _last_non_ws(fd, offset)[1] in _AFTER_END:
            continue
        if _is_entry_line(body):
            try:
                _parse_entry_line(body)
            except orjson.JSONDecodeError:
                pass
            else:
                return _entry_line_end(offset, line)
        if body[:1] == b"{":
            found, _ = _parse_line_alone(offset, line)
            if found:
                return found[-1][0]
    parser = _ForwardParser()
    last_end = -1
    bracket = -1
    for offset, line in _lines_forward(fd, 0, size):
        if bracket < 0 and b"[" in line:
            bracket = offset + line.index(b"[") + 1
        for end, _ in parser.feed(offset, line):
            last_end = end
    for end, _ in parser.flush():
        last_end = end
    return last_end if last_end >= 0 else max(bracket, 0)


@dataclass
class FileReport:
    """What check_file found: counts and problems, no changes made."""

    path: Path
    exists: bool
    entries: int = 0
    not_array: bool = False
    torn_tail: bool = False
    damage: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file is a valid, complete JSON array (or absent/empty)."""
        return not (self.not_array or self.torn_tail or self.damage)


def _open_read(path: Path) -> int | None:
    try:
        return os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None


def _warn_damage(path: Path) -> Callable[[Damage], None]:
    def report(item: Damage) -> None:
        logger.warning(
            "%s: skipped %d damaged bytes at offset %d (%s)",
            path,
            item.length,
            item.offset,
            item.reason,
        )

    return report


def _iter_forward(
    fd: int, end: int, on_damage: Callable[[Damage], None], *, followed: bool = False
) -> Iterator[dict[str, Any]]:
    """Oldest first; with followed, entries come after end, so an open element is damage."""
    parser = _ForwardParser()
    for offset, line in _lines_forward(fd, 0, end):
        for _, value in parser.feed(offset, line):
            for item in parser.damage:
                on_damage(item)
            parser.damage.clear()
            if isinstance(value, dict):
                yield value
    for _, value in parser.flush():
        if isinstance(value, dict):
            yield value
    parser.finish()
    for item in parser.damage:
        on_damage(item)
    if followed:
        for item in parser.torn:
            if item.offset >= 0:
                on_damage(item)


def _parse_line_alone(offset: int, raw: bytes) -> tuple[list[tuple[int, Any]], list[Damage]]:
    """Parse one line of elements by itself: ((end, value) of whole elements, damaged regions).

    For a line starting with ``{`` that is not one whole entry: damage, lines merged by a
    lost newline, or an entry glued to a torn write (``{..},]`` when a writer died one
    byte into its append). The forward reader keeps the whole elements such a line holds.
    """
    parser = _ForwardParser()
    parser.started = True
    parser.depth = 1
    found = list(parser.feed(offset, raw))
    parser.finish()
    return found, [*parser.damage, *(item for item in parser.torn if item.offset >= 0)]


def _iter_backward(
    fd: int, size: int, on_damage: Callable[[Damage], None]
) -> Iterator[dict[str, Any]]:
    """Newest first: canonical lines from the end; a legacy-layout prefix is parsed forward.

    Before the closing bracket or a first entry line, other lines are a torn tail and
    are skipped. After them, a line that is not an entry line starts a region in
    another layout (the old tools' indent=2), parsed forward and yielded reversed.
    """
    seen = False
    entries = False
    pending: list[Damage] = []
    legacy_end = -1
    for offset, raw in _lines_backward(fd, size):
        line = raw.rstrip(b"\r")
        stripped = line.strip(_WS)
        if not stripped:
            continue
        if line[:1] == b"{":
            if _is_entry_line(line):
                try:
                    value = _parse_entry_line(line)
                except orjson.JSONDecodeError:
                    pass
                else:
                    for item in pending:
                        on_damage(item)
                    pending = []
                    seen = entries = True
                    if isinstance(value, dict):
                        yield value
                    continue
            found, problems = _parse_line_alone(offset, raw)
            if seen:  # before the closing bracket or a first entry, problems are a torn tail
                pending.extend(problems)
            if found:
                for item in pending:
                    on_damage(item)
                pending = []
                seen = entries = True
                for _, value in reversed(found):
                    if isinstance(value, dict):
                        yield value
            continue
        if stripped in (b"[", _BOM + b"["):
            if not seen:  # a torn file in another layout (e.g. an old writer killed mid-dump)
                legacy_end = size
            break
        if stripped == b"]" and not seen:
            seen = True
            continue
        if seen:
            # Entry lines after this region start with ",\n", so it ends at this line; with
            # none, the region runs to the closing bracket, which ends its last element.
            legacy_end = offset + len(raw) if entries else size
            break
    else:
        if not seen:
            # No closing bracket and no entry line: a torn file in another layout.
            legacy_end = size
    for item in pending:
        on_damage(item)
    if legacy_end >= 0:
        yield from reversed(list(_iter_forward(fd, legacy_end, on_damage, followed=entries)))


def iter_entries(
    path: str | os.PathLike[str] | None = None,
    *,
    newest_first: bool = True,
    rotated: bool = True,
    on_damage: Callable[[Damage], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the log's entries (JSON objects), newest first by default.

    Each file is read as it was when reading it started; a torn tail (a write in
    progress, or a crashed writer) is skipped silently, and damage in the middle is
    passed to on_damage (default: a logged warning). With rotated, the rotated
    backups follow as one log. A missing file is an empty log. Never writes.
    """
    base = resolve_path(path)
    for fd, size, file in open_log_files(
        base, rotated=rotated, newest_first=newest_first, on_damage=on_damage
    ):
        report = on_damage if on_damage is not None else _warn_damage(file)
        reader = _iter_backward if newest_first else _iter_forward
        yield from reader(fd, size, report)


def open_log_files(
    path: Path,
    *,
    rotated: bool = True,
    newest_first: bool = True,
    on_damage: Callable[[Damage], None] | None = None,
) -> Iterator[tuple[int, int, Path]]:
    """Each readable file of the log, open for reading: (descriptor, size, file).

    With rotated, the rotated backups come too, in log order. A file that is not a
    JSON array is reported to on_damage (default: a logged warning) and skipped; the
    descriptor is closed when the caller moves on.
    """
    files = log_files(path) if rotated else [path]
    if not newest_first:
        files.reverse()
    for file in files:
        fd = _open_read(file)
        if fd is None:
            continue
        try:
            size = os.fstat(fd).st_size
            if _head_kind(fd) == "foreign":
                (on_damage or _warn_damage(file))(Damage(0, size, "not a JSON array"))
                continue
            yield fd, size, file
        finally:
            os.close(fd)


def check_file(path: str | os.PathLike[str] | None = None) -> FileReport:
    """Validate one file without changing it: entry count, torn tail, damaged regions."""
    base = resolve_path(path)
    fd = _open_read(base)
    if fd is None:
        return FileReport(base, exists=False)
    report = FileReport(base, exists=True)
    try:
        if _head_kind(fd) == "foreign":
            report.not_array = True
            return report
        parser = _ForwardParser()
        for offset, line in _lines_forward(fd, 0, os.fstat(fd).st_size):
            for _ in parser.feed(offset, line):
                report.entries += 1
        report.entries += sum(1 for _ in parser.flush())
        parser.finish()
        report.damage = list(parser.damage)
        report.torn_tail = bool(parser.torn)
        return report
    finally:
        os.close(fd)
