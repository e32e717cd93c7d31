"""Per-group stats of the log: count, statuses, failure rate, duration percentiles.

Stats must read every entry once; after that, a summary kept beside the log
(`betty_otel.query.summary`) lets the next call read only the bytes appended
since. Reading itself is `betty_otel.query.tally`; the figures of a group are
`betty_otel.query.groups`.
"""

from __future__ import annotations

import dataclasses
import os
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from betty_otel._store import Damage, resolve_path, telemetry_file_of, warn_damage
from betty_otel.query.blocks import line_pattern, scan_files
from betty_otel.query.filters import FilterArgs, Filters, PathArg, filters_of
from betty_otel.query.groups import MISSING, Group, GroupStats, SortedDurations, ordered
from betty_otel.query.needles import scan_entries
from betty_otel.query.proof import Proof
from betty_otel.query.summary import (
    Capture,
    Record,
    Span,
    SummaryGroup,
    make_record,
    new_seed,
    read_summary,
    write_summary,
)
from betty_otel.query.tally import Tally, finish_groups, tally_file

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["GROUP_KEYS", "MISSING", "GroupBy", "GroupStats", "stats"]

GroupBy = Literal["skill", "caller", "status"]

GROUP_KEYS: Final = ("skill", "caller", "status")

_REWRITE: Final = 1 << 20
"""A summary is rewritten once this many bytes (or 1/16 of what it covers) follow it."""


def stats(
    telemetry_file: PathArg = None,
    *,
    by: GroupBy = "skill",
    filters: Filters | None = None,
    path: PathArg = None,
    **filter_args: Unpack[FilterArgs],
) -> dict[str | None, GroupStats]:
    """Per-group count, count per status, failure rate and duration percentiles.

    Groups are the values of ``by`` (skill, caller or status); an entry without
    that key falls in the group None. Largest groups first. The filters are the
    keywords of `query` (``filters``, from `make_filters`, replaces them); with
    ``ignore_case`` they select regardless of case, and groups stay as written.
    Reads every entry (all rotated files included). ``path`` is the deprecated
    name of ``telemetry_file``.

    Counts and percentiles are exact (see `GroupStats`). Without filters, or with
    only the filter on the grouping key itself (``skill`` with ``by="skill"``...),
    stats keeps a summary beside the log, ``telemetry.json.stats``, and the next
    call reads only what was appended since; it is used only once every byte it
    counted is proven unchanged (`betty_otel.query.proof`: each file's summarised
    bytes hashed again, at memory speed), and rebuilt when the file was edited in
    place, rewritten, truncated, repaired, replaced or rotated away. Other
    filters (times, trace ids, durations, other keys) read every entry. Either
    way the result is the same (``mean`` to the last digits: `GroupStats`). A
    summary that cannot be written (a read-only folder) or read changes nothing
    but speed; see `betty_otel.query.summary`.

    The result equals parsing every entry, with one exception no writer produces:
    a canonical line damaged in place between the fields stats reads and its
    closing brace is counted here though `query` skips it (``check`` reports it),
    always: however the file is read (whole, in parts, after a summary's offset),
    and whatever else the file holds.

    Raises:
        ValueError / TypeError: an invalid ``by`` or filter.
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    if by not in GROUP_KEYS:
        msg = f"by must be one of: {', '.join(GROUP_KEYS)}; got {by!r}"
        raise ValueError(msg)
    filters = filters_of(filters, filter_args)
    log = resolve_path(telemetry_file_of(telemetry_file, path))
    total = Tally(by, filters)
    if filters.trace_id is not None:  # few entries: find them, then count them one by one
        for entry in scan_entries(log, filters):
            total.add_entry(entry)
        return total.result()
    key_filter_only: dict[str, Any] = {by: None}  # every other filter must be empty
    if dataclasses.replace(filters, **key_filter_only).empty:
        groups = _summarised(log, by)
        if groups is not None and (getattr(filters, by) is None or groups.plain):
            return _select(groups.groups, by, filters)
    timed = filters.since is not None or filters.until is not None
    with_caller = by == "caller" or filters.caller is not None
    pattern = line_pattern(stamp=timed, caller=with_caller)

    def on_file(fd: int, size: int, file: Path) -> None:
        found = tally_file(fd, size, by, filters, pattern)
        report = warn_damage(file)
        for item in found.damage:
            report(item)
        total.merge(found.tally)

    scan_files(log, on_file)
    return total.result()


def _select(
    groups: dict[str | None, Group], by: str, filters: Filters
) -> dict[str | None, GroupStats]:
    """The groups whose key passes the filter on the grouping key (all when there is none).

    The key is matched by the filters' own rule (`Filters.match_keys`: statuses by their
    canonical meaning, ``ignore_case``), exactly as a whole read matches each entry.
    """
    if getattr(filters, by) is not None:
        groups = {
            key: group
            for key, group in groups.items()
            if filters.match_keys(**{name: key if name == by else None for name in GROUP_KEYS})
        }
    return finish_groups(groups)


@dataclasses.dataclass
class _Summarised:
    """Every file's groups, merged; plain when every grouping value was a string or missing."""

    groups: dict[str | None, Group] = dataclasses.field(default_factory=dict)
    plain: bool = True

    def add(self, key: str | None, group: Group) -> None:
        """Merge a copy of group in (the groups added stay as they were)."""
        mine = self.groups.get(key)
        if mine is None:
            self.groups[key] = mine = Group()
        mine.merge(group)


