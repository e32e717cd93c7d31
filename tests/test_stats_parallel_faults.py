"""A stats helper process that fails, stalls, lies or is left running: stats stays right.

A spawned helper's command (`betty_otel.query.parallel.worker_command`) or a forked
helper's work (`betty_otel.query.tally.serve_parts`) is replaced to inject the
faults; whatever it does, the result equals a read by one process, nothing waits
on it, and no process is left behind (checked with psutil).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from betty_otel.query import stats
from betty_otel.query.blocks import scan_fd
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper
from betty_otel.query.summary import summary_path
from helpers import canonical, make_entry

pytestmark = pytest.mark.faults

READY = Helper.ready


def helpers_left() -> list[psutil.Process]:
    """Children of this process that are helpers: forked (this very command) or spawned."""
    me = psutil.Process()
    found = []
    for child in me.children(recursive=True):
        try:
            command = child.cmdline()
            if command == me.cmdline() or any('"points"' in part for part in command):
                found.append(child)
        except psutil.Error:
            continue  # gone meanwhile
    return found


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A canonical log, and the figures of a read by one process (in .expected)."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(canonical([make_entry(n) for n in range(300)]))
    monkeypatch.setenv(ENV_PARALLEL, "0")
    expected = stats(path, by="skill")
    summary_path(path).unlink()
    monkeypatch.setenv(ENV_PARALLEL, "fork")
    monkeypatch.setenv(ENV_MIN_BYTES, "0")
    path.with_suffix(".expected").write_text(repr(expected))
    return path


def expected(path: Path) -> str:
    return path.with_suffix(".expected").read_text()


def use_command(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Spawn code (python -c) instead of the helper; it gets the helper's argument."""
    monkeypatch.setenv(ENV_PARALLEL, "spawn")
    monkeypatch.setattr(
        "betty_otel.query.parallel.worker_command", lambda: [sys.executable, "-c", code]
    )


