"""``check`` and ``repair``: validate the file, and cut a torn tail back under the lock."""

from __future__ import annotations

import argparse

from betty_otel._store import FileReport, TelemetryStore, check_file, log_files
from betty_otel.cli.logfile import log_file
from betty_otel.cli.parser import PROG
from betty_otel.cli.terminal import out

__all__ = ["cmd_check", "cmd_repair"]


def _report_lines(report: FileReport) -> list[str]:
    problems = []
    if report.not_array:
        problems.append("not a JSON array (a writer would move it aside and start a new log)")
    if report.torn_tail:
        problems.append("torn tail: an interrupted append after the last complete entry")
    for item in report.damage:
        problems.append(
            f"damaged region at byte offset {item.offset}, {item.length} bytes: {item.reason}"
        )
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    path = log_file(args.file, must_exist=True)
    failed = False
    for file in log_files(path):
        report = check_file(file)
        problems = _report_lines(report)
        verdict = "OK" if not problems else f"{len(problems)} problem(s)"
        out(f"{file}: {report.entries:,} entries, {verdict}")
        for problem in problems:
            out(f"  - {problem}")
        failed = failed or bool(problems)
    if failed:
        out(f"Run `{PROG} repair` to fix a torn tail; readers skip damaged regions.")
    return 1 if failed else 0


def cmd_repair(args: argparse.Namespace) -> int:
    path = log_file(args.file, must_exist=True)
    before = check_file(path)
    store = TelemetryStore(path)
    try:
        removed = store.repair()
    finally:
        store.close()
    after = check_file(path)
    if before.not_array:
        out(f"{path} was not a JSON array: moved it aside and started a new, empty log")
    elif removed:
        out(
            f"Repaired {path}: removed a torn tail of {removed:,} bytes after the last "
            f"complete entry (saved beside the file as {path.name}.torn-*); "
            f"kept all {after.entries:,} complete entries"
        )
    else:
        out(f"Nothing to repair: {path} ends with a complete JSON array")
    problems = _report_lines(after)
    for problem in problems:
        out(f"  - still: {problem}")
    if problems:
        out("Damaged regions in the middle are left as they are; readers skip them.")
    return 1 if problems else 0
