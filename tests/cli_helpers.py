"""What the CLI tests share: the installed console script, running it, writing a log.

`entry` builds one entry of the documented schema (the `log` fixture in conftest.py
writes twelve of them).
"""

from __future__ import annotations

import ast
import os
import pty
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from betty_otel._store import TelemetryStore

CLI = Path(sys.executable).parent / "betty-telemetry"
"""The console script installed beside the interpreter running the tests."""

LEGACY_FILE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "fixtures"
    / "betty-registry-telemetry.json"
)
"""A real registry/telemetry.json of the old Betty tools (225 entries, indent=2)."""


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the console script; the result must never contain a traceback."""
    result = subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def write(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Append entries to the log at path (created if need be) and return path."""
    store = TelemetryStore(path)
    store.append(entries)
    store.close()
    return path


def read_terminal(leader: int) -> bytes:
    """Everything a pseudo-terminal received, read from its leader until it closes."""
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: all read
            break
        if not chunk:
            break
        shown += chunk
    return shown


def run_on_terminal(*args: str) -> tuple[int, bytes]:
    """Run the console script with stderr on a pseudo-terminal (stdout discarded).

    Returns the exit status and everything the terminal received.
    """
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [str(CLI), *args],
            stderr=follower,
            stdout=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        shown = read_terminal(leader)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert b"Traceback" not in shown, shown
    return result.returncode, shown


HEAVY_MODULES = (
    "[m for m in sys.modules if m.split('.')[0] == 'wrapt' or m.startswith('opentelemetry.sdk')]"
)
"""Python text: the names of the loaded modules of the OTel SDK and of wrapt."""


def run_main(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    modules: str = HEAVY_MODULES,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``betty_otel.cli.main(argv)`` in a fresh interpreter, as the console script does.

    Returns its result (exit status, stdout, stderr; never a traceback) and the modules
    it had loaded when main returned that the Python text modules lists (by default those
    of the OTel SDK and of wrapt; the last line the script prints, taken off stdout).
    """
    script = (
        "import sys\n"
        "from betty_otel.cli import main\n"
        f"code = main({list(argv)!r})\n"
        f"print('\\n' + repr({modules}))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    stdout, _, loaded = result.stdout.rstrip("\n").rpartition("\n")
    result.stdout = stdout  # the script's line starts on a line of its own
    names: list[str] = ast.literal_eval(loaded)
    return result, names


def entry(index: int, **overrides: Any) -> dict[str, Any]:
    """An entry of the documented schema, one second apart by index; overrides replace keys."""
    value: dict[str, Any] = {
        "timestamp": f"2025-10-24T14:{index // 60 % 60:02d}:{index % 60:02d}.123456+00:00",
        "skill": f"skill.{index % 3}",
        "status": "success",
        "duration_ms": 10.0 + index,
        "caller": "CLI",
        "inputs": {"n": index},
        "error_message": None,
        "metadata": {},
        "trace_id": f"{index + 1:032x}",
        "span_id": f"{index + 1:016x}",
        "parent_span_id": None,
    }
    value.update(overrides)
    return value
