"""The README is true: its claims, checked as a new user would meet them.

Each test names the README's words it holds to. What other suites already pin is left
to them (the Guarantees table names them); these are the claims found unpinned or
wrong: the exit status of a time no filter can read, the order of `iter_query`, the
counting of a dropped entry, the filters and output formats of ``query``, the log as
one across rotation, and the README's own Python examples, run as written.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import capture_telemetry
from betty_otel.query import iter_query, query, stats
from cli_helpers import CLI, read_terminal, run, write
from dropin_helpers import doc_blocks
from helpers import make_entry, strict_entries

README = Path(__file__).resolve().parents[1] / "README.md"


def _at(seconds_ago: float, number: int, **extra: Any) -> dict[str, Any]:
    """An entry that ended seconds_ago before now."""
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return make_entry(number, timestamp=moment.isoformat(timespec="microseconds"), **extra)


# ---------------------------------------------------------------------------
# "exits ... 2 on a usage error": a time no filter can read is one
# ---------------------------------------------------------------------------

FILTERING = [["query"], ["stats"], ["export", "--otlp"], ["report", "-o", "r.html"]]
"""The commands that take the filters (--since, --until, ...)."""


@pytest.mark.parametrize("command", FILTERING, ids=lambda argv: argv[0])
@pytest.mark.parametrize(
    "times",
    [
        ["--since", "5x"],
        ["--since", "yesterday"],
        ["--until", "2h30"],
        ["--since", ""],
        ["--since", "99999999999w"],
        ["--since", "1h", "--until", "2h"],
        ["--until", "2h", "--since", "1h"],
        ["--since", "2025-10-25", "--until", "2025-10-24T23:59:59+00:00"],
    ],
    ids=" ".join,
)
def test_a_time_no_filter_can_read_is_a_usage_error(
    tmp_path: Path, command: list[str], times: list[str]
) -> None:
    """Exit 2 with the usage, as for any option of the wrong kind; nothing read or made."""
    log = write(tmp_path / "t.json", [make_entry(1)])
    before = log.read_bytes()
    result = run(*command, "--file", str(log), *times, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: betty-telemetry ")
    assert "Error: " not in result.stderr
    assert result.stdout == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["t.json"]
    assert log.read_bytes() == before


# ---------------------------------------------------------------------------
# query: "--since/--until (ISO 8601 or 30s, 15m, 2h, 7d, 1w)", "repeat an option for
# several values", "--format table|json|jsonl (a table on a terminal, JSON otherwise)"
# ---------------------------------------------------------------------------


@pytest.fixture
def timed_log(tmp_path: Path) -> Path:
    """Entries 2 s, 10 min, 1 h 50 min, 6 days 23 h and 8 days old, one per skill."""
    ages = [2, 600, 6600, 6 * 86400 + 82800, 8 * 86400]
    entries = [_at(age, number, skill=f"age.{number}") for number, age in enumerate(ages)]
    return write(tmp_path / "t.json", entries)


def _skills(log: Path, *options: str) -> list[str]:
    result = run("query", "--file", str(log), "--limit", "all", "--format", "json", *options)
    assert result.returncode == 0, result.stderr
    return sorted(entry["skill"] for entry in json.loads(result.stdout))


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("30s", 1),
        ("15m", 2),
        ("2h", 3),
        ("7d", 4),
        ("1w", 4),
        ("2W", 5),
        (" 15M ", 2),
    ],
)
def test_since_takes_each_documented_relative_unit(
    timed_log: Path, since: str, expected: int
) -> None:
    assert _skills(timed_log, "--since", since) == [f"age.{n}" for n in range(expected)]


def test_since_and_until_take_iso_times_without_an_offset_as_utc(tmp_path: Path) -> None:
    """``since <= timestamp < until``."""
    entries = [
        make_entry(n, timestamp=f"2025-10-24T1{n}:00:00.000000+00:00", skill=f"hour.{n}")
        for n in range(4)
    ]
    log = write(tmp_path / "t.json", entries)
    chosen = _skills(log, "--since", "2025-10-24T11:00:00", "--until", "2025-10-24T13:00:00")
    assert chosen == ["hour.1", "hour.2"]
    shifted = _skills(log, "--since", "2025-10-24T13:00:00+02:00")
    assert shifted == ["hour.1", "hour.2", "hour.3"]


@pytest.mark.parametrize(
    ("option", "values", "field"),
    [
        ("--skill", ["s.1", "s.3"], "skill"),
        ("--status", ["timeout", "pending"], "status"),
        ("--caller", ["API", "cron"], "caller"),
        ("--trace-id", [f"{2:032x}", f"{4:032x}"], "trace_id"),
    ],
)
def test_repeating_a_filter_option_allows_several_values(
    tmp_path: Path, option: str, values: list[str], field: str
) -> None:
    kinds = [("s.0", "success", "CLI"), ("s.1", "timeout", "API"), ("s.2", "error", "x")]
    kinds += [("s.3", "pending", "cron")]
    entries = [
        make_entry(n, skill=skill, status=status, caller=caller)
        for n, (skill, status, caller) in enumerate(kinds)
    ]
    log = write(tmp_path / "t.json", entries)
    repeated = [part for value in values for part in (option, value)]
    result = run("query", "--file", str(log), "--format", "json", *repeated)
    assert result.returncode == 0, result.stderr
    assert sorted(entry[field] for entry in json.loads(result.stdout)) == sorted(values)


def _on_a_terminal(*args: str) -> str:
    """What the console script prints with its stdout on a pseudo-terminal."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [str(CLI), *args], stdout=follower, stderr=subprocess.PIPE, timeout=120, check=False
        )
        os.close(follower)
        follower = -1
        shown = read_terminal(leader)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert process.returncode == 0, process.stderr
    return shown.decode().replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("command", "piped"), [(["query"], "json"), (["tail", "-n", "3"], "jsonl")]
)
def test_a_table_on_a_terminal_and_json_when_piped(
    tmp_path: Path, command: list[str], piped: str
) -> None:
    log = write(tmp_path / "t.json", [make_entry(n, skill=f"shown.{n}") for n in range(3)])
    on_terminal = _on_a_terminal(*command, "--file", str(log))
    assert on_terminal.startswith("time (UTC)") or on_terminal.split()[2].startswith("shown.")
    assert "shown.2" in on_terminal
    assert not on_terminal.lstrip().startswith(("[", "{"))
    printed = run(*command, "--file", str(log)).stdout
    if piped == "json":
        newest_first = [entry["skill"] for entry in json.loads(printed)]
        assert newest_first == ["shown.2", "shown.1", "shown.0"]
    else:
        lines = [json.loads(line)["skill"] for line in printed.splitlines()]
        assert lines == ["shown.0", "shown.1", "shown.2"]  # tail: oldest first


