"""Beside the original Betty writer: its late bytes, and its 100,000-entry cap.

Betty repositories still run the original ``telemetry.capture`` writer. It takes the same
flock and rewrites the whole file: ``json.load``, append, keep the newest 100,000 entries,
``seek(0)``, ``truncate()``, ``json.dump(indent=2)`` and a newline, then unlocks *before*
``close()`` flushes its buffer. Just after it unlocks, the file may hold only a prefix of
that text (nothing at all, for a log under about 8 KiB); the rest lands at its offset later.

Late bytes. A file whose end may be such a prefix (empty; or torn with a last line of the
indent=2 layout: blank, indented, or the opening bracket alone) is never cut nor written
into while it may still change: the writer waits, holding the lock (the old writer's close
needs none), until the file changes (then it looks again) or has stayed the same for
`GRACE` seconds, by its change time or as watched; at most the store's lock_timeout. A file
that stayed the same may be a stopped old writer's, or a dead one's: it is set aside whole
by a rotation (it becomes ``telemetry.json.1``, where late bytes land harmlessly and
readers read it with the log) and the append goes to a new file. Only a tail unchanged for
`AT_REST` seconds is repaired in place, as any torn tail. The one such
prefix that is valid JSON, all but the final newline (an indented ``}``, a newline, ``]``),
is appended to at once: the separator gets a newline exactly where the late one lands
(`late_newline_at`).

The cap. An old writer that loads more entries than its cap keeps the newest and drops the
rest. Once an old writer's write has been seen (the live file starts, or ends, in its
indent=2 layout, which ours never do; or the record ``telemetry.json.legacy`` beside the log
says so, `legacy_path`), every betty_otel writer keeps the live file at most
`limit_of(cap)` entries, 90% of the cap: an append that would pass it rotates the file
first (it becomes ``telemetry.json.1``; older backups move up; none is deleted; the record
is written, since the new file starts in our layout) and readers read the rotated files as
one log. The margin leaves room for 10,000 old captures between two of ours and for old
writers that opened the file just before the rotation (they write into the backup, still
part of the log).

Counting costs an append nothing: a writer knows the count after its own appends
(`CapGuard`), counts only the lines others appended since, and counts the whole file only
when an old writer rewrote it since (its tail is in the old layout again), work in
proportion to that rewrite, or when it starts and the file is too large for the bound its
size gives. The record also carries a recent count of a large file to writers that start
later, checked against the file before use.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from betty_otel._jsontext import JSONDecodeError, dumps, loads
from betty_otel._store.errors import LockTimeoutError
from betty_otel._store.files import write_private
from betty_otel._store.format import BOM, SEP, WHITESPACE
from betty_otel._store.lines import blocks_forward, line_ending_at, lines_backward
from betty_otel._store.tail import insertion_point

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = [
    "AT_REST",
    "GRACE",
    "ORIGINAL_CAP",
    "CapGuard",
    "late_newline_at",
    "legacy_path",
    "limit_of",
    "read_legacy",
    "settled_end",
]

ORIGINAL_CAP: Final = 100_000
"""Entries the original Betty writer keeps when it rewrites the log (the newest)."""
GRACE: Final = 0.025
"""Seconds a tail that may be an old writer's dump still landing is waited for. The old
writer's gap between unlock and close is microseconds unless it is descheduled; one that
stays the same this long is set aside (rotated), not written into, so a longer stop costs
a rotation, never an entry. An explicit repair cuts it after this."""
AT_REST: Final = 60.0
"""Seconds after its last change that such a tail counts as a dead writer's leftover,
repaired in place like any torn tail."""
_REFRESH: Final = 1 << 18
"""Bytes appended since the record's count after which a writer records a new count, so
a writer that starts later counts at most about this much."""
_BLOCK: Final = 1 << 20
_MARK: Final = 16
"""Bytes before a counted offset kept to check that the file there is still the same."""
_ELEMENT_LINE: Final = rb"\n {0,2}[^ \t\r\n\]}]"
"""A line that starts an element: one of our entry lines, or an old writer's indent=2
element (deeper lines are inside one; closing lines end one). Compiled when counting
(re caches it), not when an append imports this."""


def legacy_path(path: Path) -> Path:
    """The record beside the log that an old writer's write has been seen."""
    return path.with_name(f"{path.name}.legacy")


