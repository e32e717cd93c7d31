"""The stats summary kept beside the log: what a file's first bytes hold, proven before use.

``telemetry.json.stats`` (the log's name plus ``.stats``) holds, for each file of the
log (the current file and its rotated backups, known by device and inode number) and
each grouping (skill, caller, status), the groups of every complete entry up to an
offset: counts per status word and the sorted durations. `betty_otel.query.stats`
then reads only the bytes after that offset.

A record also holds the xxh3-128 digests (seeded at random, per record) of the bytes
it counted, in spans that cover the whole prefix up to its offset. The digests are
taken from the very blocks the scan parsed (`Capture`; a helper's part
(`betty_otel.query.parallel`) hands over the digest of the bytes it parsed), so a record
describes exactly the bytes it counted, whatever happens to the file during the scan.
Before a record is used, every span is hashed again from the file and compared
(`betty_otel.query.proof`): a record is used only when the file still holds the very
bytes it counted. A record moved forward keeps its spans and adds those of the bytes
counted since, so a stale record is never carried forward.

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
import itertools
import logging
import os
import stat
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from xxhash import xxh3_128

__all__ = [
    "SUFFIX",
    "Capture",
    "Record",
    "Span",
    "SummaryGroup",
    "make_record",
    "new_hasher",
    "new_seed",
    "read_summary",
    "summary_path",
    "write_summary",
]

logger = logging.getLogger(__name__)

SUFFIX: Final = ".stats"
"""The summary's name is the log's name plus this."""
_FAMILY: Final = b"betty-otel stats summary "
"""How every version of the summary starts: a file starting so may be replaced."""
_MAGIC: Final = _FAMILY + b"5\n"
"""Version 5: version 4 took a damaged last element before the closing bracket for a torn
tail, and reported no damage for it (version 3 counted two lines whose first was cut
inside a value as one entry)."""
_MAX_BYTES: Final = 1 << 31
"""A summary larger than this is not read."""
_MAX_SPANS: Final = 4096
"""Spans per record: a whole read in parts makes at most 34, each move forward one
more, and moves forward come at geometric steps of the file's size (`stats`)."""
_MAX_DAMAGE: Final = 1000
_BY: Final = ("skill", "caller", "status")
_DIGEST_CHARACTERS: Final = frozenset("0123456789abcdef")

Span = tuple[int, str]
"""The end offset of a span (it starts where the one before ends, the first at 0), and
the hex xxh3-128 digest of its bytes."""


def summary_path(log: Path) -> Path:
    """Where the summary of the log at log lives: beside it, its name plus ``.stats``."""
    return log.with_name(log.name + SUFFIX)


def new_seed() -> int:
    """A random seed for a new record's digests (63 bits: a JSON integer everywhere)."""
    return int.from_bytes(os.urandom(8), "big") >> 1


def new_hasher(seed: int) -> xxh3_128:
    """An xxh3-128 hasher with seed."""
    import xxhash  # noqa: PLC0415 - only stats needs it; `import betty_otel.query` stays quick

    return xxhash.xxh3_128(seed=seed)


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
    seed: int
    spans: list[Span]
    """The digests of the bytes counted, with seed: spans covering [0, end)."""
    plain: bool
    """Every grouping value was a string or missing (so key filters can be answered)."""
    damage: list[tuple[int, int, str]]
    groups: dict[str | None, SummaryGroup]


