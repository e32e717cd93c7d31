"""Faults and bad input around executions in flight (issue 17, item 5).

- The record folder is a file, a symbolic link, a FIFO, unwritable (immutable), or its
  disk is full (ENOSPC injected), or the log's own folder is read-only: the call returns
  what it returns, one warning is logged (not one per call), nothing is written through
  the link or into what stands there, and the execution is still in the log when it ends.
  The readers of the log do not fail on it; ``running`` and ``check`` say what is wrong.
- Garbage, huge, hostile and foreign files in the folder (a link to a secret, a FIFO, a
  folder, deep JSON, wrong ids, impossible times, any bytes): nothing hangs or raises,
  ``running`` lists only real records, ``check`` names every file it cannot read,
  ``repair`` leaves them byte for byte, and a program goes on recording.
- Clock jumps: a wall clock that jumps after a call started, or records whose times no
  clock gives, make neither a failure nor a negative duration.

Tests run as root, where mode bits stop nothing: "unwritable" uses the immutable
attribute (``chattr +i``), which stops root too; where chattr is refused, a non-root run
uses chmod, and a root run substitutes the one fault that stops root (a file in place).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import betty_otel
from betty_otel import capture_telemetry
from betty_otel._inflight import records as record_files_module
from betty_otel._inflight.owner import this_process
from betty_otel._inflight.reaper import reap
from betty_otel.query import running
from cli_helpers import run as run_cli
from inflight_helpers import (
    in_flight,
    log_entries,
    once_each,
    open_execution,
    record_files,
    wait_in_flight,
    wait_until,
)

pytestmark = pytest.mark.faults


@capture_telemetry(skill_name="faults.hold", capture_inputs=True)
def hold(gate: threading.Event, n: int) -> int:
    gate.wait(60)
    return n * 2


def _chattr(flag: str, target: Path) -> bool:
    tool = shutil.which("chattr")
    return (
        tool is not None
        and subprocess.run([tool, flag, str(target)], capture_output=True, check=False).returncode
        == 0
    )


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], bool]]:
    """Make a folder immutable (chattr +i), undone at teardown; False when refused."""
    made: list[Path] = []

    def make(target: Path) -> bool:
        if _chattr("+i", target):
            made.append(target)
            return True
        if os.geteuid() != 0:
            target.chmod(0o500)
            return True
        return False

    yield make
    for target in made:
        _chattr("-i", target)


def _fault(kind: str, log: Path, immutable: Callable[[Path], bool], mp: pytest.MonkeyPatch) -> Path:
    """Put the fault in place; returns what must stay untouched (a link's target...)."""
    folder = log.with_name(log.name + ".inflight")
    outside = log.parent / "outside"
    outside.mkdir()
    if kind == "a file":
        folder.write_text("not a folder\n")
    elif kind == "a symbolic link":
        folder.symlink_to(outside, target_is_directory=True)
    elif kind == "a FIFO":
        os.mkfifo(folder)
    elif kind == "unwritable":
        folder.mkdir(mode=0o700)
        if not immutable(folder):
            folder.rmdir()
            folder.write_text("stands in for an unwritable folder, as root\n")
    elif kind == "full":

        def full(fd: int, data: bytes, offset: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        mp.setattr(record_files_module, "pwrite_all", full)
    elif kind == "a read-only log folder":
        log.write_text("[\n]\n")
        if not immutable(log.parent):
            log.unlink()
            (log.parent / "telemetry.json.inflight").write_text("stands in, as root\n")
    return outside


FOLDER_FAULTS = [
    "a file",
    "a symbolic link",
    "a FIFO",
    "unwritable",
    "full",
    "a read-only log folder",
]


@pytest.mark.parametrize("kind", FOLDER_FAULTS)
def test_a_record_folder_that_cannot_be_used_costs_one_warning_and_no_execution(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    immutable: Callable[[Path], bool],
    kind: str,
) -> None:
    """The first call that should get a record returns what it returns and one warning
    names the folder; 20 more calls add no warning; every call is in the log; nothing is
    written through a link; the log's readers work; no internal error is counted."""
    caplog.set_level(logging.WARNING, logger="betty_otel")
    log = tmp_path / "registry" / "telemetry.json"
    log.parent.mkdir()
    outside = _fault(kind, log, immutable, monkeypatch)
    folder = log.with_name(log.name + ".inflight")
    before = folder.read_bytes() if folder.is_file() else None
    betty_otel.configure(log, inflight_after=0)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    gate = threading.Event()
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(hold(gate, 1)))
    worker.start()
    try:
        wait_until(warnings, "the warning")
    finally:
        gate.set()
        worker.join(60)
    gate.clear()
    gate.set()
    results.extend(hold(gate, n) for n in range(2, 22))
    assert results == [n * 2 for n in range(1, 22)]
    (message,) = warnings()
    assert "telemetry.json.inflight" in message
    assert len(once_each(log_entries(log))) == 21
    assert list(outside.iterdir()) == []
    if before is not None:
        assert folder.read_bytes() == before
    if kind == "full":
        assert record_files(log) == []  # no half-written record is left
    assert betty_otel.internal_errors() == 0
    assert run_cli("query", "--file", str(log), "--format", "json").returncode == 0
    if kind in ("a file", "a symbolic link", "a FIFO"):
        shown = run_cli("running", "--file", str(log))
        assert shown.returncode == 1
        assert "telemetry.json.inflight" in shown.stderr
        assert run_cli("check", "--file", str(log)).returncode == 1


RECORD = "0123456789abcdef0123456789abcdef-0123456789abcdef.json"
"""A name of a record (for files that pretend to be one)."""


def _valid(pid: int = 1, **change: Any) -> dict[str, Any]:
    """A well-formed record of RECORD's ids; change replaces top-level keys."""
    trace_id, span_id = RECORD[:32], RECORD[33:49]
    record: dict[str, Any] = {
        "betty_inflight": 1,
        "owner": this_process()._replace(pid=pid).as_json(),
        "start_ns": time.time_ns(),
        "entry": {"skill": "s", "caller": "c", "inputs": {}, "metadata": {},
                  "trace_id": trace_id, "span_id": span_id, "parent_span_id": None},
    }  # fmt: skip
    record.update(change)
    return record


def _hostile_folder(folder: Path, secret: Path) -> dict[str, str]:
    """Files no record betty_otel can use, by name; each a way to fail a reader."""
    folder.mkdir(mode=0o700)
    names = {
        "garbage": "a" * 32 + "-" + "b" * 16 + ".json",
        "huge": "c" * 32 + "-" + "d" * 16 + ".json",
        "deep": "e" * 32 + "-" + "f" * 16 + ".json",
        "wrong-ids": RECORD,
        "bad-time": "1" * 32 + "-" + "2" * 16 + ".json",
        "link": "3" * 32 + "-" + "4" * 16 + ".json",
        "fifo": "5" * 32 + "-" + "6" * 16 + ".json",
        "folder": "7" * 32 + "-" + "8" * 16 + ".json",
        "foreign": "README.txt",
    }
    (folder / names["garbage"]).write_bytes(b"\x00\xff{not json")
    (folder / names["huge"]).write_bytes(b" " * (2 << 20))
    (folder / names["deep"]).write_text("[" * 100_000 + "]" * 100_000)
    (folder / names["wrong-ids"]).write_text(json.dumps(_valid(entry={"skill": "s"})))
    bad_time = _valid(start_ns=10**30)
    bad_time["entry"].update(trace_id="1" * 32, span_id="2" * 16)
    (folder / names["bad-time"]).write_text(json.dumps(bad_time))
    (folder / names["link"]).symlink_to(secret)
    os.mkfifo(folder / names["fifo"])
    (folder / names["folder"]).mkdir()
    (folder / names["foreign"]).write_text("notes\n")
    return names


def _state(folder: Path) -> dict[str, Any]:
    """Each file's bytes (a link, FIFO or folder: its mode)."""
    return {
        path.name: path.read_bytes()
        if path.is_file() and not path.is_symlink()
        else path.lstat().st_mode
        for path in folder.iterdir()
    }


def test_hostile_files_in_the_folder_are_named_never_followed_and_left_as_they_are(
    tmp_path: Path,
) -> None:
    """running lists nothing, check exits 1 naming each file, repair records nothing and
    leaves every file as it was (the link's target unread and unchanged), and a program
    configured on the log (which reaps at start) records its executions as usual."""
    log = tmp_path / "telemetry.json"
    secret = tmp_path / "secret.txt"
    secret.write_text("the target of a link\n")
    folder = log.with_name("telemetry.json.inflight")
    names = _hostile_folder(folder, secret)
    before = _state(folder)
    assert running(log) == []
    checked = run_cli("check", "--file", str(log))
    assert checked.returncode == 1
    for name in names.values():
        assert name in checked.stdout, name
    repaired = run_cli("repair", "--file", str(log))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert _state(folder) == before
    assert secret.read_text() == "the target of a link\n"
    assert not log.exists() or log_entries(log) == []
    betty_otel.configure(log, inflight_after=0)
    gate = threading.Event()
    worker = threading.Thread(target=hold, args=(gate, 3))
    worker.start()
    try:
        wait_in_flight(log, Counter({"faults.hold": 1}))
    finally:
        gate.set()
        worker.join(60)
    assert [entry["skill"] for entry in log_entries(log)] == ["faults.hold"]
    assert _state(folder) == before


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_ODD = st.none() | st.integers() | st.text(max_size=10)
_OWNER_KEYS = st.sampled_from(["host", "pid", "boot_id", "start_ticks", "pid_ns"])
_ENTRY_KEYS = st.sampled_from(["skill", "caller", "inputs", "trace_id", "span_id"])
_EMPTY: st.SearchStrategy[Any] = st.just({})
_OWNERS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(_OWNER_KEYS, _ODD)
_ENTRIES: st.SearchStrategy[dict[str, Any]] = st.dictionaries(_ENTRY_KEYS, _ODD | _EMPTY)


def _record_bytes(owner: dict[str, Any], start: int, entry: dict[str, Any]) -> bytes:
    return json.dumps(_valid(owner=owner, start_ns=start, entry=entry)).encode()


_CONTENTS = st.one_of(
    st.binary(max_size=300),
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.builds(_record_bytes, _OWNERS, st.integers(-(2**70), 2**70), _ENTRIES),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=_CONTENTS, mtime=st.integers(0, 2**62))
def test_any_content_in_a_record_never_breaks_a_reader_or_the_log(
    tmp_path: Path, content: bytes, mtime: int
) -> None:
    """Property: a file named like a record with any bytes, any JSON, or a record with any
    owner, start and entry, and any modification time: running and reap never raise,
    every duration shown is >= 0, and the log stays a JSON array."""
    log = tmp_path / f"{time.monotonic_ns()}.json"
    folder = log.with_name(log.name + ".inflight")
    folder.mkdir(mode=0o700)
    (folder / RECORD).write_bytes(content)
    os.utime(folder / RECORD, ns=(mtime, mtime))
    shown = running(log)
    assert all(entry["duration_ms"] >= 0 for entry in shown)
    reap(log, max_age=0)
    assert not log.exists() or isinstance(log_entries(log), list)


def test_records_whose_times_no_clock_gives_are_shown_and_reaped_sanely(tmp_path: Path) -> None:
    """A record last seen before it started (a clock set back), or far in the future:
    running shows a duration >= 0 and a last_seen not before started; the abandoned
    entry has the same, and a timestamp json.load reads."""
    log = tmp_path / "telemetry.json"
    folder = log.with_name("telemetry.json.inflight")
    folder.mkdir(mode=0o700)
    record = _valid(pid=2**22 + 12345)  # a pid no process has here
    path = folder / RECORD
    path.write_text(json.dumps(record))
    back = record["start_ns"] - 3600 * 10**9
    os.utime(path, ns=(back, back))
    (shown,) = running(log)
    assert (shown["state"], shown["duration_ms"]) == ("abandoned", 0.0)
    assert shown["last_seen"] == shown["started"]
    ahead = record["start_ns"] + 3 * 10**18  # about a century on
    os.utime(path, ns=(ahead, ahead))
    (shown,) = running(log)
    assert shown["last_seen"] > shown["started"]
    assert reap(log).recorded == 1
    (entry,) = log_entries(log)
    assert entry["duration_ms"] >= 0
    assert entry["timestamp"] == shown["last_seen"]


@pytest.mark.parametrize("jump", [2 * 86_400, -2 * 86_400])
def test_a_wall_clock_jump_during_a_call_breaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jump: int
) -> None:
    """The wall clock jumps two days (on or back) after a call started: its record is
    still written (last seen never before its start), then removed when it ends, and the
    call is in the log once; nothing is raised or counted as an internal error."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0.2)
    try:
        with open_execution("faults.clock"):
            real = time.time_ns
            monkeypatch.setattr(time, "time_ns", lambda: real() + jump * 10**9)
            (record,) = wait_in_flight(log, Counter({"faults.clock": 1}))
            assert record["last_seen"] >= record["started"]
    finally:
        monkeypatch.undo()
    assert [entry["skill"] for entry in log_entries(log)] == ["faults.clock"]
    assert record_files(log) == []
    assert betty_otel.internal_errors() == 0
    assert in_flight(log) == []
