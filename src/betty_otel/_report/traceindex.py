"""Where each trace's entries are: kept by the report's one read, so drawing a few traces
needs no second read of the whole log.

While the report reads the log (`betty_otel._report.ingest`), every canonical line
hands over its trace id, captured by the pattern of the current layout (the last
``"trace_id"`` key of the line, which is the entry's own); each block keeps its line
ranges and a 32-bit digest (CRC-32) of each id, 4 bytes an entry. Finding traces is
then a read of the few blocks whose digests hold one of them, where the lines that
spell an id are parsed and kept when the entry's trace id is one of them: the
entries, in log order, that a full read (`betty_otel.query.trace.trace_entries`)
finds. The index answers only when it holds every entry of the log: an entry in
another layout (the old tools' ``indent=2``), a torn tail, or a file that is no
longer the one read (rotated meanwhile) means the caller reads the log instead.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zlib import crc32

from betty_otel._entry import value_text
from betty_otel._jsontext import JSONDecodeError
from betty_otel._store import open_log_files, parse_entry_line
from betty_otel.query.blocks import Block, lines_with, trace_needles

__all__ = ["Found", "TraceIndex"]

Found = dict[str, list[dict[str, Any]]]
"""Each trace id's entries in the log, in log order."""


@dataclass
class _Indexed:
    """One block's canonical lines: the file (device, inode), their ranges, id digests."""

    file: tuple[int, int]
    ranges: list[tuple[int, int, int]]
    """File offsets (start, end) of runs of canonical lines, and a digest of each run's
    ends (`_ends`): a file at the same inode later (one deleted, its number reused) is
    told apart."""
    digests: bytes
    """The CRC-32 of each line's trace id, 4 bytes each (native order)."""


@dataclass
class TraceIndex:
    """The digests of every canonical line's trace id, block by block, in log order."""

    blocks: list[_Indexed] = field(default_factory=list)
    complete: bool = True
    """Every entry read so far was a canonical line with its trace id captured."""

    def lose(self) -> None:
        """An entry whose trace id is not known here was read: the index can no longer
        answer, so it keeps nothing more (a log in another layout costs no digests)."""
        self.complete = False
        self.blocks = []

    def add(self, file: tuple[int, int], block: Block, ids: Sequence[bytes | None]) -> None:
        """Index a block's canonical lines by their captured trace ids (raw JSON values; None:
        a line that does not end with the ids, whose trace id is then not known here)."""
        if not self.complete:
            return
        if None in ids:
            self.lose()
            return
        base, data = block.base, block.data
        ranges = [(base + start, base + end, _ends(data, start, end)) for start, end in block.lines]
        digests = array("I", map(crc32, ids)).tobytes()  # type: ignore[arg-type]
        self.blocks.append(_Indexed(file, ranges, digests))

    def merge(self, other: TraceIndex) -> None:
        """Take the index of the stretch of the log that follows (a helper's part)."""
        if self.complete and other.complete:
            self.blocks.extend(other.blocks)
        else:
            self.lose()

    def entries(self, base: Path, trace_ids: list[str]) -> Found | None:
        """Each trace's entries in the log at base, or None when the index cannot tell
        (not complete, or a file read is gone)."""
        if not self.complete:
            return None
        needles = trace_needles(trace_ids)
        digests = [array("I", [crc32(b'"' + needle + b'"')]).tobytes() for needle in needles]
        wanted: dict[tuple[int, int], list[_Indexed]] = {}
        for indexed in self.blocks:
            if any(_holds(indexed.digests, digest) for digest in digests):
                wanted.setdefault(indexed.file, []).append(indexed)
        found: Found = {trace_id: [] for trace_id in trace_ids}
        for fd, _, _ in open_log_files(base, newest_first=False, on_damage=_ignore):
            stat = os.fstat(fd)
            for indexed in wanted.pop((stat.st_dev, stat.st_ino), []):
                for start, end, ends in indexed.ranges:
                    data = os.pread(fd, end - start, start)
                    if len(data) != end - start or _ends(data, 0, len(data)) != ends:
                        return None  # not the file read
                    _take_lines(data, needles, found)
        return None if wanted else found


def _ends(data: bytes, start: int, end: int) -> int:
    """A digest of the first and last 64 bytes of data[start:end]."""
    return crc32(data[max(start, end - 64) : end], crc32(data[start : start + 64]))


def _holds(digests: bytes, digest: bytes) -> bool:
    """digest is one of the 4-byte digests packed in digests (a match across two is not)."""
    at = digests.find(digest)
    while at >= 0:
        if at % 4 == 0:
            return True
        at = digests.find(digest, at + 1)
    return False


def _take_lines(data: bytes, needles: list[bytes], found: Found) -> None:
    """Add the entries of data's lines that spell one of needles to their trace's list."""
    for _, line in lines_with(data, 0, len(data), needles):
        try:
            entry = parse_entry_line(line)
        except JSONDecodeError:
            continue  # damage: told by the read that made the index
        if not isinstance(entry, dict):
            continue
        trace_id = entry.get("trace_id")
        entries = None if trace_id is None else found.get(value_text(trace_id))
        if entries is not None:
            entries.append(entry)


def _ignore(_: object) -> None:
    """A foreign file met while opening the log: the read that made the index told it."""