# ---------------------------------------------------------------------------
# Python: "iter_query streams the entries in the order they were written, the last
# written first", "query(limit=N) ... the N newest entries by timestamp", "A missing
# file is an empty log in Python"
# ---------------------------------------------------------------------------


def test_iter_query_streams_in_written_order_while_query_orders_by_timestamp(
    tmp_path: Path,
) -> None:
    """Written out of time order (as batching processes may): 30 s, 10 s, 20 s ago."""
    written = [_at(30, 0), _at(10, 1), _at(20, 2)]
    log = write(tmp_path / "t.json", written)
    assert [entry["inputs"]["n"] for entry in iter_query(log)] == [2, 1, 0]
    assert [entry["inputs"]["n"] for entry in iter_query(log, newest_first=False)] == [0, 1, 2]
    assert [entry["inputs"]["n"] for entry in query(log)] == [1, 2, 0]
    assert [entry["inputs"]["n"] for entry in query(log, limit=1)] == [1]


def test_a_missing_file_is_an_empty_log_in_python(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "telemetry.json"
    assert query(missing) == []
    assert list(iter_query(missing)) == []
    assert stats(missing) == {}
    assert not missing.parent.exists()


# ---------------------------------------------------------------------------
# "Internal failures (an unwritable file, a full disk, a lock timeout) are logged ...
# and counted": each failure in internal_errors(), each entry in dropped
# ---------------------------------------------------------------------------


@capture_telemetry(skill_name="readme.counted")
def counted(number: int) -> int:
    return number


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """A log whose flock another open file holds for the whole test (a stuck writer)."""
    path = write(tmp_path / "telemetry.json", [make_entry(0)])
    with path.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        yield path


@pytest.mark.faults
@pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])
def test_a_lock_timeout_counts_in_dropped_and_in_internal_errors(
    held_lock: Path, batch: bool
) -> None:
    exporter = betty_otel.configure(held_lock, otlp=False, lock_timeout=0.2, batch=batch)
    assert exporter is not None
    assert [counted(number) for number in range(3)] == [0, 1, 2]
    betty_otel.shutdown()  # batch: the queue's one write fails here
    assert exporter.dropped == 3
    # one failed write a batch, one a call
    assert betty_otel.internal_errors() == (1 if batch else 3)
    assert len(strict_entries(held_lock)) == 1


