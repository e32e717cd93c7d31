"""The stats summary kept beside the log: what a file's first bytes hold, checked before use.

``telemetry.json.stats`` (the log's name plus ``.stats``) holds, for each file of the
log (the current file and its rotated backups, known by device and inode number) and
each grouping (skill, caller, status), the groups of every complete entry up to an
offset: counts per status word and the sorted durations. `betty_otel.query.stats`
then reads only the bytes after that offset.

A record is used only when the file it names is still the same bytes up to its
offset: same device and inode, at least that size, and the same bytes in a set of
windows (the whole prefix up to 1 MiB; beyond, its first 64 KiB, 30 spread 4 KiB
windows and the last 4 KiB before the offset), compared by BLAKE2 digest. Appends
write only after the offset (they replace the closing bracket), so they keep a
record valid; a rewrite (the original Betty writer's ``json.dump``), a truncation
below the offset, a replaced or moved file fails the check, and the file is read
whole again. The window bytes are taken from the very blocks the scan read, so a
change during the scan cannot be recorded as the scanned state.

The summary is a cache and is never trusted: it is read only when it is a regular
file (not a symbolic link) owned by this user and writable by no one else, its
checksum matches and every field has the expected type and range; anything else
is ignored (and replaced by the next write). It is written whole to a temporary
file (mode 0600) and renamed over the name, never written in place; a file at that
name that is not a summary is never replaced. Failing to read or write it is
silent (logged at debug level) and never changes a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = [
    "SUFFIX",
    "Capture",
    "Record",
    "SummaryGroup",
    "make_record",
    "read_summary",
    "summary_path",
    "write_summary",
]

logger = logging.getLogger(__name__)

SUFFIX: Final = ".stats"
"""The summary's name is the log's name plus this."""
_MAGIC: Final = b"betty-otel stats summary 1\n"
_MAX_BYTES: Final = 1 << 31
"""A summary larger than this is not read."""
_WHOLE: Final = 1 << 20
"""Files up to this size are checked whole."""
_HEAD: Final = 1 << 16
_WINDOW: Final = 1 << 12
_SPREAD: Final = 30
_MAX_WINDOWS: Final = _SPREAD + 2
_MAX_DAMAGE: Final = 1000
_BY: Final = ("skill", "caller", "status")


def summary_path(log: Path) -> Path:
    """Where the summary of the log at log lives: beside it, its name plus ``.stats``."""
    return log.with_name(log.name + SUFFIX)


@dataclass
class SummaryGroup:
    """One group's figures over a file's summarised bytes."""

    count: int
    statuses: dict[str, int]
    """Entries per status word as written (``(none)`` for a missing status)."""
    durations: Sequence[float]
    """The numeric durations, sorted (an array, or a view of the summary's bytes)."""
    total: float
    """The sum of durations, in that order."""


@dataclass
class Record:
    """The summary of one file of the log, for one grouping, up to offset end."""

    dev: int
    ino: int
    by: str
    end: int
    windows: list[tuple[int, int]]
    digest: str
    plain: bool
    """Every grouping value was a string or missing (so key filters can be answered)."""
    damage: list[tuple[int, int, str]]
    groups: dict[str | None, SummaryGroup]

    def matches(self, fd: int, size: int) -> list[bytes] | None:
        """The window bytes when the file open at fd still holds the summarised bytes."""
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (self.dev, self.ino) or size < self.end:
            return None
        chunks = [os.pread(fd, length, offset) for offset, length in self.windows]
        return chunks if _digest(self.windows, chunks) == self.digest else None


class Capture:
    """The window bytes of a scan, taken from the blocks as they are read.

    Windows are chosen from the size before reading (the summarised end is known only
    at the end); `windows` clips them to the end and adds the last 4 KiB before it
    (from start on), whichever blocks they were read in: a scan in parts
    (`betty_otel.query.parts`) hands over its pieces and records the same windows.
    """

    def __init__(self, start: int, size: int) -> None:
        self.start = start
        if start > 0:
            spans: list[tuple[int, int]] = []
        elif size <= _WHOLE:
            spans = [(0, size)]
        else:
            step = size // (_SPREAD + 1)
            spans = [(0, _HEAD), *((step * k, _WINDOW) for k in range(1, _SPREAD + 1))]
        self.spans = spans
        self.buffers = [bytearray(length) for _, length in spans]
        self.tail = b""
        self.tail_end = start
        self.recent = b""
        """The last bytes (up to 4 KiB) read before recent_end."""
        self.recent_end = start

    def fill(self, base: int, data: bytes) -> None:
        """Copy the parts of data (at offset base) that fall in a window."""
        stop = base + len(data)
        for (offset, length), buffer in zip(self.spans, self.buffers, strict=True):
            low, high = max(offset, base), min(offset + length, stop)
            if low < high:
                buffer[low - offset : high - offset] = data[low - base : high - base]

    def add(self, base: int, data: bytes, last_end: int) -> None:
        """Take a block read at base; last_end: just after its last complete element (or -1)."""
        self.fill(base, data)
        if last_end >= 0 and last_end <= base + len(data):
            low = max(last_end - _WINDOW, self.start)
            tail = data[max(low, base) - base : max(last_end - base, 0)]
            if low < base and self.recent_end == base:
                before = self.recent[max(0, len(self.recent) - (base - low)) :]
                tail = before[: len(before) - max(base - last_end, 0)] + tail
            self.tail, self.tail_end = tail, last_end
        stop = base + len(data)
        if stop - _WINDOW >= max(base, self.recent_end):
            self.recent = data[-_WINDOW:]
        elif base <= self.recent_end < stop:
            self.recent = (self.recent + data[self.recent_end - base :])[-_WINDOW:]
        elif base > self.recent_end:
            self.recent = data[-_WINDOW:]
        self.recent_end = max(self.recent_end, stop)

    def pieces(self, low: int, high: int) -> list[tuple[int, bytes]]:
        """The window bytes read in [low, high), as (offset, bytes)."""
        found = []
        for (offset, length), buffer in zip(self.spans, self.buffers, strict=True):
            start, stop = max(offset, low), min(offset + length, high)
            if start < stop:
                found.append((start, bytes(buffer[start - offset : stop - offset])))
        return found

    def windows(self, end: int) -> tuple[list[tuple[int, int]], list[bytes]]:
        """The windows inside [0, end), and their bytes."""
        spans: list[tuple[int, int]] = []
        chunks: list[bytes] = []
        for (offset, length), buffer in zip(self.spans, self.buffers, strict=True):
            kept = min(length, end - offset)
            if kept > 0:
                spans.append((offset, kept))
                chunks.append(bytes(buffer[:kept]))
        if self.tail and self.tail_end == end:
            spans.append((end - len(self.tail), len(self.tail)))
            chunks.append(self.tail)
        return spans, chunks


def _digest(windows: list[tuple[int, int]], chunks: list[bytes]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for (offset, length), chunk in zip(windows, chunks, strict=True):
        digest.update(b"%d:%d:" % (offset, length))
        digest.update(chunk)
    return digest.hexdigest()


def make_record(
    fd: int,
    by: str,
    end: int,
    windows: tuple[list[tuple[int, int]], list[bytes]],
    plain: bool,
    damage: list[tuple[int, int, str]],
    groups: dict[str | None, SummaryGroup],
) -> Record:
    """A record of the file open at fd, its windows digested."""
    info = os.fstat(fd)
    spans, chunks = windows
    return Record(
        info.st_dev, info.st_ino, by, end, spans, _digest(spans, chunks), plain, damage, groups
    )


# -- the file -----------------------------------------------------------------


def read_summary(log: Path) -> list[Record]:
    """The records of the log's summary; [] when it is absent, unsafe or invalid."""
    try:
        data = _read_private(summary_path(log))
        return [] if data is None else _decode(data)
    except (OSError, ValueError, TypeError, KeyError, OverflowError) as exc:
        logger.debug("%s: summary ignored (%s)", log, exc)
        return []


def _read_private(path: Path) -> bytes | None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o022
            or info.st_size > _MAX_BYTES
        ):
            msg = "not a private regular file of this user"
            raise ValueError(msg)
        parts = []
        offset = 0
        while chunk := os.pread(fd, info.st_size + 1 - offset, offset):
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _decode(data: bytes) -> list[Record]:
    """Parse and check every field (raises ValueError / TypeError / KeyError when invalid)."""
    head = len(_MAGIC) + 12
    if not data.startswith(_MAGIC) or len(data) < head:
        raise ValueError("not a summary")
    checksum = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "big")
    if zlib.crc32(memoryview(data)[len(_MAGIC) + 4 :]) != checksum:
        raise ValueError("checksum")
    length = int.from_bytes(data[len(_MAGIC) + 4 : head], "big")
    header = orjson.loads(data[head : head + length])
    blob = memoryview(data)[head + length :]
    if header["order"] != sys.byteorder or len(blob) % 8:
        raise ValueError("durations")
    values = blob.cast("d")  # a view: no copy of the durations
    records = header["records"]
    if not isinstance(records, list):
        raise TypeError("records")
    taken = 0
    found = []
    for item in records:
        record, taken = _record(item, values, taken)
        found.append(record)
    if taken != len(values):
        raise ValueError("durations left over")
    return found


