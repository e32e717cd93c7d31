"""The column reader: canonical lines read from their regex captures, every other line parsed.

Every whole-log reader that counts (`stats` through `betty_otel.query.tally`, the
report through `betty_otel._report.ingest`) reads a file through `ColumnReader`:
`betty_otel.query.blocks.scan_fd` hands over each block's canonical lines as
columns of raw captures (timestamp, skill+status span, duration, caller), which the
reader's `take_columns` decodes with the rules here; the lines it cannot take
from their captures (a capture that is not exact JSON text: a control character,
bad UTF-8, a duration that is half a value) are parsed whole, where a line that is
no JSON is damage; every other entry (the old tools' ``indent=2``) arrives parsed.
So each line is read one way or the other by its own bytes alone, the same way by
every reader, and a reader never decodes a capture by a rule of its own.

A captured value is text exactly as a JSON parser reads it (`capture_text`); a
value that is not text where text is expected is shown and grouped as
`betty_otel._entry.value_text` (`key_text`), by every reader.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import Any, Final

import orjson

from betty_otel._entry import NUMBER_TYPES, value_text
from betty_otel._jsontext import JSONDecodeError, loads
from betty_otel._store import Damage, ForwardParser, parse_entry_line
from betty_otel._store.format import entry_line_end
from betty_otel.query.blocks import Block, LinePattern, scan_fd
from betty_otel.query.parallel import Helper, plan, serve, start_method
from betty_otel.query.summary import Capture

__all__ = [
    "NOT_JSON",
    "ColumnReader",
    "InexactCapture",
    "capture_durations",
    "capture_text",
    "capture_texts",
    "is_duration",
    "key_text",
    "numbers_only",
    "read_file",
    "read_parts",
    "span_texts",
    "whole_lines",
]

NOT_JSON: Final = "element is not valid JSON"
"""The damage a canonical line parsed whole may be: what the store's parser says of it."""
_CONTROL: Final = re.compile(rb"[\x00-\x1f]")
_NUMERIC_TEXT: Final = b"0123456789.eE+-,"
_SPAN_SEPARATOR: Final = b'","status":"'


class InexactCapture(Exception):  # noqa: N818 - a signal to parse the line whole, not a fault
    """A capture is not exact JSON text: its line is parsed whole instead."""


def key_text(value: object) -> str | None:
    """A skill, status or caller as readers group and show it: missing as None, else
    by the one rule (`betty_otel._entry.value_text`: a string as it is, anything
    else as compact JSON with sorted keys)."""
    return None if value is None else value_text(value)


def capture_text(raw: bytes) -> str:
    """A captured JSON string's contents as text, exactly as a JSON parser reads them.

    Raises:
        InexactCapture: not a JSON string's contents (a raw control character, bad UTF-8,
            a broken escape).
    """
    try:
        if b"\\" in raw:
            text = loads(b'"' + raw + b'"')
            if not isinstance(text, str):
                raise InexactCapture
            return text
        if _CONTROL.search(raw):
            raise InexactCapture
        return raw.decode("utf-8")
    except (UnicodeDecodeError, JSONDecodeError) as exc:
        raise InexactCapture from exc


def capture_texts(raws: list[bytes]) -> list[str]:
    """Captured JSON strings as text (in C when none has an escape or a control character).

    Raises:
        InexactCapture: one is not a JSON string's contents.
    """
    joined = b"".join(raws)
    if b"\\" in joined or _CONTROL.search(joined):
        return [capture_text(raw) for raw in raws]
    try:
        return list(map(bytes.decode, raws))
    except UnicodeDecodeError as exc:
        raise InexactCapture from exc


def span_texts(span: bytes) -> tuple[str, str]:
    """The skill and status word of a raw skill+status span.

    Raises:
        InexactCapture: the span is not two JSON strings' contents.
    """
    pieces = span.split(_SPAN_SEPARATOR)
    if len(pieces) != 2:
        raise InexactCapture
    return capture_text(pieces[0]), capture_text(pieces[1])


def capture_durations(raws: list[bytes]) -> tuple[list[Any], bool]:
    """A block's duration captures as values (one orjson call), and whether every one is a
    plain number (then no value needs a type check).

    Raises:
        InexactCapture: a capture is not one whole strict JSON value (NaN, ``1e400``, a
            capture that is part of a value): the lines are parsed whole.
    """
    joined = b",".join(raws)
    try:
        values = orjson.loads(b"[" + joined + b"]")  # strict: NaN, 1e400... go line by line
    except orjson.JSONDecodeError as exc:
        raise InexactCapture from exc
    if len(values) != len(raws):  # a capture was part of a value
        raise InexactCapture
    return values, numbers_only(joined)


def numbers_only(joined: bytes) -> bool:
    """True when comma-joined captures hold digits, signs, points and exponents only."""
    return not joined.translate(None, _NUMERIC_TEXT)


def is_duration(value: object) -> bool:
    """A decoded duration capture that is a number (not null, true or false)."""
    return type(value) in NUMBER_TYPES


def whole_lines(block: Block, indices: Iterable[int]) -> Iterator[dict[str, Any] | Damage]:
    """The canonical lines of block at indices (in order), parsed whole: each entry, or the
    damage of a line that is no JSON (its place in the file, as the store's parser says)."""
    wanted = set(indices)
    index = 0
    for start, end in block.lines:
        offset = block.base + start
        for line in block.data[start:end].split(b"\n"):
            if index in wanted:
                body = line.rstrip(b"\r")
                try:
                    value = parse_entry_line(body)
                except JSONDecodeError:
                    closed = entry_line_end(offset, body)
                    yield Damage(offset, closed - offset, NOT_JSON)
                else:
                    if isinstance(value, dict):
                        yield value
            index += 1
            offset += len(line) + 1


