"""Helpers of the in-flight tests: programs that run executions until they are killed,
waits on the record folder, and checks that every execution is in the log exactly once.

Programs run as real interpreters (``python -c``) in a session of their own, so a test
kills a workflow with every subprocess it started (``os.killpg``). They record with
``BETTY_TELEMETRY_INFLIGHT_AFTER=0``: every execution has a record from its start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from betty_otel import capture_telemetry
from betty_otel.query import running

T = TypeVar("T")

Entry = dict[str, Any]


def wait_until(condition: Callable[[], T], what: str, timeout: float = 60.0) -> T:
    """Poll condition until it returns something true; return it. The timeout catches a
    hang, it is no speed target."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def open_execution(skill: str) -> Iterator[None]:
    """A decorated call of skill running on another thread for the whole block (it has
    started when the block begins, and has ended when the block is left)."""
    started, release = threading.Event(), threading.Event()

    @capture_telemetry(skill_name=skill)
    def waiting() -> None:
        started.set()
        release.wait(60)

    worker = threading.Thread(target=waiting)
    worker.start()
    try:
        assert started.wait(60)
        yield
    finally:
        release.set()
        worker.join(60)


def program_env(log: Path, **extra: str) -> dict[str, str]:
    """The environment of a program under test: its log, records from the start, no OTel
    settings of the machine."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "TRACE", "BETTY_"))
    }
    env.update(BETTY_TELEMETRY_FILE=str(log), BETTY_TELEMETRY_INFLIGHT_AFTER="0")
    env.update(extra)
    return env


_DEFAULT_SIGNALS = (
    "import signal\n"
    "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
)


@contextlib.contextmanager
def program(code: str, log: Path, **extra: str) -> Iterator[subprocess.Popen[str]]:
    """Run code in a new interpreter and session (stdout piped); killed with its whole
    session when the block ends, whatever happened. It starts with the signals' default
    actions, as a service does, even when the tests run under ``nohup`` (which leaves
    SIGHUP ignored in every process it starts)."""
    errors = _outputs(log) / f"stderr-{time.monotonic_ns()}.txt"
    with errors.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _DEFAULT_SIGNALS + textwrap.dedent(code)],
            env=program_env(log, **extra),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


def _outputs(log: Path) -> Path:
    """Where the programs' stderr goes: the log's folder, or the nearest one that exists."""
    return next(folder for folder in log.parents if folder.is_dir())


def stderr_of(log: Path) -> str:
    """What the programs of a test printed on stderr (for assertion messages)."""
    return "\n".join(path.read_text() for path in sorted(_outputs(log).glob("stderr-*.txt")))


def line_of(process: subprocess.Popen[str]) -> str:
    """The next line the program printed (it prints when it is where a test wants it)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the program ended (exit {process.poll()}) before it printed a line"
    return line.strip()


def kill_session(process: subprocess.Popen[str], sig: int) -> None:
    """Send sig to the program and every process of its session; wait for the program."""
    os.killpg(process.pid, sig)
    process.wait(timeout=60)


def in_flight(log: Path, state: str | None = None) -> list[Entry]:
    """The log's executions in flight (those in state, when given)."""
    return [entry for entry in running(log) if state is None or entry["state"] == state]


def wait_in_flight(log: Path, skills: Counter[str], state: str = "running") -> list[Entry]:
    """Wait until the executions in flight in state are exactly skills (by skill name)."""

    def ready() -> list[Entry]:
        found = in_flight(log, state)
        return found if Counter(entry["skill"] for entry in found) == skills else []

    return wait_until(ready, f"{dict(skills)} in flight ({state})")


def log_entries(log: Path) -> list[Entry]:
    """The whole log, strictly (json.load), as every Betty tool reads it."""
    with log.open(encoding="utf-8") as handle:
        data = json.load(handle)
    assert isinstance(data, list)
    return data


def once_each(entries: list[Entry]) -> dict[str, Entry]:
    """The entries by span id, checking that no execution is there twice."""
    counts = Counter(entry["span_id"] for entry in entries)
    twice = {span: count for span, count in counts.items() if count > 1}
    assert not twice, f"executions recorded more than once: {twice}"
    return {entry["span_id"]: entry for entry in entries}


def assert_abandoned(entry: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    """entry is the one final entry of the abandoned execution that record showed."""
    for key in ("skill", "caller", "inputs", "trace_id", "span_id", "parent_span_id"):
        assert entry[key] == record[key], key
    assert entry["status"] == "error"
    assert entry["error_message"].startswith("abandoned: "), entry["error_message"]
    assert str(record["pid"]) in entry["error_message"]
    assert entry["metadata"]["abandoned"] is True
    assert entry["metadata"]["last_seen"] == entry["timestamp"]
    assert entry["duration_ms"] >= 0


def record_files(log: Path) -> list[str]:
    """The names in the log's record folder ([] when there is none)."""
    folder = log.with_name(log.name + ".inflight")
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