def limit_of(cap: int) -> int:
    """Most entries the live file holds once old writers were seen: 90% of their cap."""
    return cap - cap // 10


# -- late bytes -----------------------------------------------------------------


def _may_be_landing(fd: int, size: int) -> bool:
    """True when the file may be a strict prefix of an old writer's json.dump(indent=2):
    empty, or its last two lines that are not blank are of that layout (indented, or the
    opening bracket alone at the start), never our layout nor lines after a closed array."""
    if size == 0:
        return True
    seen = 0
    for offset, line in lines_backward(fd, size):
        if not line.strip(b" "):
            continue  # a blank line, or an indentation cut short
        if line == b"[" and offset == 0:
            return True
        if not line.startswith(b"  "):
            return False
        seen += 1
        if seen == 2:
            return True
    return False


def _changes_within_grace(fd: int, before: os.stat_result, deadline: float, path: Path) -> bool:
    """Wait until the file differs from before (True) or has stayed as before for GRACE
    seconds (False). before is its fstat taken before its bytes were looked at, so a
    change in between is seen too.

    Raises:
        LockTimeoutError: neither happened by the deadline.
    """
    seen = (before.st_size, before.st_mtime_ns, before.st_ctime_ns)
    watched = time.monotonic()
    delay = 0.0005
    while True:
        info = os.fstat(fd)
        if (info.st_size, info.st_mtime_ns, info.st_ctime_ns) != seen:
            return True
        now = time.monotonic()
        # Its change time, which no one can set back, says how long it has been the same;
        # watching covers a clock that was stepped back.
        if now - watched >= GRACE or time.time_ns() - before.st_ctime_ns >= GRACE * 1e9:
            return False
        if now >= deadline:
            msg = "timed out waiting for an old Betty writer's last bytes to land"
            raise LockTimeoutError(errno.EAGAIN, msg, str(path))
        time.sleep(min(delay, max(deadline - now, 0.0)))
        delay = min(delay * 2, 0.01)


def settled_end(fd: int, deadline: float, path: Path) -> tuple[int, int, bytes, bool]:
    """The size, insertion point and prefix (see tail.insertion_point) of the locked file,
    and whether its end may still be an old writer's dump in progress.

    A file that is empty, or torn in the old layout, is looked at again until it changes
    into something else or stays the same for GRACE seconds. If it then changed less than
    AT_REST seconds ago, its end may still land (an old writer stopped in its gap, or one
    that just died: no one can tell): True, and the caller must not write into it. One
    unchanged for AT_REST is a dead writer's leftover, repaired like any torn tail.

    Raises:
        LockTimeoutError: it kept changing until the deadline.
    """
    while True:
        before = os.fstat(fd)
        size = before.st_size
        pos, prefix = insertion_point(fd, size)
        if (pos >= 0 and size > 0) or not _may_be_landing(fd, size):
            return size, pos, prefix, False
        if time.time_ns() - before.st_ctime_ns >= AT_REST * 1e9:
            return size, pos, prefix, False
        if not _changes_within_grace(fd, before, deadline, path):
            return size, pos, prefix, True


def late_newline_at(fd: int, size: int, pos: int, prefix: bytes) -> bytes:
    """The separator to write at pos: prefix, or prefix and a newline for ``  }\\n]``.

    An indented last element and a closing bracket with no newline after it is what an
    old writer leaves when only its final newline is still to land, at offset size. With
    the extra newline our payload holds a newline exactly there, so the late byte changes
    nothing; in a file that was at rest it is a blank line.
    """
    if prefix == SEP and pos == size - 2 and os.pread(fd, 2, pos) == b"\n]":
        return SEP + b"\n" if _old_layout_tail(fd, pos) else prefix
    return prefix


# -- the cap --------------------------------------------------------------------