class ColumnReader:
    """One forward read of (parts of) one file, block by block.

    A reader says what it does with each block's captures (`take_columns`, which
    returns the indices of the lines to parse whole), with each parsed entry
    (`add_entry`) and with damage (`add_damage`); `seen` is told of every block
    read. capture, when given, takes the bytes read (for the stats summary).
    """

    def __init__(
        self, fd: int, pattern: LinePattern, *, start: int = 0, capture: Capture | None = None
    ) -> None:
        self.fd = fd
        self.pattern = pattern
        self.capture = capture
        self.parser = ForwardParser(in_array=start > 0)
        self.end = -1
        """Offset just after the last complete element read (-1: none)."""

    def read(self, start: int, stop: int, *, final: bool) -> None:
        """Read [start, stop) with the parser (final: stop is the end of the file)."""
        capture = self.capture
        blocks = scan_fd(self.fd, stop, self.pattern, start=start, parser=self.parser, final=final)
        # A block's damage comes from two places (its canonical lines parsed whole here,
        # the rest from scan_fd after the block): told in the file's order, whatever
        # path found it, so that a read in parts tells the same as one read.
        damage: list[Damage] = []
        for block in blocks:
            if isinstance(block, Damage):
                damage.append(block)
                continue
            self._tell(damage)
            if capture is not None:
                capture.add(block.base, block.data, block.last_end)
            self.end = max(self.end, block.last_end)
            if block.columns and block.columns[0]:
                left_out = self.take_columns(block)
                if left_out:
                    for found in whole_lines(block, left_out):
                        if isinstance(found, Damage):
                            damage.append(found)
                        else:
                            self.add_entry(found)
            for entry in block.entries:
                self.add_entry(entry)
            self.seen(block)
        self._tell(damage)

    def _tell(self, damage: list[Damage]) -> None:
        """add_damage for each item, in the file's order; empties the list."""
        for item in sorted(damage, key=attrgetter("offset")):
            self.add_damage(item)
        damage.clear()

    def take_columns(self, block: Block) -> list[int]:
        """Take a block's canonical lines from their captures; the indices of those to be
        parsed whole instead (captures that are not exact JSON text)."""
        raise NotImplementedError

    def add_entry(self, entry: dict[str, Any]) -> None:
        """One parsed entry."""
        raise NotImplementedError

    def add_damage(self, item: Damage) -> None:
        """One damaged region."""
        raise NotImplementedError

    def seen(self, block: Block) -> None:
        """A block has been read (a reader that shows progress says so)."""

    def part_read(self) -> None:
        """A part of a split read has been read here (`read_parts`)."""

    def take(self, part: Any) -> None:
        """Add what a helper found in one part (`read_parts`): its `end`, and the rest."""
        raise NotImplementedError


def read_parts(reader: ColumnReader, helper: Helper) -> None:
    """Read a file split at helper.points: parts forward until the helper has done the
    rest; take its parts that fit.

    A helper's part (with ``index``, ``seam`` and ``end``) is taken when the read
    reaching it is at a seam and it ends at one (or is the last); from the first that
    is not, this process reads the rest (with a new parser when the read is at a seam:
    the same, from the next line on). So the result is that of one read of the file.
    """
    points = helper.points
    last = len(points) - 2
    index = 0
    while index <= last and not (index > 0 and helper.ready(index)):
        reader.read(points[index], points[index + 1], final=index == last)
        reader.part_read()
        index += 1
    if index > last:
        return
    at_seam = reader.parser.at_seam
    mine = True  # the parser is where the read stands (else: at a seam, a new one will do)
    for part in helper.results(index):
        if part is None or not at_seam or not (part.seam or part.index == last):
            break
        reader.take(part)
        index += 1
        mine = False
    if index <= last:
        if not mine:
            reader.parser = ForwardParser(in_array=True)
        reader.read(points[index], points[-1], final=True)


def read_file(
    reader: ColumnReader, size: int, read_part: Callable[[list[int], int], Any], kind: type
) -> None:
    """Read a whole file with reader (at offset 0 of its descriptor), a large one on two CPUs:
    a forked helper runs read_part(split points, index) for the last parts, whose results
    (of type kind) reader takes where the read meets them at a seam (`read_parts`)."""
    fd = reader.fd
    points = plan(fd, size, 0) if start_method() == "fork" else None
    if points is None:
        reader.read(0, size, final=True)
        return
    found = points

    def part(index: int) -> bytes:
        return pickle.dumps(read_part(found, index))

    def work(out: int, notes: int) -> None:
        serve(found, part, out, notes)

    def decode(data: bytes) -> Any:
        """A helper's part, from the bytes its forked process wrote for this one."""
        try:
            value = pickle.loads(data)  # noqa: S301 - written by our own forked child
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as exc:
            raise ValueError(exc) from exc  # unreadable: this process reads the part itself
        if not isinstance(value, kind):
            raise TypeError(type(value).__name__)
        return value

    with Helper(fd, points, work, decode) as helper:  # forked only
        read_parts(reader, helper)
