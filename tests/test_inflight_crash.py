"""Crashes at every step of ending an execution, exit, fork (issue 17, items 3 and 4).

- Kill points (a property): a process ending an execution that has a record is killed
  (``os._exit``) at each changing file operation of the end in turn (the ``ending`` mark,
  the entry's append, the record's removal), with synchronous and batched export, after
  a log of entries or none; then reapers are killed at each of theirs, in any sequence;
  then one reap. Always: exactly one entry for the execution, every older entry intact,
  no record left, a log json.load reads.
- At exit: executions still open are recorded once before the exporter shuts down: a
  generator's as closing it records it, a daemon thread's as an error, unfinished at exit.
- Fork and multiprocessing: a child never touches its parent's records; its own, when it
  is killed, are reaped once.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import betty_otel
from betty_otel import capture_telemetry
from betty_otel._inflight.reaper import reap
from fault_writer import Children
from helpers import append_entries, make_entry
from inflight_helpers import (
    in_flight,
    line_of,
    log_entries,
    once_each,
    program,
    record_files,
    stderr_of,
    wait_in_flight,
    wait_until,
)

pytestmark = pytest.mark.faults

FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"
KILLED = 73
CHANGES = ("rename", "unlink", "pwrite", "write", "ftruncate", "fsync", "utime")
"""The os functions that change files: a kill point is a call of one of them."""


def arm(kill_at: int, exit_code: int, spare: str = "betty_otel-inflight") -> None:
    """From now on, os._exit(exit_code) at the kill_at-th call that changes a file (one of
    CHANGES), counting the calls of every thread but the one named spare."""
    calls = 0
    for name in CHANGES:
        real = getattr(os, name)

        def change(*args: Any, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            nonlocal calls
            if threading.current_thread().name != spare:
                calls += 1
                if calls == kill_at:
                    os._exit(exit_code)
            return _real(*args, **kwargs)

        setattr(os, name, change)


OWNER = f"""
import os, sys, threading, time
from typing import Any, Callable
import betty_otel
from betty_otel import capture_telemetry

CHANGES = {CHANGES!r}
{inspect.getsource(arm)}
kill_at, mode = int(sys.argv[1]), sys.argv[2]
betty_otel.configure(batch=mode == "batch")
folder = os.environ["BETTY_TELEMETRY_FILE"] + ".inflight"

def has_record():
    return os.path.isdir(folder) and [n for n in os.listdir(folder) if n.endswith(".json")]

@capture_telemetry(skill_name="end.me", capture_inputs=True)
def work(n):
    while not has_record():
        time.sleep(0.002)
    arm(kill_at, {KILLED})  # from here, each change of a file is a kill point
    return n

work(7)
betty_otel.shutdown()
print("completed", flush=True)
"""


class Crash(NamedTuple):
    """The files a crashed owner left: the log's bytes and its records (name, bytes, mtime)."""

    kill_at: int
    log: bytes | None
    records: tuple[tuple[str, bytes, int], ...]

    def restore(self, log: Path) -> None:
        folder = log.with_name(log.name + ".inflight")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        log.unlink(missing_ok=True)
        if self.log is not None:
            log.write_bytes(self.log)
        for name, data, mtime in self.records:
            (folder / name).write_bytes(data)
            os.utime(folder / name, ns=(mtime, mtime))


SEED = [make_entry(n) for n in range(3)]


def _owner_crashes(folder: Path, mode: str, seeded: bool) -> list[Crash]:
    """Kill the owner at its 1st, 2nd, ... changing file operation until it completes;
    the files each crash left."""
    crashes: list[Crash] = []
    log = folder / "telemetry.json"
    for kill_at in range(1, 50):
        shutil.rmtree(log.with_name("telemetry.json.inflight"), ignore_errors=True)
        log.unlink(missing_ok=True)
        if seeded:
            append_entries(log, SEED)
        with program(
            f"import sys; sys.argv[1:] = {[str(kill_at), mode]!r}\n" + OWNER, log
        ) as owner:
            exit_code = owner.wait(120)
            if exit_code == 0:
                assert line_of(owner) == "completed"
                return crashes
        assert exit_code == KILLED, stderr_of(log)
        records = log.with_name("telemetry.json.inflight")
        crashes.append(
            Crash(
                kill_at,
                log.read_bytes() if log.exists() else None,
                tuple(
                    (path.name, path.read_bytes(), path.stat().st_mtime_ns)
                    for path in sorted(records.iterdir())
                ),
            )
        )
    raise AssertionError("the owner never completed")


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], list[Crash]]:
    """Every crash of an owner ending an execution, by (export mode, seeded log)."""
    found = {}
    for mode in ("sync", "batch"):
        for seeded in (False, True):
            folder = tmp_path_factory.mktemp(f"owner-{mode}-{seeded}")
            found[mode, seeded] = _owner_crashes(folder, mode, seeded)
    return found


