"""Time filters at the edges of time mean the same to every command and reader.

A bound that is no date in UTC (year 1 with a positive offset, year 9999 with a negative
one, a relative time reaching before the year 1) is a usage error for every command
that takes ``--since``/``--until`` (exit 2, said plainly) and a ValueError for every
reader in Python. A bound at the very edge of the range that is a date in UTC has its
natural meaning everywhere: everything, or nothing, is selected; the command exits 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from betty_otel import TelemetryCapture
from betty_otel.query import iter_query, query, stats
from cli_helpers import run, write
from helpers import make_entry

OUTSIDE_UTC = [
    ("--since", "0001-01-01T00:00:00+01:00"),
    ("--until", "9999-12-31T23:59:59-01:00"),
    ("--since", "9999-12-31T23:59:59-01:00"),
    ("--until", "0001-01-01T00:00:00+00:01"),
    ("--since", "1000000000000d"),
]
EVERYTHING = [
    ("--since", "0001-01-01T00:00:00+00:00"),
    ("--until", "9999-12-31T23:59:59.999999+00:00"),
    ("--since", "0001-01-01T00:00:00-12:00"),
    ("--until", "9999-12-31T23:59:59+14:00"),
    ("--until", "9999-12-31"),
]
NOTHING = [
    ("--until", "0001-01-01T00:00:00+00:00"),
    ("--since", "9999-12-31T23:59:59.999999+00:00"),
    ("--until", "0001-01-01T00:00:00-12:00"),
    ("--since", "9999-12-31T23:59:59+14:00"),
]
COUNT = 12


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write(tmp_path / "telemetry.json", [make_entry(n) for n in range(COUNT)])


def _commands(log: Path, tmp_path: Path) -> dict[str, list[str]]:
    file = ["--file", str(log)]
    return {
        "query": ["query", "--format", "jsonl", *file],
        "query table": ["query", "--format", "table", *file],
        "stats": ["stats", "--format", "json", *file],
        "stats by caller": ["stats", "--by", "caller", *file],
        "report": ["report", "-o", str(tmp_path / "report.html"), *file],
    }


@pytest.mark.parametrize(("option", "value"), OUTSIDE_UTC)
def test_a_bound_that_is_no_date_in_utc_is_a_usage_error_for_every_command(
    log: Path, tmp_path: Path, option: str, value: str
) -> None:
    commands = _commands(log, tmp_path)
    commands["export"] = [
        "export",
        "--otlp",
        "--endpoint",
        "http://127.0.0.1:9",
        "--file",
        str(log),
    ]
    for name, args in commands.items():
        result = run(*args, option, value)
        assert result.returncode == 2, (name, result.stderr)
        assert f"argument {option}: Invalid time {value!r}" in result.stderr, name
        assert result.stdout == "", name
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(("option", "value"), EVERYTHING + NOTHING)
def test_a_bound_at_the_edge_of_time_has_its_natural_meaning_for_every_command(
    log: Path, tmp_path: Path, option: str, value: str
) -> None:
    everything = (option, value) in EVERYTHING
    for name, args in _commands(log, tmp_path).items():
        result = run(*args, option, value)
        assert result.returncode == 0, (name, result.stderr)
        if name == "query":
            assert len(result.stdout.splitlines()) == (COUNT if everything else 0)
    if not everything:  # nothing to send: no collector is asked
        endpoint = ["--endpoint", "http://127.0.0.1:9", "--timeout", "1"]
        result = run("export", "--otlp", *endpoint, "--file", str(log), option, value)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("option", "value"), OUTSIDE_UTC)
def test_every_reader_in_python_refuses_a_bound_that_is_no_date_in_utc(
    log: Path, option: str, value: str
) -> None:
    bound: dict[str, Any] = {option.removeprefix("--"): value}
    calls: dict[str, Callable[[], object]] = {
        "query": lambda: query(log, **bound),
        "iter_query": lambda: list(iter_query(log, **bound)),
        "stats": lambda: stats(log, **bound),
        "TelemetryCapture.query": lambda: TelemetryCapture(log).query(**bound),
        "TelemetryCapture.stats": lambda: TelemetryCapture(log).stats(**bound),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match="Invalid time"):
            call()


@pytest.mark.parametrize(("option", "value"), EVERYTHING + NOTHING)
def test_every_reader_in_python_reads_a_bound_at_the_edge_of_time_as_the_cli(
    log: Path, option: str, value: str
) -> None:
    bound: dict[str, Any] = {option.removeprefix("--"): value}
    expected = COUNT if (option, value) in EVERYTHING else 0
    assert len(query(log, **bound)) == expected
    assert len(list(iter_query(log, **bound))) == expected
    assert sum(group.count for group in stats(log, **bound).values()) == expected
    assert len(TelemetryCapture(log).query(**bound)) == expected
