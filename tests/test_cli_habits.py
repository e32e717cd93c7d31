"""CLI habits: --version, a log that does not exist, -i/--ignore-case, check's fixes, progress.

Each test runs the installed console script, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from betty_otel._store import TelemetryStore
from cli_helpers import run, run_on_terminal, write
from collector import RotelCollector
from helpers import INVALID_NAME, canonical, indent2, make_entry, strict_entries

# ---------------------------------------------------------------------------
# --version
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_installed_distribution_version(flag: str) -> None:
    result = run(flag)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"betty-telemetry {metadata.version('betty-otel')}\n"


def test_version_loads_neither_the_sdk_nor_wrapt() -> None:
    """--version stays as light as --help: the metadata is read only when asked."""
    code = (
        "import json, sys\n"
        "from betty_otel.cli import main\n"
        "assert main(['--version']) == 0\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] == 'wrapt'"
        " or m.startswith('opentelemetry.sdk')]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# ---------------------------------------------------------------------------
# A log that does not exist is an error, never an empty log
# ---------------------------------------------------------------------------

READERS = [
    ["query"],
    ["query", "--format", "json"],
    ["stats"],
    ["trace", "ab" * 16],
    ["tail"],
    ["tail", "-n", "3", "--format", "jsonl"],
    ["check"],
    ["repair"],
    ["export", "--otlp", "--endpoint", "http://127.0.0.1:9", "--timeout", "1"],
    ["report", "-o", "out.html"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda argv: " ".join(argv[:2]))
def test_a_mistyped_file_is_an_error_that_names_it(tmp_path: Path, command: list[str]) -> None:
    """Exit 1, the path on stderr, nothing on stdout, nothing created."""
    path = tmp_path / "telemetry.jsno"
    result = run(*command, "--file", str(path), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: {path} does not exist (check the --file path)\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READERS, ids=lambda argv: " ".join(argv[:2]))
def test_a_missing_default_log_says_where_it_was_looked_for(
    tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BETTY_TELEMETRY_FILE", "BETTY_HOME")}
    result = run(*command, cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (1, "")
    expected = tmp_path / "registry" / "telemetry.json"
    assert result.stderr.startswith(f"Error: {expected} does not exist: nothing has been recorded")
    assert "$BETTY_TELEMETRY_FILE" in result.stderr
    assert "--file" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_folders_a_dangling_symlink_and_a_hostile_name(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "telemetry.json"
    result = run("query", "--file", str(deep))
    assert (result.returncode, result.stderr) == (
        1,
        f"Error: {deep} does not exist (check the --file path)\n",
    )
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "gone.json")
    result = run("stats", "--file", str(link))
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {link} is a symbolic link to {tmp_path / 'gone.json'}, which does not exist\n"
    )
    hostile = tmp_path / "evil\x1b[2J\u202e.json"
    result = run("query", "--file", str(hostile))
    assert result.returncode == 1
    assert "\x1b" not in result.stderr
    assert "\u202e" not in result.stderr
    assert "evil\\u001b[2J\\u202e.json does not exist" in result.stderr


def test_a_log_with_only_rotated_backups_exists(tmp_path: Path) -> None:
    """Between a rotation and the next append the current file may be absent: not an error."""
    path = tmp_path / "telemetry.json"
    write(path, [make_entry(1), make_entry(2)])
    path.rename(tmp_path / "telemetry.json.1")
    result = run("query", "--file", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2
    assert run("stats", "--file", str(path), "--format", "json").returncode == 0


def test_an_empty_log_is_not_missing(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    path.write_bytes(b"[\n]\n")
    result = run("query", "--file", str(path), "--format", "json")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "[]", "")


def test_help_documents_the_exit_statuses() -> None:
    main_help = run("--help").stdout
    assert "Exit status: 0 success; 1 an error" in main_help
    assert "a log that does not exist" in main_help
    assert "2 a usage error" in main_help
    for command in ("query", "stats", "trace", "tail", "check", "export", "report"):
        text = " ".join(run(command, "--help").stdout.split())
        assert "the log does not exist" in text, command


# ---------------------------------------------------------------------------
# -i / --ignore-case
# ---------------------------------------------------------------------------


@pytest.fixture
def mixed_case(tmp_path: Path) -> Path:
    """Callers and skills in mixed case, as real logs hold them."""
    entries = [
        make_entry(1, caller="cli", skill="docs.validate"),
        make_entry(2, caller="CLI", skill="Docs.Validate"),
        make_entry(3, caller="Cli", skill="docs.validate", status="Weird"),
        make_entry(4, caller="api", skill="DOCS.VALIDATE", status="weird"),
        make_entry(5, caller="STRASSE", skill="other", status="FAILED"),
    ]
    return write(tmp_path / "telemetry.json", entries)


def _numbers(result: subprocess.CompletedProcess[str]) -> list[int]:
    assert result.returncode == 0, result.stderr
    return sorted(entry["inputs"]["n"] for entry in json.loads(result.stdout))


def test_query_ignore_case(mixed_case: Path) -> None:
    def query(*args: str) -> list[int]:
        return _numbers(run("query", "--file", str(mixed_case), "--format", "json", *args))

    assert query("--caller", "cli") == [1]
    assert query("-i", "--caller", "cli") == [1, 2, 3]
    assert query("--ignore-case", "--caller", "CLI") == [1, 2, 3]
    assert query("--skill", "docs.validate") == [1, 3]
    assert query("-i", "--skill", "docs.validate") == [1, 2, 3, 4]
    assert query("--status", "weird") == [4]  # an unknown word matches only itself
    assert query("-i", "--status", "WEIRD") == [3, 4]
    assert query("-i", "--caller", "straße") == [5]  # casefolded, not just lowered
    assert query("--status", "failure") == [5]  # FAILED is a failure, with or without -i
    assert query("-i", "--status", "Failure", "--caller", "strasse") == [5]


def test_stats_ignore_case_selects_regardless_of_case_and_keeps_groups(mixed_case: Path) -> None:
    result = run(
        "stats", "--file", str(mixed_case), "--by", "caller", "-i", "--caller", "CLI",
        "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {group["key"]: group["count"] for group in json.loads(result.stdout)} == {
        "cli": 1,
        "CLI": 1,
        "Cli": 1,
    }


def _page(path: Path) -> str:
    """A report page without what differs between two runs (the script nonce)."""
    return re.sub(r'nonce="[^"]*"|nonce-[A-Za-z0-9+/=_-]+', "", path.read_text(encoding="utf-8"))


def test_report_ignore_case_equals_listing_every_spelling(mixed_case: Path, tmp_path: Path) -> None:
    folded = tmp_path / "folded.html"
    listed = tmp_path / "listed.html"
    base = ["report", "--file", str(mixed_case)]
    assert run(*base, "-i", "--caller", "cli", "-o", str(folded)).returncode == 0
    spellings = ["--caller", "cli", "--caller", "CLI", "--caller", "Cli"]
    assert run(*base, *spellings, "-o", str(listed)).returncode == 0
    assert _page(folded) == _page(listed)


# ---------------------------------------------------------------------------
# check: the fix that fits each problem
# ---------------------------------------------------------------------------

ENTRIES = [make_entry(n) for n in range(4)]
TORN = canonical(ENTRIES)[: -len(b"\n]\n")] + b',\n{"skill": "torn", "inp'
DAMAGED = canonical(ENTRIES).replace(b'{"timestamp":"2025-10-24T14:00:01', b'{"timestamp";"x', 1)


def _suggested_repair(stdout: str) -> list[str]:
    """The arguments of the repair command check suggested (without the program name)."""
    (command,) = set(re.findall(r"`(betty-telemetry repair[^`]*)`", stdout))
    return shlex.split(command)[1:]


def _check_problem(path: Path, data: bytes) -> str:
    """Write data at path and check it: a problem (exit 1); returns what check printed."""
    path.write_bytes(data)
    result = run("check", "--file", str(path))
    assert result.returncode == 1, result.stdout
    return result.stdout


def test_check_a_torn_tail_suggests_repair_and_the_suggestion_fixes_it(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    result = _check_problem(path, TORN)
    assert "  - torn tail: an interrupted append" in result
    assert "    fix: `betty-telemetry repair --file" in result
    assert "cuts it back to the last complete entry" in result
    assert run(*_suggested_repair(result)).returncode == 0
    assert run("check", "--file", str(path)).returncode == 0
    assert strict_entries(path) == ENTRIES


def test_check_a_file_that_is_not_an_array_is_not_told_about_torn_tails(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    result = _check_problem(path, b'{"not": "an array"}\n')
    assert "  - not a JSON array" in result
    assert "torn" not in result
    assert "give the right file with --file" in result
    assert "moves it aside to telemetry.json.invalid-<UTC time>" in result
    assert run(*_suggested_repair(result)).returncode == 0
    (moved,) = (p for p in tmp_path.iterdir() if p.name != "telemetry.json")
    assert INVALID_NAME.match(moved.name)
    assert moved.read_bytes() == b'{"not": "an array"}\n'  # nothing is deleted
    assert run("check", "--file", str(path)).returncode == 0


def test_check_damage_in_the_middle_says_there_is_nothing_to_run(tmp_path: Path) -> None:
    result = _check_problem(tmp_path / "telemetry.json", DAMAGED)
    assert "  - damaged region at byte offset" in result
    assert "fix: nothing to run: readers skip it" in result
    assert "`betty-telemetry repair" not in result


@pytest.mark.parametrize("layout", ["indent2", "one line"])
def test_check_notes_the_old_tools_layout_without_calling_it_a_problem(
    tmp_path: Path, layout: str
) -> None:
    path = tmp_path / "telemetry.json"
    data = indent2(ENTRIES) if layout == "indent2" else json.dumps(ENTRIES).encode()
    path.write_bytes(data)
    result = run("check", "--file", str(path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        f"{path}: 4 entries, OK",
        "  note: 4 entries in the old Betty tools' layout (indent=2 or one line):"
        " read and appended as they are, nothing to fix",
        # ENTRIES carry betty_otel's ids: in another layout, someone rewrote them.
        "  note: an old Betty writer (or another tool) rewrote this file: 4 entries betty_otel"
        " wrote are no longer one per line (the original writer rewrites the whole file with"
        " json.dump(indent=2) and keeps only its newest 100,000 entries)",
    ]
    TelemetryStore(path).append([make_entry(9)])  # our appends are one line each
    assert "  note: 4 entries" in run("check", "--file", str(path)).stdout


def test_check_of_our_own_layout_has_no_note(tmp_path: Path) -> None:
    path = write(tmp_path / "telemetry.json", ENTRIES)
    result = run("check", "--file", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: 4 entries, OK\n")


def test_check_a_torn_rotated_backup_names_that_file_in_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "telemetry.json", ENTRIES)
    backup = tmp_path / "telemetry.json.1"
    backup.write_bytes(TORN)
    result = run("check", "--file", str(path))
    assert result.returncode == 1
    assert f"`betty-telemetry repair --file {backup}`" in result.stdout
    assert run(*_suggested_repair(result.stdout)).returncode == 0
    assert run("check", "--file", str(path)).returncode == 0


# ---------------------------------------------------------------------------
# Progress on a terminal, and nothing otherwise
# ---------------------------------------------------------------------------


@pytest.mark.collector
def test_export_shows_progress_only_on_a_terminal(
    tmp_path: Path, rotel_collector: RotelCollector
) -> None:
    path = write(tmp_path / "telemetry.json", [make_entry(n) for n in range(30)])
    argv = ["export", "--otlp", "--endpoint", rotel_collector.http_endpoint, "--file", str(path)]
    piped = run(*argv, "--batch-size", "10")
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert piped.stdout.startswith("Exported 30 spans")
    code, shown = run_on_terminal(*argv, "--batch-size", "10")
    assert code == 0, shown
    assert b"exporting: " in shown
    assert b" spans sent" in shown
    assert shown.endswith(b"\r\x1b[K")  # the status line is erased at the end


def test_report_says_only_where_it_wrote_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    path = write(tmp_path / "telemetry.json", [make_entry(n) for n in range(30)])
    out = tmp_path / "r.html"
    result = run("report", "--file", str(path), "-o", str(out))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", f"Wrote {out}\n")
    code, shown = run_on_terminal("report", "--file", str(path), "-o", str(out))
    assert code == 0
    assert b"reading the log: 100%" in shown
    assert shown.endswith(f"\r\x1b[KWrote {out}\r\n".encode())