def _crashing_reaper(log: Path, kill_at: int) -> None:
    """In a forked child: reap, dying at the kill_at-th changing file operation."""
    arm(kill_at, KILLED, spare="")
    reap(log)


def _check_once(log: Path, seeded: bool) -> None:
    """After a clean reap: the execution once, the seed intact, no record."""
    entries = log_entries(log)
    assert [entry for entry in entries if entry["skill"] != "end.me"] == (SEED if seeded else [])
    mine = [entry for entry in entries if entry["skill"] == "end.me"]
    assert len(mine) == 1, mine
    once_each(entries)
    assert record_files(log) == []


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seeded", [False, True], ids=["new-log", "seeded-log"])
@pytest.mark.parametrize("mode", ["sync", "batch"])
def test_a_kill_at_any_step_of_ending_then_at_any_step_of_a_reaper_records_it_once(
    crashes: dict[tuple[str, bool], list[Crash]], tmp_path: Path, mode: str, seeded: bool
) -> None:
    """Every owner kill point, each followed by every first reaper's kill point and a
    clean reap (and by a clean reap alone): one entry for the execution, every time."""
    found = crashes[mode, seeded]
    assert len(found) >= 3  # the mark, the entry's append, the record's removal
    log = tmp_path / "telemetry.json"
    with Children() as children:
        for crash in found:
            crash.restore(log)
            assert [r["state"] for r in in_flight(log)] == ["abandoned"]
            reap(log)
            _check_once(log, seeded)
            for kill_at in range(1, 50):
                crash.restore(log)
                pid = children.fork(functools.partial(_crashing_reaper, log, kill_at))
                if children.wait(pid, timeout=60) == 0:
                    break
                reap(log)
                _check_once(log, seeded)
            assert kill_at > 1, "the reaper was never killed: it changed no file"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_sequence_of_crashed_reapers_then_one_reap_records_it_once(
    crashes: dict[tuple[str, bool], list[Crash]], data: st.DataObject
) -> None:
    """Property: any owner crash, then up to four reapers each killed at any step, then
    one reap: the execution is in the log exactly once, the seed intact, no record."""
    mode, seeded = data.draw(st.sampled_from(sorted(crashes)))
    crash = data.draw(st.sampled_from(crashes[mode, seeded]))
    kills = data.draw(st.lists(st.integers(1, 6), max_size=4))
    with tempfile.TemporaryDirectory() as folder, Children() as children:
        log = Path(folder) / "telemetry.json"
        crash.restore(log)
        for kill_at in kills:
            pid = children.fork(functools.partial(_crashing_reaper, log, kill_at))
            assert children.wait(pid, timeout=60) in (0, KILLED)
        reap(log)
        _check_once(log, seeded)


AT_EXIT = """
import sys, threading, time
import betty_otel
from betty_otel import capture_telemetry

betty_otel.configure(batch=sys.argv[1] == "batch")
started = threading.Event()

@capture_telemetry(skill_name="exit.daemon", capture_inputs=True)
def daemon_work(n):
    started.set()
    time.sleep(600)

@capture_telemetry(skill_name="exit.generator")
def numbers():
    yield 1
    yield 2

@capture_telemetry(skill_name="exit.done")
def done():
    return 1

threading.Thread(target=daemon_work, args=(1,), daemon=True).start()
started.wait(60)
numbers_left_open = numbers()
next(numbers_left_open)
done()
print("exiting", flush=True)
"""


