"""Reaping: a record whose owner is provably gone becomes one final entry, exactly once.

The entry keeps the record's ids, skill, caller, inputs and metadata, with status
``error``, ``error_message`` ``abandoned: <what is known>; last seen <time>``,
``metadata.abandoned = true`` and ``metadata.last_seen``, a timestamp of the last sign
of life and ``duration_ms`` from the start to it (a lower bound).

Why exactly once, whoever reaps and whenever anyone crashes:

1. One reaper at a time per record. A reaper opens the record and takes ``flock``
   (non-blocking) on it, then checks that the name still names that file. Another
   reaper either fails to take the lock (it skips the record), or takes it after the
   first let go, when the name is gone or names another file (it skips too). A
   reaper that dies lets go of its locks with its last descriptor.
2. Under that lock, the reaper reads the newest entry of the log (the *mark*) and
   renames the record to ``...reaping-<mark>``, then appends the entry, then removes the
   record. The owner, at its normal end, does the same with ``...ending-<mark>`` before
   its entry is written (see `betty_otel._inflight.tracker`).
3. So a record still called ``...json`` has no entry in the log: nothing was ever
   appended for it. A record in phase ``ending`` or ``reaping`` may have one, and if so
   it was appended after its mark: the reaper reads the log from the newest entry
   back to the mark (a bounded read: what was appended since) and writes the entry
   only if the execution's ids are not there. Appends only ever go at the end, and
   rotation and the old writers' rewrites keep the order, so the mark still precedes
   the entry. If the mark is gone (the log was replaced), the whole log is read.
4. A crash before the rename leaves the record as it was; between the rename and the
   append, no entry (the next reaper writes it); between the append and the removal,
   the entry (the next reaper finds it and only removes the record).

Records of another host or pid namespace (``unknown``) are never reaped by age alone:
only ``max_age`` (``repair --max-age``) asks for it, explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from betty_otel._entry import ENTRY_KEYS, entry_signature
from betty_otel._inflight.owner import Judge, Verdict
from betty_otel._inflight.records import (
    Record,
    Unreadable,
    folder_of,
    open_folder,
    open_record,
    phase_name,
    read_records,
    record_at,
)
from betty_otel._store import Damage, TelemetryStore, iter_entries
from betty_otel._store.files import fcntl_flock
from betty_otel._timestamps import format_timestamp

__all__ = ["NO_MARK", "Reaped", "abandoned_entry", "mark_of", "newest_mark", "reap"]

NO_MARK: Final = "none"
"""The mark of an empty log: every entry comes after it."""
_CHUNK: Final = 256
"""Records claimed at once (each holds a descriptor while its entry is written)."""


@dataclass
class Reaped:
    """What one reap did."""

    recorded: int = 0
    """Abandoned entries written."""
    cleared: int = 0
    """Records removed because their entry was already in the log."""
    busy: int = 0
    """Records another reaper was working on."""
    left: int = 0
    """Records of another host or pid namespace left alone (see max_age)."""
    unreadable: list[Unreadable] = field(default_factory=list)
    """Files of the folder that are no record betty_otel can use (left as they are)."""


def mark_of(entry: dict[str, Any]) -> str:
    """An entry's mark: 16 hex digits of a hash of its content."""
    return hashlib.blake2b(entry_signature(entry), digest_size=8).hexdigest()


def _ignore(_: Damage) -> None:
    """Damage is for readers to report; a mark only needs the complete entries."""


def newest_mark(log: Path) -> str:
    """The mark of the newest entry of the log (NO_MARK when it has none).

    An unreadable log gives NO_MARK too: a later check then reads the whole log.
    """
    try:
        for entry in iter_entries(log, newest_first=True, rotated=True, on_damage=_ignore):
            return mark_of(entry)
    except OSError:
        pass
    return NO_MARK


def _key_of(entry: dict[str, Any]) -> str:
    return f"{entry.get('trace_id')}-{entry.get('span_id')}"


def entries_since(log: Path, wanted: set[str], marks: set[str]) -> set[str]:
    """Which executions of wanted (``trace-span`` keys) have an entry after their marks.

    Reads newest first and stops once every mark has been passed (or everything
    wanted was found); with NO_MARK among marks, the whole log.
    """
    found: set[str] = set()
    waiting = set() if NO_MARK in marks else set(marks)
    bounded = NO_MARK not in marks
    for entry in iter_entries(log, newest_first=True, rotated=True, on_damage=_ignore):
        key = _key_of(entry)
        if key in wanted:
            found.add(key)
            if found == wanted:
                break
        if bounded:
            waiting.discard(mark_of(entry))
            if not waiting:
                break
    return found


def abandoned_entry(record: Record, reason: str) -> dict[str, Any]:
    """The final entry of an abandoned execution (see the module docstring)."""
    entry = {key: record.entry.get(key) for key in ENTRY_KEYS}
    seen = format_timestamp(record.last_seen_ns)
    metadata = dict(record.entry.get("metadata") or {})
    metadata.update(abandoned=True, last_seen=seen)
    entry.update(
        timestamp=seen,
        status="error",
        duration_ms=(record.last_seen_ns - record.start_ns) / 1_000_000,
        error_message=f"abandoned: {reason}; last seen {seen}",
        metadata=metadata,
    )
    return entry