def _int(value: object, low: int = 0) -> int:
    if type(value) is not int or value < low:
        raise ValueError("expected an int")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _record(item: Any, values: Sequence[float], taken: int) -> tuple[Record, int]:
    if not isinstance(item, dict) or item.get("by") not in _BY:
        raise ValueError("record")
    end = _int(item["end"], 1)
    windows = [(_int(w[0]), _int(w[1])) for w in item["windows"]]
    if len(windows) > _MAX_WINDOWS or any(o + n > end for o, n in windows):
        raise ValueError("windows")
    damage = [(_int(d[0], -1), _int(d[1]), _text(d[2])) for d in item["damage"]]
    if len(damage) > _MAX_DAMAGE or not isinstance(item["plain"], bool):
        raise ValueError("damage")
    groups: dict[str | None, SummaryGroup] = {}
    for key, count, statuses, numeric, total in item["groups"]:
        if (key is not None and not isinstance(key, str)) or key in groups:
            raise ValueError("group key")
        counts = {_text(word): _int(n, 1) for word, n in statuses.items()}
        if sum(counts.values()) != _int(count, 1) or _int(numeric) > count:
            raise ValueError("group counts")
        if taken + numeric > len(values):
            raise ValueError("durations")
        if type(total) is not float and type(total) is not int:
            raise TypeError("group total")
        groups[key] = SummaryGroup(count, counts, values[taken : taken + numeric], float(total))
        taken += numeric
    digest = _text(item["digest"])
    record = Record(
        _int(item["dev"]), _int(item["ino"]), item["by"], end, windows, digest,
        item["plain"], damage, groups,
    )  # fmt: skip
    return record, taken


