"""A closed stdout or stderr, or a stdout whose reader went away, is never an error.

``print()`` prints nothing where there is no stdout, so the original skill recorded and
exited 0 under ``1>&-``. Every betty-telemetry command, and the drop-in's command line
whichever way it records (betty_otel in the skill's interpreter, the helper, the
standard-library writer), does its work and exits as it would with its streams open:
no traceback, no "Exception ignored" at exit, the entry written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cli_helpers import CLI, run, write
from dropin_helpers import (
    INSTALLING,
    SKILL,
    betty_repo,  # noqa: F401 - the repo fixture
    install,
    orphaned_fixture,  # noqa: F401 - the orphaned fixture
    plain_python_fixture,  # noqa: F401 - the plain_python fixture
    skill_env,
)
from helpers import make_entry, strict_entries

TRACE = f"{1:032x}"
"""The trace id of make_entry(0)."""


def _commands(log: Path, tmp_path: Path) -> dict[str, list[str]]:
    """One call of every command (a few formats and a usage error too), on log."""
    file = ["--file", str(log)]
    return {
        "capture": ["capture", "s.cli", "success", "1", "CLI", *file],
        "query": ["query", *file],
        "query json": ["query", "--format", "json", *file],
        "stats": ["stats", *file],
        "trace": ["trace", TRACE, *file],
        "tail": ["tail", "-n", "5", *file],
        "check": ["check", *file],
        "repair": ["repair", *file],
        "report": ["report", "-o", str(tmp_path / "r.html"), *file],
        "export": ["export", "--otlp", "--endpoint", "http://127.0.0.1:9", "--timeout", "1", *file],
        "install-skill": ["install-skill", str(tmp_path / "absent")],
        "help": ["query", "--help"],
        "version": ["--version"],
        "usage error": ["query", "--limit", "x"],
        "bad trace id": ["trace", "not-an-id", *file],
    }


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write(tmp_path / "telemetry.json", [make_entry(n) for n in range(30)])


def _closed(args: list[str], which: str) -> subprocess.CompletedProcess[str]:
    """args run with stdout or stderr closed (the other captured)."""
    return subprocess.run(
        ["bash", "-c", f'exec "$@" {1 if which == "stdout" else 2}>&-', "--", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _broken_pipe(args: list[str], **options: object) -> tuple[int, str]:
    """args run with stdout a pipe whose reader is gone before anything is written."""
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,  # type: ignore[call-overload]
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def _clean(err: str) -> bool:
    return "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.faults
@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_every_command_does_its_work_with_a_stream_closed(
    log: Path, tmp_path: Path, which: str
) -> None:
    """Each command exits as it does with both streams open; capture still records."""
    for name, args in _commands(log, tmp_path).items():
        expected = run(*args).returncode  # what it does with its streams open
        result = _closed([str(CLI), *args], which)
        assert result.returncode == expected, (name, result.stderr)
        assert _clean(result.stderr), (name, result.stderr)
        assert result.stdout == "" or which == "stderr", name
    captured = [e for e in strict_entries(log) if e["skill"] == "s.cli"]
    assert len(captured) == 2  # with both streams open, and with one closed


@pytest.mark.faults
def test_no_reader_on_stdout_is_no_error(log: Path, tmp_path: Path) -> None:
    """The reader went away (``| head`` that is done): exit 0 for what would print, the
    same status as usual otherwise, and no complaint on stderr."""
    for name, args in _commands(log, tmp_path).items():
        expected = run(*args).returncode
        status, err = _broken_pipe([str(CLI), *args])
        assert status == expected, (name, err)
        assert _clean(err), (name, err)
    assert len([e for e in strict_entries(log) if e["skill"] == "s.cli"]) == 2


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["betty_otel", "helper", "standard library"])
def test_the_drop_in_command_line_records_whatever_its_streams(
    request: pytest.FixtureRequest, repo: Path, mode: str
) -> None:
    """As the original: ``1>&-``, ``2>&-`` or no reader on stdout, the entry is written
    and the exit status is 0, whichever way the shim records."""
    if mode == "standard library":
        repo = request.getfixturevalue("orphaned")
    else:
        install(repo)
    python = INSTALLING if mode == "betty_otel" else request.getfixturevalue("plain_python")
    shim = str(repo / SKILL / "telemetry_capture.py")
    command = [str(python), shim, "plugin.build", "success", "320", "CLI"]
    for which in ("stdout", "stderr"):
        result = subprocess.run(
            ["bash", "-c", f'exec "$@" {1 if which == "stdout" else 2}>&-', "--", *command],
            cwd=repo,
            env=skill_env(python),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (which, result.stderr)
        assert _clean(result.stderr), result.stderr
    status, err = _broken_pipe(command, cwd=repo, env=skill_env(python))
    assert status == 0
    assert _clean(err), err
    entries = strict_entries(repo / "registry" / "telemetry.json")
    assert [e["skill"] for e in entries] == ["plugin.build"] * 3