def _max_age_text(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 3600 else f"{seconds / 3600:g} h"


def _reason(record: Record, verdict: Verdict, max_age: float | None, now_ns: int) -> str | None:
    """Why record is to be reaped, or None when it is not."""
    if verdict.state == "abandoned":
        return verdict.reason
    owner = record.owner
    silent = f"no sign of life from process {owner.pid} on {owner.host}"
    if record.phase == "reaping":  # a reaper chose it (by age): finish what it began
        return silent
    old = max_age is not None and now_ns - record.last_seen_ns > max_age * 1e9
    if old and verdict.state == "unknown" and max_age is not None:
        return f"{silent} for over {_max_age_text(max_age)} (repair --max-age)"
    return None


class _Group:
    """The files of one execution (usually one), claimed together."""

    def __init__(self, records: list[Record], verdict: Verdict, reason: str) -> None:
        self.records = records
        self.verdict = verdict
        self.reason = reason
        self.names = [record.name for record in records]
        self.fds: list[int] = []

    @property
    def fresh(self) -> bool:
        """No file of it is in a phase that may have an entry in the log already."""
        return all(record.phase == "running" for record in self.records)

    def claim(self, folder_fd: int) -> bool:
        """Lock every file of the group (see the module docstring, 1); False if one is
        gone, changed or locked by another reaper (the locks taken are let go)."""
        fresh: list[Record] = []
        for record in self.records:
            try:
                fd, info = open_record(folder_fd, record.name)
            except OSError:
                return False
            self.fds.append(fd)
            if not fcntl_flock(fd, unlock=False):
                return False
            try:
                now = os.stat(record.name, dir_fd=folder_fd, follow_symlinks=False)
            except OSError:
                return False
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                return False
            current = record_at(fd, record.name, info)
            if not isinstance(current, Record):
                return False
            fresh.append(current)
        self.records = fresh
        return True

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)  # lets go of the lock
        self.fds.clear()


def _groups(records: Iterable[Record], max_age: float | None, reaped: Reaped) -> list[_Group]:
    """The executions to reap, each with the files that record it."""
    judge, now = Judge(), time.time_ns()
    by_key: dict[str, list[Record]] = {}
    reasons: dict[str, tuple[Verdict, str]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
        verdict = judge(record.owner)
        reason = _reason(record, verdict, max_age, now)
        if reason is not None:
            reasons.setdefault(record.key, (verdict, reason))
        elif verdict.state == "unknown":
            reaped.left += 1
    return [_Group(by_key[key], *found) for key, found in reasons.items()]


def _still_due(group: _Group, max_age: float | None) -> bool:
    """Claimed, the group's records read again still say to reap it (a live owner of
    another host may have refreshed its last-seen time meanwhile)."""
    now = time.time_ns()
    return all(_reason(record, group.verdict, max_age, now) for record in group.records)


def _reap_claimed(log: Path, folder_fd: int, groups: list[_Group], reaped: Reaped) -> None:
    """Mark, append and remove (see the module docstring, 2 and 3) for claimed groups."""
    mark = newest_mark(log) if any(group.fresh for group in groups) else NO_MARK
    for group in [group for group in groups if group.fresh]:
        first, reaping = group.names[0], phase_name(group.names[0], "reaping", mark)
        try:
            os.rename(first, reaping, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except OSError:  # its owner renamed it (repair --max-age on a live owner): leave it
            groups.remove(group)
            continue
        group.names[0] = reaping
    checked = [group for group in groups if not group.fresh]
    marks = {record.mark for group in checked for record in group.records if record.mark}
    keys = {group.records[0].key for group in checked}
    there = entries_since(log, keys, marks) if checked else set()
    entries = [
        abandoned_entry(group.records[0], group.reason)
        for group in groups
        if group.records[0].key not in there
    ]
    if entries:
        store = TelemetryStore(log)
        try:
            store.append(entries)
        finally:
            store.close()
    for group in groups:
        for name in group.names:
            with contextlib.suppress(FileNotFoundError):  # its owner ended (see max_age)
                os.unlink(name, dir_fd=folder_fd)
    reaped.recorded += len(entries)
    reaped.cleared += len(groups) - len(entries)


def reap(log: Path, *, max_age: float | None = None, limit: int | None = None) -> Reaped:
    """Turn the log's abandoned records into entries (at most limit executions).

    max_age (seconds): also reap records of another host or pid namespace silent for
    longer than that.

    Raises:
        OSError: the folder or the log could not be read or written; what was done
            stays done, and the next reap takes up the rest exactly once.
    """
    reaped = Reaped()
    records, reaped.unreadable = read_records(folder_of(log))
    groups = _groups(records, max_age, reaped)[:limit]
    if not groups:
        return reaped
    folder_fd = open_folder(folder_of(log), create=False)
    try:
        for start in range(0, len(groups), _CHUNK):
            chunk = groups[start : start + _CHUNK]
            claimed = [
                group for group in chunk if group.claim(folder_fd) and _still_due(group, max_age)
            ]
            reaped.busy += len(chunk) - len(claimed)
            try:
                if claimed:
                    _reap_claimed(log, folder_fd, claimed, reaped)
            finally:
                for group in chunk:
                    group.release()
    finally:
        os.close(folder_fd)
    return reaped