def write_summary(log: Path, records: list[Record]) -> None:
    """Replace the summary with records: a private temporary file renamed over it; silent."""
    target = summary_path(log)
    try:
        if not _replaceable(target):
            logger.debug("%s: not a summary; left alone", target)
            return
        data = _encode(records)
        with _temporary(target) as (fd, temp):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            temp.replace(target)
    except (OSError, ValueError, TypeError, OverflowError) as exc:
        logger.debug("%s: summary not written (%s)", target, exc)


def _replaceable(target: Path) -> bool:
    """True when nothing is at target, or a symbolic link, or a summary (even a damaged one)."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return True
    if stat.S_ISLNK(info.st_mode):
        return True  # rename replaces the link itself, never its target
    if not stat.S_ISREG(info.st_mode):
        return False
    if info.st_size == 0:
        return True
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.pread(fd, len(_MAGIC), 0) == _MAGIC
    finally:
        os.close(fd)


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[tuple[int, Path]]:
    """A new private file beside target; removed unless renamed away."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        yield fd, temp
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _encode(records: list[Record]) -> bytes:
    blob = array("d")
    items = []
    for record in records:
        groups = []
        for key, group in record.groups.items():
            groups.append((key, group.count, group.statuses, len(group.durations), group.total))
            blob.frombytes(memoryview(group.durations).cast("B"))  # type: ignore[arg-type]
        items.append(
            {
                "dev": record.dev,
                "ino": record.ino,
                "by": record.by,
                "end": record.end,
                "windows": record.windows,
                "digest": record.digest,
                "plain": record.plain,
                "damage": record.damage[:_MAX_DAMAGE],
                "groups": groups,
            }
        )
    header = orjson.dumps({"order": sys.byteorder, "records": items})
    body = len(header).to_bytes(8, "big") + header + blob.tobytes()
    return _MAGIC + zlib.crc32(body).to_bytes(4, "big") + body