def use_work(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Fork a helper that runs code (with out and notes, its descriptors) instead."""

    def work(*args: Any, out: int, notes: int, **kwargs: Any) -> None:
        exec(code, {"out": out, "notes": notes, "os": os, "time": time})

    monkeypatch.setattr("betty_otel.query.tally.serve_parts", work)


FORKED = {
    "raises": "raise RuntimeError('boom')",
    "exits at once": "os._exit(0)",
    "writes garbage": (
        "for k in range(31, 0, -1):\n"
        "    os.write(out, (1000).to_bytes(8, 'big') + os.urandom(1000))\n"
        "    os.write(notes, b'%d\\n' % k)\n"
    ),
}


@pytest.mark.parametrize("code", FORKED.values(), ids=FORKED.keys())
def test_a_failing_forked_helper_changes_nothing(
    log: Path, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """A forked helper that raises, exits or writes garbage: the parent reads those parts
    itself, and reaps the helper."""
    use_work(monkeypatch, code)
    wait_for_helper(monkeypatch)
    assert repr(stats(log, by="skill")) == expected(log)
    assert helpers_left() == []


def wait_for_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow parent: before part 1, wait until the helper has exited (or 60 s: a hang bound)."""

    def ready(self: Helper, index: int) -> bool:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # still running: go on
                self.process.wait(60 if index == 1 else 0.001)
        elif self.pid > 0 and index == 1:
            with contextlib.suppress(psutil.TimeoutExpired):  # still running: go on
                psutil.Process(self.pid).wait(5)
        return READY(self, index)

    monkeypatch.setattr(Helper, "ready", ready)


FAKES = {
    "exits at once": "import sys; sys.exit(3)",
    "crashes": "raise SystemExit('boom')",
    "claims parts it never wrote": "[print(k, flush=True) for k in range(63, 0, -1)]",
    "writes garbage": (
        "import json, os, sys\n"
        "out = json.loads(sys.argv[1])['out']\n"
        "for k in range(63, 0, -1):\n"
        "    os.write(out, (1000).to_bytes(8, 'big') + os.urandom(1000))\n"
        "    print(k, flush=True)\n"
    ),
    "writes a truncated record": (
        "import json, os, sys\n"
        "out = json.loads(sys.argv[1])['out']\n"
        "os.write(out, (10**6).to_bytes(8, 'big') + b'{}')\n"
        "print(63, flush=True)\n"
    ),
    "says nonsense": "print('x\\n-1\\n99999999999999999999\\n', flush=True)",
}


@pytest.mark.parametrize("code", FAKES.values(), ids=FAKES.keys())
def test_a_failing_spawned_helper_changes_nothing(
    log: Path, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """A spawned helper that exits, crashes or writes wrong results: the parent reads
    those parts itself."""
    use_command(monkeypatch, code)
    wait_for_helper(monkeypatch)
    assert repr(stats(log, by="skill")) == expected(log)
    assert helpers_left() == []


STALLS = {
    "spawned, sleeping": ("spawn", "import time; time.sleep(600)"),
    "forked, sleeping": ("fork", "time.sleep(600)"),
    "forked, deadlocked": (
        "fork",
        "import threading; lock = threading.Lock(); lock.acquire(); lock.acquire()",
    ),
}


@pytest.mark.parametrize(("method", "code"), STALLS.values(), ids=STALLS.keys())
def test_a_stalled_helper_is_not_waited_for_and_is_killed(
    log: Path, monkeypatch: pytest.MonkeyPatch, method: str, code: str
) -> None:
    """A helper that never answers (asleep, or deadlocked as a fork can be on a lock held
    by a thread of the parent): the parent reads everything, then kills it."""
    if method == "spawn":
        use_command(monkeypatch, code)
    else:
        use_work(monkeypatch, code)
    assert repr(stats(log, by="skill")) == expected(log)
    assert helpers_left() == []


def test_a_helper_killed_midway_leaves_its_parts_to_the_parent(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real helper killed after its first parts: the rest is read by the parent."""

    def ready(self: Helper, index: int) -> bool:
        if index == 1 and self.process is not None:
            while not READY(self, 60) and self.process.poll() is None:
                threading.Event().wait(0.005)
            self.process.kill()
        return READY(self, index)

    monkeypatch.setattr(Helper, "ready", ready)
    assert repr(stats(log, by="skill")) == expected(log)
    assert helpers_left() == []


def test_no_helper_is_left_when_the_parent_is_interrupted(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or any exception) in the middle of the parent's read: the helper is killed
    and reaped before the exception reaches the caller."""
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return scan_fd(*args, **kwargs)

    monkeypatch.setattr("betty_otel.query.columns.scan_fd", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stats(log, by="skill")
    assert helpers_left() == []


def test_stats_with_other_threads_running(log: Path) -> None:
    """Several threads reading at once, each with its helper (no fork: a new interpreter)."""
    results: list[str] = []

    def one() -> None:
        results.append(repr(stats(log, by="skill", caller="CLI")))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)  # a bound that only catches a hang
    assert results == [expected(log)] * 4
    assert helpers_left() == []


@pytest.mark.parametrize(
    "setting",
    ["below the threshold", "one CPU", "frozen", "not python", "turned off"],
)
def test_no_helper_where_it_cannot_help(
    log: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, setting: str
) -> None:
    """A file below the threshold (32 MiB by default), one CPU allowed (affinity), a frozen
    program or an interpreter that is not Python (an embedding server) when a helper must
    be spawned, or BETTY_OTEL_STATS_PARALLEL=0: read by this process alone, and the debug
    log says why (but for a small file: most files are)."""
    started: list[Helper] = []

    def enter(self: Helper) -> Helper:
        started.append(self)
        return self

    monkeypatch.setattr(Helper, "__enter__", enter)
    if setting == "below the threshold":
        monkeypatch.delenv(ENV_MIN_BYTES)
    elif setting == "one CPU":
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    elif setting == "frozen":
        monkeypatch.setenv(ENV_PARALLEL, "spawn")
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    elif setting == "not python":
        monkeypatch.setenv(ENV_PARALLEL, "spawn")
        monkeypatch.setattr(sys, "executable", "/usr/bin/uwsgi")
    else:
        monkeypatch.setenv(ENV_PARALLEL, "0")
    with caplog.at_level(logging.DEBUG, logger="betty_otel.query.parallel"):
        assert repr(stats(log, by="skill")) == expected(log)
    assert started == []
    why = {
        "below the threshold": [],
        "one CPU": ["this process may use one CPU only"],
        "frozen": ["no Python interpreter to start (a frozen or embedding program), and no fork"],
        "not python": [
            "no Python interpreter to start (a frozen or embedding program), and no fork"
        ],
        "turned off": [f"{ENV_PARALLEL}=0"],
    }[setting]
    size = log.stat().st_size
    assert [r.getMessage() for r in caplog.records] == [
        f"stats: {size} bytes read without a helper ({reason})" for reason in why
    ]


PROBE = """
import sys, threading
from betty_otel.query.parallel import start_method
release = threading.Event()
if sys.argv[1] == "thread":
    threading.Thread(target=release.wait).start()
sys.frozen = sys.argv[2] == "frozen"
print(start_method())
release.set()
"""


@pytest.mark.parametrize(
    ("setting", "thread", "frozen", "method"),
    [
        ("", "", "", "fork"),
        ("", "thread", "", "spawn"),
        ("", "thread", "frozen", "None"),
        ("spawn", "", "", "spawn"),
        ("spawn", "", "frozen", "None"),
        ("fork", "", "frozen", "fork"),
        ("0", "", "", "None"),
        ("off", "", "", "None"),
    ],
)
def test_how_a_helper_starts(setting: str, thread: str, frozen: str, method: str) -> None:
    """Fork only while no other thread runs (its locks would stay held in the child), else a
    new interpreter, when there is one (not a frozen program); never when turned off.
    Checked in a fresh interpreter, where no thread of another test runs."""
    env = {**os.environ, ENV_PARALLEL: setting}
    found = subprocess.run(
        [sys.executable, "-c", PROBE, thread or "-", frozen or "-"],
        env=env, capture_output=True, text=True, check=True, timeout=120,  # a hang bound
    )  # fmt: skip
    assert found.stdout.strip() == method
