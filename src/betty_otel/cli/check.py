"""``check`` and ``repair``: validate the file, and cut a torn tail back under the lock."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from betty_otel._inflight.reaper import reap
from betty_otel._inflight.records import folder_of
from betty_otel._inflight.view import folder_report
from betty_otel._store import FileReport, TelemetryStore, check_file, log_files, resolve_path
from betty_otel._store.legacy import ORIGINAL_CAP, legacy_path, limit_of, read_legacy
from betty_otel.cli.commandline import PROG
from betty_otel.cli.logfile import log_exists, log_file
from betty_otel.cli.running import folder_lines, max_age_seconds, reap_lines
from betty_otel.cli.terminal import out

__all__ = ["cmd_check", "cmd_repair"]


def _problems(report: FileReport, repair: str, *, live: bool) -> list[tuple[str, str]]:
    """Each problem of report, with what fixes it (repair: the repair command for the file).

    An empty rotated file is no problem (live is False): old tools load only the live one,
    and a writer may have set aside an empty file that an old writer was still writing.
    """
    name = report.path.name
    problems = []
    if report.not_array:
        problems.append(
            (
                "not a JSON array (a writer would move it aside and start a new log)",
                "if it is not the telemetry log, give the right file with --file or"
                f" $BETTY_TELEMETRY_FILE; if it is, `{repair}` moves it aside to"
                f" {name}.invalid-<UTC time> and starts a new log (the next capture would"
                " too): nothing is deleted; mend the moved file by hand to keep its data",
            )
        )
    if report.empty and live:
        problems.append(
            (
                "empty: no JSON value (json.load, and so the original Betty writer, fails on it)",
                f"`{repair}` writes an empty array into it (the next capture also leaves a"
                " log that json.load reads)",
            )
        )
    if report.tail_moves_aside:
        problems.append(
            (
                "a tail no interrupted append leaves, after the last complete entry"
                " (a writer would move the file aside and start a new log)",
                f"`{repair}` moves it aside to {name}.invalid-<UTC time> and starts a new log"
                " (the next capture would too): nothing is deleted; to keep its entries in"
                " the log, cut the bytes after the last complete entry by hand first",
            )
        )
    elif report.torn_tail:
        problems.append(
            (
                "torn tail: an interrupted append after the last complete entry",
                f"`{repair}` cuts it back to the last complete entry, keeping every entry"
                f" and saving the cut bytes as {name}.torn-<UTC time> (the next capture"
                " would too; readers already skip it)",
            )
        )
    problems.extend(
        (
            f"damaged region at byte offset {item.offset}, {item.length} bytes: {item.reason}",
            "nothing to run: readers skip it and warn, and repair leaves it (it may hold"
            " an entry); to recover that entry, edit a copy of the file at that offset",
        )
        for item in report.damage
    )
    return problems


def _repair_command(file: Path, args: argparse.Namespace, path: Path) -> str:
    """The repair command line for file (with --file unless it is the default log)."""
    if args.file is None and file == path:
        return f"{PROG} repair"
    return f"{PROG} repair --file {shlex.quote(str(file))}"


def _notes(report: FileReport) -> list[str]:
    """What check says about a file beyond its problems: layouts, and old writers' rewrites."""
    notes = []
    if report.not_objects:
        notes.append(
            f"{report.not_objects:,} elements of the array are not JSON objects"
            " (a number, a string, a list...): no entry, so readers skip them"
        )
    if report.other_layout:
        notes.append(
            f"{report.other_layout:,} entries in the old Betty tools' layout"
            " (indent=2 or one line): read and appended as they are, nothing to fix"
        )
    if report.rewritten:
        notes.append(
            f"an old Betty writer (or another tool) rewrote this file: {report.rewritten:,}"
            " entries betty_otel wrote are no longer one per line (the original writer"
            " rewrites the whole file with json.dump(indent=2) and keeps only its newest"
            " 100,000 entries)"
        )
    return notes


def _legacy_note(path: Path) -> str | None:
    """The note that old Betty writers were seen writing the log, from the record beside it."""
    record = read_legacy(path)
    if record is None:
        return None
    seen = record.get("seen")
    since = f" (first seen {seen})" if isinstance(seen, str) else ""
    limit = record.get("limit")
    if not isinstance(limit, int):
        limit = limit_of(ORIGINAL_CAP)
    return (
        f"an old Betty writer rewrote this log{since}, and old writers keep only their"
        f" newest entries: betty_otel keeps {path.name} under {limit:,} entries by rotating"
        f" it to {path.name}.1, {path.name}.2, ... (read as one log; nothing is deleted)."
        f" Record: {legacy_path(path).name}"
    )


def _log_path(args: argparse.Namespace) -> Path:
    """The log of --file: it must exist, unless records of executions in flight are
    beside it (its first execution was killed before anything was written)."""
    records = os.path.lexists(folder_of(resolve_path(args.file)))
    return log_file(args.file, must_exist=not records)


def cmd_check(args: argparse.Namespace) -> int:
    path = _log_path(args)
    failed = False
    note = _legacy_note(path)
    if note is not None:
        out(f"note: {note}")
    for file in log_files(path):
        report = check_file(file)
        problems = _problems(report, _repair_command(file, args, path), live=file == path)
        verdict = "OK" if not problems else f"{len(problems)} problem(s)"
        out(f"{file}: {report.entries:,} entries, {verdict}")
        _print_problems(problems)
        for line in _notes(report):
            out(f"  note: {line}")
        failed = failed or bool(problems)
    notes, problems = folder_lines(folder_report(path), _repair_command(path, args, path))
    for line in notes:
        out(line)
    _print_problems(problems)
    return 1 if failed or problems else 0


def _print_problems(problems: list[tuple[str, str]]) -> None:
    for problem, fix in problems:
        out(f"  - {problem}")
        out(f"    fix: {fix}")


def cmd_repair(args: argparse.Namespace) -> int:
    max_age = max_age_seconds(args.max_age)
    path = _log_path(args)
    if log_exists(path):
        code = _repair_file(args, path)
    else:
        code = 0
        out(f"Nothing to repair: {path} does not exist yet")
    for line in reap_lines(reap(path, max_age=max_age)):
        out(line)
    return code


def _repair_file(args: argparse.Namespace, path: Path) -> int:
    """Cut a torn tail of the log's file, or move a foreign file aside; 1 if problems remain."""
    before = check_file(path)
    store = TelemetryStore(path)
    try:
        removed = store.repair()
    finally:
        store.close()
    after = check_file(path)
    if before.not_array:
        out(f"{path} was not a JSON array: moved it aside and started a new, empty log")
    elif before.tail_moves_aside:
        out(
            f"{path} ended in bytes no interrupted append leaves: moved it aside and"
            " started a new, empty log"
        )
    elif before.empty:
        out(f"{path} held no JSON value: wrote an empty array into it")
    elif removed:
        out(
            f"Repaired {path}: removed a torn tail of {removed:,} bytes after the last "
            f"complete entry (saved beside the file as {path.name}.torn-*); "
            f"kept all {after.entries:,} complete entries"
        )
    else:
        out(f"Nothing to repair: {path} ends with a complete JSON array")
    problems = _problems(after, _repair_command(path, args, path), live=True)
    for problem, _ in problems:
        out(f"  - still: {problem}")
    if problems:
        out("Damaged regions in the middle are left as they are; readers skip them.")
    return 1 if problems else 0