@pytest.mark.parametrize("after", ["0", "off"])
@pytest.mark.parametrize("mode", ["sync", "batch"])
def test_executions_open_at_exit_are_recorded_once_before_the_exporter_shuts_down(
    tmp_path: Path, mode: str, after: str
) -> None:
    """A program ends with a daemon thread inside a call and a generator left open: each
    is recorded once (the daemon's as an error unfinished at exit, the generator's as a
    success, as closing it records it), nothing is dropped as 'ended after this exporter
    was shut down', no record is left, and the program exits 0."""
    log = tmp_path / "telemetry.json"
    code = f"import sys; sys.argv[1:] = [{mode!r}]\n" + AT_EXIT
    with program(code, log, BETTY_TELEMETRY_INFLIGHT_AFTER=after) as process:
        assert line_of(process) == "exiting", stderr_of(log)
        assert process.wait(120) == 0, stderr_of(log)
    entries = once_each(log_entries(log))
    by_skill = {entry["skill"]: entry for entry in entries.values()}
    assert set(by_skill) == {"exit.daemon", "exit.generator", "exit.done"}
    daemon = by_skill["exit.daemon"]
    assert daemon["status"] == "error"
    assert daemon["error_message"].startswith("unfinished at exit")
    assert by_skill["exit.generator"]["status"] == "success"
    assert "shut down" not in stderr_of(log)
    assert "Traceback" not in stderr_of(log)
    assert record_files(log) == []


@capture_telemetry(skill_name="fork.held")
def _held(gate: threading.Event) -> None:
    gate.wait(60)


def _child_run(log: Path, finish: bool) -> None:
    """In a forked child: a call of its own, until its record is there; then it ends the
    call (finish) or waits to be killed."""
    gate = threading.Event()
    worker = threading.Thread(target=_held, args=(gate,))
    worker.start()
    wait_until(lambda: [r for r in in_flight(log) if r["pid"] == os.getpid()], "its record")
    if finish:
        gate.set()
        worker.join()
        return
    threading.Event().wait(600)


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.parametrize("finish", [True, False], ids=["ends", "killed"])
def test_a_forked_child_never_touches_its_parents_records(tmp_path: Path, finish: bool) -> None:
    """A parent with an execution in flight forks; the child's own execution gets a
    record with the child's pid. Whether the child ends it or is killed (then one reap
    records it once), the parent's record is never renamed or removed by the child."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    gate = threading.Event()
    parent = threading.Thread(target=_held, args=(gate,))
    parent.start()
    try:
        (mine,) = wait_in_flight(log, Counter({"fork.held": 1}))
        names = record_files(log)
        with Children() as children:
            pid = children.fork(functools.partial(_child_run, log, finish))
            if finish:
                assert children.wait(pid, timeout=60) == 0
            else:
                wait_until(lambda: len(in_flight(log)) == 2, "the child's record")
                children.kill(pid)
        if finish:
            assert record_files(log) == names
        else:
            assert len(record_files(log)) == 2
        assert reap(log).recorded == (0 if finish else 1)
        assert [(r["span_id"], r["state"]) for r in in_flight(log)] == [
            (mine["span_id"], "running")
        ]
    finally:
        gate.set()
        parent.join()
    entries = once_each(log_entries(log))
    assert Counter(entry["skill"] for entry in entries.values()) == Counter({"fork.held": 2})
    assert entries[mine["span_id"]]["status"] == "success"
    assert record_files(log) == []


@capture_telemetry(skill_name="pool.task", capture_inputs=True)
def pool_task(n: int) -> int:
    if n >= 2:
        threading.Event().wait(600)
    return n


@pytest.mark.filterwarnings(FORK_WARNING)
def test_terminated_multiprocessing_workers_are_reaped_once(tmp_path: Path) -> None:
    """Pool workers (fork) run tasks with records; the pool is terminated (SIGTERM) while
    two tasks still run: after one reap, every task is in the log exactly once, the
    finished ones as successes, the terminated ones as abandoned errors."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    context = multiprocessing.get_context("fork")
    pool = context.Pool(2)
    try:
        assert pool.map(pool_task, [0, 1]) == [0, 1]
        pending = [pool.apply_async(pool_task, (n,)) for n in (2, 3)]
        wait_in_flight(log, Counter({"pool.task": 2}))
    finally:
        pool.terminate()
        pool.join()
    assert not any(result.ready() for result in pending)
    wait_until(lambda: len(in_flight(log, "abandoned")) == 2, "the workers to be gone")
    assert reap(log).recorded == 2
    entries = once_each(log_entries(log))
    statuses = Counter((e["inputs"]["n"], e["status"]) for e in entries.values())
    assert statuses == Counter(
        {(0, "success"): 1, (1, "success"): 1, (2, "error"): 1, (3, "error"): 1}
    )
    assert record_files(log) == []