class Capture:
    """The digests of the bytes a scan counts, taken from the blocks as they are read.

    The bytes after the last complete element wait (they are counted only if a later
    element completes); a helper's part comes as digests of the bytes it read, and
    closes the span being hashed here. Bytes not handed over (a gap) break the capture:
    then `close` gives None and no record is made.
    """

    def __init__(self, start: int, seed: int) -> None:
        self.start = start
        self.seed = seed
        self.spans: list[Span] = []
        self.span_start = self.start
        self.hasher = new_hasher(self.seed)
        self.hashed = self.start
        """The end of the bytes hashed into hasher (they start at span_start)."""
        self.pending = bytearray()
        """The bytes read after hashed, not hashed yet."""
        self.broken = False

    def add(self, base: int, data: bytes, last_end: int) -> None:
        """Take a block read at base; last_end: just after its last complete element (or -1)."""
        seen = self.hashed + len(self.pending)
        if self.broken or base > seen:
            self.broken = True
            return
        view = memoryview(data)[seen - base :]  # a block may repeat bytes already taken
        if last_end <= self.hashed:
            self.pending += view
        elif last_end <= seen:
            self.hasher.update(self.pending[: last_end - self.hashed])
            self.pending = self.pending[last_end - self.hashed :] + view
        elif last_end <= seen + len(view):
            self.hasher.update(self.pending)
            self.hasher.update(view[: last_end - seen])
            self.pending = bytearray(view[last_end - seen :])
        else:
            self.broken = True
            return
        self.hashed = max(self.hashed, last_end)

    def take(self, start: int, spans: list[Span] | None) -> None:
        """Take a helper's part: the digests of the bytes it counted, from start on."""
        seen = self.hashed + len(self.pending)
        if self.broken or not spans or seen != start or not _well_formed(start, spans):
            self.broken = True
            return
        self._close_span(start)
        self.spans.extend(spans)
        self.span_start = self.hashed = spans[-1][0]

    def close(self, end: int) -> list[Span] | None:
        """The spans from the start up to end (None when the bytes up to end were not all
        handed over, or go beyond end)."""
        if self.broken or not self.hashed <= end <= self.hashed + len(self.pending):
            return None
        self._close_span(end)
        return self.spans if self.spans else None

    def _close_span(self, stop: int) -> None:
        """End the span being hashed at stop (from the bytes waiting); start a new one."""
        cut = stop - self.hashed
        self.hasher.update(self.pending[:cut])
        if stop > self.span_start:
            self.spans.append((stop, self.hasher.hexdigest()))
        self.pending = self.pending[cut:]
        self.span_start = self.hashed = stop
        self.hasher = new_hasher(self.seed)


def make_record(
    fd: int,
    by: str,
    proof: tuple[int, int, list[Span]],
    plain: bool,
    damage: list[tuple[int, int, str]],
    groups: dict[str | None, SummaryGroup],
) -> Record:
    """A record of the file open at fd; proof: its end, seed and spans."""
    info = os.fstat(fd)
    end, seed, spans = proof
    return Record(info.st_dev, info.st_ino, by, end, seed, spans, plain, damage, groups)


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


def _checksum(body: memoryview | bytes) -> bytes:
    import xxhash  # noqa: PLC0415 - see new_hasher

    return xxhash.xxh3_64_digest(body)


def _decode(data: bytes) -> list[Record]:
    """Parse and check every field (raises ValueError / TypeError / KeyError when invalid)."""
    head = len(_MAGIC) + 16
    if not data.startswith(_MAGIC) or len(data) < head:
        raise ValueError("not a summary")
    if _checksum(memoryview(data)[len(_MAGIC) + 8 :]) != data[len(_MAGIC) : len(_MAGIC) + 8]:
        raise ValueError("checksum")
    length = int.from_bytes(data[len(_MAGIC) + 8 : head], "big")
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
    spans = _spans(item["spans"], end)
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
    seed = _int(item["seed"])
    if seed >= 1 << 63:
        raise ValueError("seed")
    record = Record(
        _int(item["dev"]), _int(item["ino"]), item["by"], end, seed, spans,
        item["plain"], damage, groups,
    )  # fmt: skip
    return record, taken


def _spans(items: Any, end: int) -> list[Span]:
    """Spans that cover [0, end) in increasing order, each with a 128-bit hex digest."""
    spans = [(_int(item[0], 1), _text(item[1])) for item in items]  # raises on other shapes
    if not spans or len(spans) > _MAX_SPANS or spans[-1][0] != end or not _well_formed(0, spans):
        raise ValueError("spans")
    return spans


def _well_formed(start: int, spans: list[Span]) -> bool:
    """True when spans follow one another from start on, each with a 128-bit hex digest."""
    ends = [start, *(end for end, _ in spans)]
    return all(low < high for low, high in itertools.pairwise(ends)) and all(
        isinstance(digest, str) and len(digest) == 32 and _DIGEST_CHARACTERS.issuperset(digest)
        for _, digest in spans
    )


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
    """True when nothing is at target, or a symbolic link, or a summary (even a damaged one,
    or one of an older version)."""
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
        return os.pread(fd, len(_FAMILY), 0) == _FAMILY
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
                "seed": record.seed,
                "spans": record.spans,
                "plain": record.plain,
                "damage": record.damage[:_MAX_DAMAGE],
                "groups": groups,
            }
        )
    header = orjson.dumps({"order": sys.byteorder, "records": items})
    body = len(header).to_bytes(8, "big") + header + blob.tobytes()
    return _MAGIC + _checksum(body) + body