def count_elements(fd: int, start: int, end: int) -> int:
    """Elements that start in [start, end), one per line (ours, and the old writers'
    indent=2); from 0, an element on the opening bracket's line counts too."""
    element_line = re.compile(_ELEMENT_LINE)
    count = 0
    carry = b""
    offset = start
    for data in blocks_forward(fd, start, end, _BLOCK):
        offset += len(data)
        chunk = carry + data
        # A match is at most 4 bytes and never holds a second newline: one that starts in
        # the last 3 bytes may be incomplete, so it is counted with the next block.
        stop = len(chunk) if offset >= end else max(len(chunk) - 3, 0)
        count += len(element_line.findall(chunk)) - len(element_line.findall(chunk, stop))
        carry = chunk[stop:]
    if start == 0:
        head = os.pread(fd, 64, 0).removeprefix(BOM).lstrip(WHITESPACE)
        if head[:1] == b"[" and head[1:].lstrip(b" \t")[:1] not in (b"", b"\r", b"\n", b"]"):
            count += 1
    return count


def _old_layout_tail(fd: int, pos: int) -> bool:
    """True when the element before the insertion point pos is indented: the old layout."""
    if pos <= 1:
        return False
    return line_ending_at(fd, pos)[:1] in (b" ", b"\t")


def _old_layout_head(fd: int) -> bool:
    """True when the first element is indented: an old writer wrote the whole file."""
    head = os.pread(fd, 64, 0).removeprefix(BOM).lstrip(WHITESPACE)
    rest = head[1:]
    return (
        head[:1] == b"["
        and rest[:1] in (b"\r", b"\n")
        and rest.lstrip(b"\r\n")[:1] in (b" ", b"\t")
        and rest.lstrip(WHITESPACE)[:1] not in (b"", b"]")
    )


def _mark(fd: int, offset: int) -> bytes:
    """The bytes just before offset that a census keeps."""
    size = min(offset, _MARK)
    return os.pread(fd, size, offset - size)


class _Census:
    """At most count elements lie in [0, offset) of the file (dev, ino); exact when
    counted rather than bounded by size; mark is the bytes just before offset."""

    __slots__ = ("count", "exact", "ino", "mark", "offset")

    def __init__(
        self, ino: tuple[int, int], offset: int, count: int, mark: bytes, *, exact: bool
    ) -> None:
        self.ino = ino
        self.offset = offset
        self.count = count
        self.mark = mark
        self.exact = exact

    def holds(self, fd: int, ino: tuple[int, int], pos: int) -> bool:
        """True when it still describes the file open as fd, whose insertion point is pos."""
        if ino != self.ino or self.offset > pos:
            return False
        start = self.offset - len(self.mark)
        return start >= 0 and os.pread(fd, len(self.mark), start) == self.mark


