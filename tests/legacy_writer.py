"""The original Betty writer, as the ``telemetry.capture`` skill in Betty repositories runs it.

    if not path.exists():
        path.write_text("[]")
    with open(path, "r+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            data = json.load(f)
            data.append(entry)
            data = data[-100_000:]
            f.seek(0)
            f.truncate()
            json.dump(data, f, indent=2)
            f.write("\\n")
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    # leaving the with block, close() flushes the last buffered bytes: after the unlock

Its flaws are kept, because betty_otel must live with them: the last bytes of the dump
(everything, for a log under about 8 KiB) land after the lock is released, at the offset
they were meant for, whatever the file holds by then; an old writer that loads more than
cap entries drops the oldest; the file is created (``[]``, without the lock) only when
missing, and ``json.load`` raises on anything else it cannot read, an empty file too.

`legacy_append` is that writer, on a real text-mode ``open(path, "r+")`` file. Two
parameters make its gap testable; neither changes what it does:

- between: called in the gap, after the unlock and before close() (what another writer
  does while the old one is descheduled there). A forked child that calls ``os._exit``
  in it is an old writer killed there: its buffered bytes never land.
- late: how many bytes of the end of the dump (``json.dump`` text plus newline) are still
  buffered at the unlock, instead of what the 8 KiB buffers leave: any split point,
  deterministically (1: only the final newline is late; the whole length: nothing of the
  dump is in the file at the unlock). The file object is then the stack ``open()`` builds
  (FileIO, BufferedRandom, TextIOWrapper) over a FileIO that holds back those bytes until
  close() and then writes them at their offset, as the real buffers do.

Tests that shrink cap say so: they simulate the real cap (ORIGINAL_CAP) on a smaller log.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

ORIGINAL_CAP = 100_000
"""Entries the original writer keeps (the newest) when it rewrites the file."""
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"
"""Python 3.12+ warns when a process with threads forks; tests of the gap do that on purpose."""


class _LateFileIO(io.FileIO):
    """A FileIO that keeps what is written from the first late byte on until close().

    The writer calls `hold_back` at the unlock, once the whole dump has reached this
    object: the last `late` bytes are kept in memory, the rest written. close() writes the
    kept bytes at the offset they were meant for, which is what a real buffer flushed by
    close() does (writing at the descriptor's position, whatever the file holds by then).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, "r+")
        self._pending: list[tuple[int, bytes]] = []
        self._late: tuple[int, bytes] | None = None

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._pending.append((self.tell(), data))
        self.seek(len(data), os.SEEK_CUR)
        return len(data)

    def hold_back(self, late: int) -> None:
        """Write all that was written so far but its last late bytes."""
        if not self._pending:
            return
        start = self._pending[0][0]
        text = b"".join(data for _, data in self._pending)
        self._pending = []
        keep = max(0, len(text) - late)
        os.pwrite(self.fileno(), text[:keep], start)
        self._late = (start + keep, text[keep:])

    def close(self) -> None:
        if not self.closed and self._late is not None:
            offset, data = self._late
            self._late = None
            os.pwrite(self.fileno(), data, offset)
        super().close()


def _open_text(path: Path, late: int | None) -> TextIO:
    """The file as open(path, "r+") gives it; with late, over a _LateFileIO."""
    if late is None:
        return open(path, "r+")  # the original's very call
    raw = _LateFileIO(path)
    buffered = io.BufferedRandom(raw)
    return io.TextIOWrapper(buffered)


def legacy_append(
    path: str | os.PathLike[str],
    entry: Any,
    *,
    cap: int = ORIGINAL_CAP,
    late: int | None = None,
    between: Callable[[], object] | None = None,
) -> None:
    """Append entry the way the original Betty writer does (see the module doc).

    Raises:
        json.JSONDecodeError: the file is not JSON (an empty file included), as the
            original raises; nothing was written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_text("[]")
    with _open_text(target, late) as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            data = json.load(f)
            data.append(entry)
            data = data[-cap:]
            f.seek(0)
            f.truncate()
            json.dump(data, f, indent=2)
            f.write("\n")
            if late is not None:  # the whole dump reaches the raw file, which holds back its end
                f.flush()
                raw = f.buffer.raw  # type: ignore[attr-defined]
                assert isinstance(raw, _LateFileIO)
                raw.hold_back(late)
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        if between is not None:
            between()


def legacy_text(entries: list[Any]) -> bytes:
    """The bytes the original writer leaves for entries: json.dump(indent=2) and a newline."""
    return (json.dumps(entries, indent=2) + "\n").encode()


# -- probes for tests of the gap ------------------------------------------------


def lock_is_held(path: Path) -> bool:
    """True while some writer holds flock(LOCK_EX) on the file at path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def waits_for_flock(pid: int) -> bool:
    """True while process pid waits for a flock (a ``->`` line of /proc/locks)."""
    pattern = re.compile(rf"^\d+: -> FLOCK\s+ADVISORY\s+WRITE {pid} ", re.MULTILINE)
    return pattern.search(Path("/proc/locks").read_text()) is not None


def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait until condition holds (a test's way to order events; never a timing claim)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.0005)
