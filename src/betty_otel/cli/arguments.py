"""The argument types and options several commands share: numbers, times, --file, filters.

Only the standard library is imported here (the time check loads the filters only when a
--since or --until is given), so ``--help`` and usage errors stay quick. Each type raises
argparse.ArgumentTypeError: a value no command could use is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Final, TypeVar

__all__ = [
    "MAX_SECONDS",
    "TimeRange",
    "add_file",
    "add_filters",
    "limit_count",
    "non_negative_int",
    "number",
    "seconds",
    "time_text",
]

_T = TypeVar("_T")


def _converted(convert: Callable[[str], _T], text: str, expected: str) -> _T:
    """convert(text); text it cannot convert is a usage error that says what was expected."""
    try:
        return convert(text)
    except ValueError:
        msg = f"expected {expected}, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (capped at sys.maxsize: more than can exist means all)."""
    value = _converted(int, text, "a whole number")
    if value < 0:
        msg = f"must be >= 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return min(value, sys.maxsize)  # more than can exist: all of them


def limit_count(text: str) -> int | None:
    if text.strip().lower() in ("all", "none"):
        return None
    return non_negative_int(text)


def number(text: str) -> float:
    value = _converted(float, text, "a number")
    if not math.isfinite(value):
        msg = f"expected a finite number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


MAX_SECONDS: Final = 86_400.0


def seconds(text: str) -> float:
    """A time in seconds: finite, > 0 and at most a day (a poll interval, a timeout)."""
    value = number(text)
    if not 0 < value <= MAX_SECONDS:
        msg = f"expected seconds > 0 and <= {MAX_SECONDS:,.0f}, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def time_text(text: str) -> str:
    """--since/--until, checked as the filters read them (`betty_otel.query.parse_time`),
    so a time no filter can read is a usage error (exit 2), never a failed command.
    The text is kept: a relative time counts back from when the filters are made."""
    from betty_otel.query.filters import parse_time  # noqa: PLC0415 - only for these options

    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class TimeRange(argparse.Action):
    """--since and --until: a --since after --until is a usage error too (exit 2)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        _option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        since, until = getattr(namespace, "since", None), getattr(namespace, "until", None)
        if since is None or until is None:
            return
        from betty_otel.query.filters import parse_time  # noqa: PLC0415 - see time_text

        now = datetime.now(timezone.utc)
        start, end = parse_time(since, now=now), parse_time(until, now=now)
        if start > end:
            parser.error(f"--since ({start.isoformat()}) is after --until ({end.isoformat()})")


def add_file(parser: argparse.ArgumentParser, what: str = "the telemetry file") -> None:
    parser.add_argument(
        "--file",
        metavar="PATH",
        help=(
            f"{what} (default: $BETTY_TELEMETRY_FILE, else registry/telemetry.json"
            " under $BETTY_HOME or the enclosing Betty repository, else ./registry/telemetry.json)"
        ),
    )


def add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (repeat an option to allow several values)")
    group.add_argument("--skill", action="append", metavar="NAME", help="only this skill")
    group.add_argument("--status", action="append", metavar="STATUS", help="only this status")
    group.add_argument("--caller", action="append", metavar="NAME", help="only this caller")
    group.add_argument("--trace-id", action="append", metavar="ID", help="only this trace")
    group.add_argument(
        "--since",
        type=time_text,
        action=TimeRange,
        metavar="TIME",
        help="at or after TIME: ISO 8601 (UTC if no offset) or relative: 30s, 15m, 2h, 7d, 1w",
    )
    group.add_argument(
        "--until",
        type=time_text,
        action=TimeRange,
        metavar="TIME",
        help="before TIME (same forms as --since)",
    )
    group.add_argument(
        "--min-duration",
        type=number,
        metavar="MS",
        help="only executions that took at least MS milliseconds",
    )
    group.add_argument(
        "-i",
        "--ignore-case",
        action="store_true",
        help="match --skill, --status and --caller regardless of case (cli matches CLI)",
    )
