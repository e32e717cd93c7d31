"""Reading the log: entries oldest or newest first, the files of a rotated log, checks.

Streaming, memory bounded by a block plus one element; readers never write and
never lock while reading (`betty_otel._store.snapshot` opens the files). A torn
tail (a write in progress, or a crashed writer) is skipped silently; damage in the
middle is skipped and reported. Errors are `StoreError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from betty_otel._jsontext import JSONDecodeError, loads
from betty_otel._store.format import BOM, WHITESPACE, is_entry_line, parse_entry_line
from betty_otel._store.lines import data_end, head_kind, lines_backward, lines_forward
from betty_otel._store.location import resolve_path
from betty_otel._store.parser import Damage, ForwardParser, ended, parse_line_alone
from betty_otel._store.snapshot import open_for_reading, open_log, read_errors
from betty_otel._store.tail import insertion_point, is_torn_append

__all__ = [
    "FileReport",
    "check_file",
    "iter_entries",
    "open_log_files",
    "warn_damage",
]

logger = logging.getLogger(__name__)


@dataclass
class FileReport:
    """What check_file found: counts and problems, no changes made."""

    path: Path
    exists: bool
    entries: int = 0
    other_layout: int = 0
    """Entries not on a line of their own (the old tools' indent=2, or one-line arrays)."""
    not_objects: int = 0
    """Elements of the array that are no JSON object (a number, a list...): no entry,
    so every reader skips them."""
    rewritten: int = 0
    """Of those, entries betty_otel wrote (with trace and span ids): another writer, such
    as the original Betty writer (json.dump(indent=2) of the whole file), rewrote them."""
    not_array: bool = False
    empty: bool = False
    """The file exists but holds no JSON value (0 bytes, or only whitespace): json.load,
    and so the original Betty writer, fails on it."""
    torn_tail: bool = False
    tail_moves_aside: bool = False
    """The torn tail is no torn append of ours: a repair, or the next capture, moves the
    whole file aside (as for a file that is no array) instead of cutting it."""
    damage: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file is a valid, complete JSON array (or absent)."""
        return not (self.not_array or self.empty or self.torn_tail or self.damage)


def warn_damage(path: Path) -> Callable[[Damage], None]:
    """The default damage report for path: a logged warning per damaged region."""

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
    parser = ForwardParser()
    for offset, line in lines_forward(fd, 0, data_end(fd, end)):
        for _, value in parser.feed(offset, line):
            for item in parser.take_damage():
                on_damage(item)
            if isinstance(value, dict):
                yield value
    for _, value in parser.flush():
        if isinstance(value, dict):
            yield value
    torn = parser.finish()
    for item in parser.take_damage():
        on_damage(item)
    if followed:
        for item in torn:
            if item.offset >= 0:
                on_damage(ended(item))


def _torn_before_bracket(after_last: list[tuple[int, bytes]]) -> bool:
    """True when the lines between the closing bracket and the last entry ((offset, line),
    newest first) are a torn append that ends in a nested bracket (``{"a": [1,`` then
    ``]``): the writer cuts it, so it is skipped quietly, as the forward reader skips it."""
    lines = [line for _, line in reversed(after_last)]
    return bool(lines) and is_torn_append(b"\n".join([*lines, b"]"]))


def _brace_line(offset: int, raw: bytes, line: bytes) -> tuple[list[Any], list[Damage]]:
    """A line starting with ``{``: (its whole elements, newest first; its damaged regions).

    One canonical entry line parses directly; any other such line is parsed alone.
    """
    if is_entry_line(line):
        try:
            return [parse_entry_line(line)], []
        except JSONDecodeError:
            pass
    found, problems = parse_line_alone(offset, raw)
    return [value for _, value in reversed(found)], problems


def _iter_backward(
    fd: int, size: int, on_damage: Callable[[Damage], None]
) -> Iterator[dict[str, Any]]:
    """Newest first: canonical lines from the end, then a legacy-layout prefix, if any.

    A NUL-filled tail (a crash) is skipped without reading its holes. Before the closing
    bracket or a first entry line, other lines are a torn tail and are skipped. After
    them, a line that is not an entry line starts a region in another layout (the old
    tools' indent=2, or one line), read by `_legacy_backward`.
    """
    seen = False
    entries = False
    pending: list[Damage] = []
    after_last: list[tuple[int, bytes]] = []  # the lines between the bracket and the last entry
    end = data_end(fd, size)
    lines = lines_backward(fd, end)
    legacy: tuple[int, bytes] | None = None
    legacy_end = -1
    for offset, raw in lines:
        line = raw.rstrip(b"\r")
        stripped = line.strip(WHITESPACE)
        if not stripped:
            continue
        if line[:1] == b"{":
            values, problems = _brace_line(offset, raw, line)
            if seen:  # before the closing bracket or a first entry, problems are a torn tail
                pending.extend(problems)
                if not (entries or values):
                    after_last.append((offset, line))
            if values and not entries and _torn_before_bracket(after_last):
                pending = []
            if values:
                for item in pending:
                    on_damage(item)
                pending = []
                seen = entries = True
                yield from (value for value in values if isinstance(value, dict))
            continue
        if line.rstrip(WHITESPACE) in (b"[", BOM + b"["):  # column 0: nested ones are indented
            if not seen:  # a torn file in another layout (e.g. an old writer killed mid-dump)
                legacy_end = end
            break
        if line.rstrip(WHITESPACE) == b"]" and not seen:
            # Only a bracket at column 0 closes the array: json.dump(indent=N) puts nested
            # ones deeper, so an indented one ends a torn file (read whole, below).
            seen = True
            continue
        if seen:
            # Entry lines after this region start with ",\n", so it ends at this line; with
            # none, the region runs to the closing bracket, which ends its last element.
            legacy = (offset, raw)
            legacy_end = offset + len(raw) if entries else end
            break
    else:
        if not seen:
            # No closing bracket and no entry line: a torn file, or one line of JSON.
            legacy_end = end
    if legacy is not None and after_last and not entries:
        # Lines read here lie between the other layout and the bracket: the region ends
        # before them (followed), and their damage is told once, here, unless torn.
        legacy_end, entries = after_last[-1][0], True
        if _torn_before_bracket(after_last):
            pending = []
    for item in pending:
        on_damage(item)
    if legacy is not None:
        yield from _legacy_backward(fd, legacy, lines, legacy_end, on_damage, followed=entries)
    elif legacy_end >= 0:
        yield from _legacy_whole(fd, legacy_end, on_damage, followed=entries)


def _legacy_backward(
    fd: int,
    last: tuple[int, bytes],
    earlier: Iterator[tuple[int, bytes]],
    end: int,
    on_damage: Callable[[Damage], None],
    *,
    followed: bool,
) -> Iterator[dict[str, Any]]:
    """Newest first, a legacy region whose last line is last and that ends at end.

    An indented layout (json.dump(indent=N)) is read element by element from its end:
    only a top-level element opens and closes at the indentation of the region's last
    line (``  {`` ... ``  },``; nested lines are deeper, and a string never holds a raw
    newline). An element is yielded once the line before it proves it top-level (the
    previous element's ``  },`` or the array's ``[``). Anything else (damage, another
    layout) hands the rest, before what was yielded, to `_legacy_whole`.
    """
    line = last[1].rstrip(b"\r")
    indent = line[: len(line) - len(line.lstrip(b" \t"))]
    closing, opening = indent + b"},", indent + b"{"
    parts: list[bytes] = []  # the lines of the element being read, last first
    held: tuple[int, Any] | None = None  # (offset, value) of an element read, not yet proven
    rest = end  # what is not yet yielded: [0, rest)
    if not indent or line not in (closing, indent + b"}"):
        yield from _legacy_whole(fd, rest, on_damage, followed=followed)
        return
    parts.append(last[1])
    for offset, raw in earlier:
        line = raw.rstrip(b"\r")
        if parts:
            parts.append(raw)
            if line == opening:
                text = b"\n".join(reversed(parts)).rstrip(WHITESPACE).removesuffix(b",")
                try:
                    held = offset, loads(text)
                except JSONDecodeError:
                    break  # damage: the forward parser reports it
                parts = []
            continue
        head = line[:1] not in b" \t" and line.strip(WHITESPACE) in (b"[", BOM + b"[")
        if held is None or not (head or line == closing):
            break
        rest, value = held
        held, followed = None, True
        if isinstance(value, dict):
            yield value
        if head:
            return
        parts.append(raw)
    yield from _legacy_whole(fd, rest, on_damage, followed=followed)


def _legacy_whole(
    fd: int, end: int, on_damage: Callable[[Damage], None], *, followed: bool
) -> Iterator[dict[str, Any]]:
    """Newest first, the region [0, end) in any layout: parsed whole, yielded reversed.

    Valid JSON text (one line of ``json.dump``, say) is parsed at once; anything else
    goes through the tolerant forward parser, which reports damage. With followed,
    entries come after end (the region then ends with a separator).
    """
    text = os.pread(fd, end, 0).removeprefix(BOM).rstrip(WHITESPACE)
    if followed:
        text = text.removesuffix(b",") + b"]"
    try:
        values = loads(text)
    except JSONDecodeError:
        values = None
    if isinstance(values, list):
        yield from (value for value in reversed(values) if isinstance(value, dict))
        return
    yield from reversed(list(_iter_forward(fd, end, on_damage, followed=followed)))


def iter_entries(
    path: str | os.PathLike[str] | None = None,
    *,
    newest_first: bool = True,
    rotated: bool = True,
    on_damage: Callable[[Damage], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the log's entries (JSON objects), newest first by default.

    The log's files are opened together when reading starts (one view: a rotation
    meanwhile repeats or loses nothing) and each is read up to its size then; a
    torn tail (a write in progress, or a crashed writer) is skipped silently, and
    damage in the middle is passed to on_damage (default: a logged warning). With
    rotated, the rotated backups follow as one log. A missing file is an empty log;
    a symbolic link is followed. Never writes.

    Raises:
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    base = resolve_path(path)
    for fd, size, file in open_log_files(
        base, rotated=rotated, newest_first=newest_first, on_damage=on_damage
    ):
        report = on_damage if on_damage is not None else warn_damage(file)
        reader = _iter_backward if newest_first else _iter_forward
        with read_errors(file):
            yield from reader(fd, size, report)


def open_log_files(
    path: Path,
    *,
    rotated: bool = True,
    newest_first: bool = True,
    on_damage: Callable[[Damage], None] | None = None,
) -> Iterator[tuple[int, int, Path]]:
    """Each readable file of the log, open for reading: (descriptor, size, file).

    With rotated, the rotated backups come too, in log order, all opened first as
    one consistent view (see `betty_otel._store.snapshot`). A file that is not a
    JSON array is reported to on_damage (default: a logged warning) and skipped.
    Every descriptor is closed when the iteration ends.

    Raises:
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    opened = open_log(path, rotated=rotated)
    if not newest_first:
        opened.reverse()
    try:
        for fd, size, file in opened:
            with read_errors(file):
                foreign = head_kind(fd) == "foreign"
            if foreign:
                (on_damage or warn_damage(file))(Damage(0, size, "not a JSON array"))
                continue
            yield fd, size, file
    finally:
        for fd, _, _ in opened:
            os.close(fd)


def check_file(path: str | os.PathLike[str] | None = None) -> FileReport:
    """Validate one file without changing it: entry count, torn tail, damaged regions.

    Raises:
        StoreError: the file is not a regular file or cannot be read.
    """
    base = resolve_path(path)
    fd = open_for_reading(base)
    if fd is None:
        return FileReport(base, exists=False)
    report = FileReport(base, exists=True)
    try:
        with read_errors(base):
            _check(fd, report)
        return report
    finally:
        os.close(fd)


def _check(fd: int, report: FileReport) -> None:
    kind = head_kind(fd)
    if kind != "array":
        report.not_array = kind == "foreign"
        report.empty = kind == "empty"
        return
    parser = ForwardParser()
    size = os.fstat(fd).st_size
    end = data_end(fd, size)  # a NUL-filled tail (a crash) is a torn tail, not data
    for offset, line in lines_forward(fd, 0, end):
        found = [value for _, value in parser.feed(offset, line)]
        entries = _count(report, found)
        if entries and not is_entry_line(line.rstrip(b"\r")):
            report.other_layout += entries
            report.rewritten += sum(1 for value in found if _ours(value))
    _count(report, [value for _, value in parser.flush()])
    torn = parser.finish()
    report.damage = parser.take_damage()
    report.torn_tail = bool(torn) or end < size
    if report.torn_tail:  # what a repair would do, asked as it asks (rare: no import before)
        from betty_otel._store.repair import cut_point  # noqa: PLC0415

        if insertion_point(fd, size)[0] >= 0:  # a closed array to a writer: it appends after
            report.damage.extend(item for item in torn if item.offset >= 0)
            report.torn_tail = False
        else:
            report.tail_moves_aside = cut_point(fd, size) is None


def _count(report: FileReport, values: list[Any]) -> int:
    """Count elements into report: objects are entries; the rest no reader shows. Returns
    the entries counted."""
    found = sum(1 for value in values if isinstance(value, dict))
    report.not_objects += len(values) - found
    report.entries += found
    return found


def _ours(value: Any) -> bool:
    """True for an entry betty_otel wrote: it carries trace and span ids."""
    return isinstance(value, dict) and "trace_id" in value and "span_id" in value