def read_legacy(path: Path) -> dict[str, Any] | None:
    """The record that old writers were seen beside the log at path, or None without one.

    A record that cannot be read (damaged, a symbolic link) still says they were seen: {}.
    """
    try:
        fd = os.open(legacy_path(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        record = loads(os.read(fd, 4096))
    except (OSError, JSONDecodeError, ValueError):
        return {}
    finally:
        os.close(fd)
    return record if isinstance(record, dict) else {}


def _census_of(record: dict[str, Any]) -> _Census | None:
    """The census a record carries, if it is well formed."""
    try:
        ino = (record["dev"], record["ino"])
        offset, count, mark = record["offset"], record["count"], bytes.fromhex(record["mark"])
        exact = record["exact"]
    except (KeyError, TypeError, ValueError):
        return None
    values = (*ino, offset, count)
    if not all(type(value) is int and value >= 0 for value in values) or type(exact) is not bool:
        return None
    return _Census(ino, offset, count, mark, exact=exact)


class CapGuard:
    """One store's view of the cap: whether old writers were seen, and the live file's count.

    Old writers were seen when the live file starts in their layout (their rewrite puts
    indent=2 at its head, and ours never do), or the record beside the log says so. The
    record is written when the live file is rotated (its successor starts in our layout)
    and, to spare later writers a long count, when the file is past `_REFRESH` bytes.
    Used under the writers' lock only; a plain class (see the module doc for the scheme).
    """

    __slots__ = ("_census", "_recorded", "_seen", "limit", "path")

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.limit = limit_of(cap)
        self._seen: str | None = None
        """When old writers were first seen writing this log (UTC), once known here."""
        self._census: _Census | None = None
        self._recorded = 0
        """The offset of the count in the record beside the log, as this store last knew
        it; -1 when the record is to be written after the append under way (a rotation)."""

    def fits(self, incoming: int) -> bool:
        """True when a warm append of incoming entries needs no look at the cap."""
        census = self._census
        return self._seen is None or census is None or census.count + incoming <= self.limit

    def must_rotate(self, fd: int, ino: tuple[int, int], pos: int, incoming: int) -> bool:
        """True when the live file must be rotated before incoming entries go at pos.

        The careful path calls this on every append, with the file settled and pos its
        insertion point.
        """
        census = self._census_now(fd, ino, pos, incoming)
        if census is None:
            return False
        if census.count + incoming > self.limit and not census.exact:
            census = self._counted(fd, ino, pos)
        return census.count > 0 and census.count + incoming > self.limit

    def appended(self, ino: tuple[int, int], pos: int, incoming: int, payload: bytes) -> None:
        """Our append of incoming entries left the insertion point at pos; payload ended
        with the closing bracket."""
        census = self._census
        if self._seen is None or census is None or census.ino != ino:
            return
        census.offset = pos
        census.count += incoming
        census.mark = payload[max(0, len(payload) - 3 - _MARK) : len(payload) - 3]
        if self._recorded < 0 or (pos > _REFRESH and pos - self._recorded > _REFRESH):
            self._record(census)

    def rotated(self, fd: int, ino: tuple[int, int], pos: int, *, old_writer: bool) -> None:
        """The live file was rotated (old_writer: it was an old writer's dump): the new one
        (insertion point pos) holds no element, and no longer says that old writers were
        seen; the record will."""
        if old_writer and self._seen is None:
            self._seen = _seen_in(read_legacy(self.path))
        self._census = _Census(ino, pos, 0, _mark(fd, pos), exact=True)
        self._recorded = -1

    # -- where the count comes from ---------------------------------------------

    def _census_now(self, fd: int, ino: tuple[int, int], pos: int, incoming: int) -> _Census | None:
        """A count for [0, pos), or None while no old writer has been seen."""
        old_tail = _old_layout_tail(fd, pos)
        census = self._census
        if old_tail or census is None or not census.holds(fd, ino, pos):
            # An old writer may have rewritten what was counted: the record, or a new count.
            record = read_legacy(self.path)
            if self._seen is None:
                if record is None and not old_tail and not _old_layout_head(fd):
                    return None
                self._seen = _seen_in(record)
            census = None if old_tail or not record else _census_of(record)
            if census is None or not census.holds(fd, ino, pos):
                return self._bounded(fd, ino, pos, incoming)
            self._recorded = census.offset
        if census.offset < pos:  # entries others appended since
            census.count += count_elements(fd, census.offset, pos)
            census.offset = pos
            census.mark = _mark(fd, pos)
        self._census = census
        return census

    def _bounded(self, fd: int, ino: tuple[int, int], pos: int, incoming: int) -> _Census:
        """A count for [0, pos) by size alone (an element and its separator take 2 bytes
        or more) while that leaves room for incoming entries; else counted."""
        if pos // 2 + incoming <= self.limit:
            self._census = _Census(ino, pos, pos // 2, _mark(fd, pos), exact=False)
            return self._census
        return self._counted(fd, ino, pos)

    def _counted(self, fd: int, ino: tuple[int, int], pos: int) -> _Census:
        count = count_elements(fd, 0, pos)
        self._census = _Census(ino, pos, count, _mark(fd, pos), exact=True)
        self._recorded = 0  # recorded after the append when it is worth it (see appended)
        return self._census

    def _record(self, census: _Census) -> None:
        """Write the record beside the log (atomically; its count is only a cache)."""
        record = {
            "seen": self._seen or _utc_now(),
            "dev": census.ino[0],
            "ino": census.ino[1],
            "offset": census.offset,
            "count": census.count,
            "exact": census.exact,
            "mark": census.mark.hex(),
            "limit": self.limit,
        }
        target = legacy_path(self.path)
        temp = target.with_name(f".{target.name}.new-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            write_private(temp, dumps(record) + b"\n")
            temp.replace(target)
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink()
            return  # the next writer counts again
        self._recorded = census.offset


def _seen_in(record: dict[str, Any] | None) -> str:
    """When old writers were first seen, from the record beside the log, else now."""
    seen = (record or {}).get("seen")
    return seen if isinstance(seen, str) and seen else _utc_now()


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