@pytest.mark.faults
def test_an_unwritable_file_counts_in_dropped_and_in_internal_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be\n")
    exporter = betty_otel.configure(blocker / "telemetry.json", otlp=False)
    assert exporter is not None
    assert counted(7) == 7
    assert exporter.dropped == 1
    assert betty_otel.internal_errors() == 1


# ---------------------------------------------------------------------------
# Configuration: "max_bytes=N, backups=K: rotate to telemetry.json.1 ... .K past N bytes;
# readers read them as one log"
# ---------------------------------------------------------------------------


def test_rotated_files_are_read_as_one_log(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, max_bytes=4000, backups=50)
    assert [counted(number) for number in range(60)] == list(range(60))
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("telemetry.json"))
    assert "telemetry.json.1" in names
    assert "telemetry.json.2" in names
    assert len(query(path)) == 60
    assert len(list(iter_query(path))) == 60
    assert stats(path)["readme.counted"].count == 60
    result = run("query", "--file", str(path), "--limit", "all", "--format", "jsonl")
    assert len(result.stdout.splitlines()) == 60


# ---------------------------------------------------------------------------
# The README's own Python example ("Recording executions"), run as written
# ---------------------------------------------------------------------------


def test_the_recording_example_runs_as_written_and_records_what_it_says(tmp_path: Path) -> None:
    (example,) = doc_blocks("python", README)["Recording executions"]
    calls = """
        import asyncio
        build_index("docs/")
        validate("README.md", api_key="sk-live-not-a-real-key-1234567890")
        asyncio.run(publish({"title": "x"}))
        """
    log = tmp_path / "telemetry.json"
    result = subprocess.run(
        [sys.executable, "-c", example.replace("...", "pass") + textwrap.dedent(calls)],
        env={**os.environ, "BETTY_TELEMETRY_FILE": str(log)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entries = {entry["skill"]: entry for entry in strict_entries(log)}
    assert sorted(entries) == ["agent.run", "build_index", "docs.validate", "registry.publish"]
    assert entries["build_index"]["caller"] == "runtime"
    assert entries["docs.validate"]["caller"] == "CLI"
    assert entries["docs.validate"]["inputs"]["api_key"] == "***REDACTED***"
    assert entries["docs.validate"]["inputs"]["path"] == "README.md"
    published = entries["registry.publish"]
    assert published["caller"] == "workflow.compose"
    assert published["metadata"] == {"target": "registry"}
    assert published["inputs"] == {"doc": {"title": "x"}}
    agent = entries["agent.run"]
    assert (agent["status"], agent["duration_ms"]) == ("timeout", 30000.0)
    assert agent["caller"] == "scheduler"
    assert agent["inputs"] == {"agent": "reviewer"}
    assert "sk-live-not-a-real-key" not in log.read_text()


def test_the_reading_example_runs_as_written(tmp_path: Path) -> None:
    """ "query(status=[...], since="1d", limit=10)  # newest first" and
    "stats(by="caller")["CLI"].p95", on the default log ($BETTY_TELEMETRY_FILE)."""
    (example,) = doc_blocks("python", README)["Reading the log"]
    lines = example.splitlines()
    (imports,) = [line for line in lines if line.startswith("from ")]
    (newest,) = [line.split("#")[0].strip() for line in lines if line.startswith("query(")]
    (p95,) = [line.split("#")[0].strip() for line in lines if line.startswith("stats(")]
    entries = [_at(60, 0, status="failure"), _at(30, 1, status="error")]
    entries += [_at(5, 2, status="success"), _at(3 * 86400, 3, status="failure")]
    log = write(tmp_path / "telemetry.json", entries)
    code = (
        f"import json\n{imports}\nnewest = {newest}\np95 = {p95}\n"
        "print(json.dumps([[entry['inputs']['n'] for entry in newest], p95]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BETTY_TELEMETRY_FILE": str(log)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[1, 0], stats(log, by="caller")["CLI"].p95]