def _summarised(log: Path, by: str) -> _Summarised | None:
    """The unfiltered groups of every file, through the summary; None when there is no log."""
    records = read_summary(log)
    mine = {(r.dev, r.ino): r for r in records if r.by == by}
    kept: list[Record] = []
    seen: set[tuple[int, int]] = set()
    result = _Summarised()
    changed = False
    pattern = line_pattern(caller=by == "caller")

    def on_file(fd: int, size: int, file: Path) -> None:
        nonlocal changed
        info = os.fstat(fd)
        seen.add((info.st_dev, info.st_ino))
        report = warn_damage(file)
        record = mine.get((info.st_dev, info.st_ino))
        if record is not None:
            updated = _resume(fd, size, record, result, report)
            if updated is not None:
                kept.append(updated)
                changed = changed or updated is not record
                return
        capture = Capture(0, new_seed())
        found = tally_file(fd, size, by, Filters(), pattern, capture=capture)
        for item in found.damage:
            report(item)
        groups = _runs(found.tally.by_key())
        result.plain = result.plain and found.tally.plain
        for key, group in groups.items():
            result.add(key, group)
        changed = True
        spans = capture.close(found.end)
        if spans is not None:
            damage = [(item.offset, item.length, item.reason) for item in found.damage]
            summary = {key: _summary_group(group) for key, group in groups.items()}
            proof = (found.end, capture.seed, spans)
            kept.append(make_record(fd, by, proof, found.tally.plain, damage, summary))

    scan_files(log, on_file)
    others = [r for r in records if r.by != by and (r.dev, r.ino) in seen]
    if changed and kept + others:
        write_summary(log, kept + others)
    return result


def _resume(
    fd: int, size: int, record: Record, result: _Summarised, report: Callable[[Damage], None]
) -> Record | None:
    """Add a valid record and the bytes after it to result; the record to keep (None: invalid).

    The bytes after the record are read once the record's bytes are proven unchanged
    (`Proof`), or meanwhile when a forked child proves them. Damage after the record
    (rare) makes the caller read the whole file instead, so that damage is handled
    exactly as a whole read does.
    """
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (record.dev, record.ino) or size < record.end:
        return None
    capture = Capture(record.end, record.seed)
    pattern = line_pattern(caller=record.by == "caller")
    with Proof(fd, record) as proof:
        if not proof.concurrent and not proof.holds():  # hashed here: read no more for it
            return None
        found = tally_file(
            fd, size, record.by, Filters(), pattern, start=record.end, capture=capture
        )
        if found.damage or not proof.holds():
            return None
    for offset, length, reason in record.damage:
        report(Damage(offset, length, reason))
    stored = {key: _stored_group(group) for key, group in record.groups.items()}
    fresh = found.tally.by_key()
    result.plain = result.plain and record.plain and found.tally.plain
    for key, group in [*stored.items(), *fresh.items()]:
        result.add(key, group)
    spans = capture.close(found.end)
    if spans is None or size - record.end <= max(_REWRITE, record.end // 16):
        return record
    return _extended(fd, record, (found.end, spans), found.tally.plain, [stored, fresh])


def _extended(
    fd: int,
    record: Record,
    tail: tuple[int, list[Span]],
    plain: bool,
    parts: list[dict[str | None, Group]],
) -> Record:
    """The record moved on to the end of tail: its groups merged, its spans followed by
    the tail's (the digests of the bytes counted since)."""
    groups: dict[str | None, Group] = {}
    for part in parts:
        for key, group in part.items():
            groups.setdefault(key, Group()).merge(group)
    summary = {key: _summary_group(group) for key, group in _runs(groups).items()}
    end, spans = tail
    proof = (end, record.seed, [*record.spans, *spans])
    return make_record(fd, record.by, proof, record.plain and plain, record.damage, summary)


def _runs(groups: dict[str | None, Group]) -> dict[str | None, Group]:
    """Each group with its durations as one sorted run (its sum taken in that order).

    Groups and statuses come in a fixed order (by key and word), so the summary
    written does not depend on the order the file was read in (`betty_otel.query.parallel`).
    """
    done: dict[str | None, Group] = {}
    for key, group in sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or "")):
        values = array("d")
        for run in group.runs:
            values.extend(run.values)
        values.extend(group.durations)
        found = ordered(values)  # sorted runs (a helper's parts) are merged, not re-sorted
        run = SortedDurations(array("d", found), sum(found))
        done[key] = Group(group.count, dict(sorted(group.statuses.items())), array("d"), [run])
    return done


def _summary_group(group: Group) -> SummaryGroup:
    """A group of one sorted run, as the summary stores it."""
    (run,) = group.runs or [SortedDurations(array("d"), 0.0)]
    return SummaryGroup(group.count, dict(group.statuses), run.values, run.total)


def _stored_group(group: SummaryGroup) -> Group:
    return Group(
        group.count,
        dict(group.statuses),
        array("d"),
        [SortedDurations(group.durations, group.total)],
    )
