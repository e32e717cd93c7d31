"""The process-wide state: `betty_otel.reset()` and the one at-fork hook (`_state.after_fork`).

- reset() returns the process to its import-time state: the pipeline shut down (its
  entries written), no redaction rules, no internal error counted, every cache empty
  (the default log resolved again from the environment).
- The shared default Sanitizer is built once, under a lock, and again after reset or
  new redaction rules.
- A forked child renews what its parent's threads may hold (the setup lock, the path
  locks, the default sanitizer's lock) and forgets the parent's executions in flight;
  the owners' child hooks run in one defined order, a failing one counted, the rest run.
- reset() keeps the executions in flight (each is written once when it ends) and lets no
  configure() in between its shutdown and its forgetting; a forked child's inherited file
  exporter has a lock of its own.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import capture_telemetry, redaction
from betty_otel._errors import count_internal_error
from betty_otel._inflight.reaper import reap
from betty_otel._sanitize import Sanitizer, default_sanitizer
from betty_otel._setup import shared_recording_tracer
from betty_otel._state import CHILD_HOOKS, RESET_HOOKS, STATE, after_fork
from betty_otel._store import default_path
from betty_otel._store.files import path_lock
from betty_otel.redaction import REDACTED
from helpers import read_entries, run_script
from inflight_helpers import once_each, open_execution, record_files, wait_until

SRC = Path(__file__).resolve().parents[1] / "src" / "betty_otel"


@capture_telemetry(skill_name="state.work")
def work(number: int) -> int:
    return number


def test_reset_writes_the_pipelines_entries_and_forgets_the_configuration(
    tmp_path: Path,
) -> None:
    """A batched entry still queued is written by reset(); after it, no pipeline, no rules,
    no error counted, and the next call configures from the environment again."""
    configured = tmp_path / "configured.json"
    betty_otel.configure(configured, batch=True, otlp=False, propagate_to_subprocesses=True)
    redaction.set_rules(redact_keys=["tenant_id"])
    count_internal_error()
    assert work(1) == 1
    betty_otel.reset()
    assert [entry["skill"] for entry in read_entries(configured)] == ["state.work"]
    assert STATE.pipeline is None
    assert STATE.redaction_rules is None
    assert not STATE.propagate_to_subprocesses
    assert betty_otel.internal_errors() == 0
    assert not redaction.is_secret_key("tenant_id")
    assert work(2) == 2  # configured lazily, to $BETTY_TELEMETRY_FILE
    assert [entry["skill"] for entry in read_entries(default_path())] == ["state.work"]
    assert len(read_entries(configured)) == 1


def test_reset_resolves_the_default_log_again_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default log is resolved once per process (a chdir does not move it), and again
    after reset(), where the working directory is then."""
    monkeypatch.delenv("BETTY_TELEMETRY_FILE")
    monkeypatch.delenv("BETTY_HOME", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    betty_otel.reset()
    assert default_path() == first / "registry" / "telemetry.json"
    monkeypatch.chdir(second)
    assert default_path() == first / "registry" / "telemetry.json"  # kept
    betty_otel.reset()
    assert default_path() == second / "registry" / "telemetry.json"


def test_reset_empties_the_caches() -> None:
    """The shared sanitizer, the shared recording tracer and the path locks are made anew."""
    sanitizer, tracer, lock = default_sanitizer(), shared_recording_tracer(), path_lock("/x")
    assert (default_sanitizer(), shared_recording_tracer(), path_lock("/x")) == (
        sanitizer,
        tracer,
        lock,
    )
    betty_otel.reset()
    assert default_sanitizer() is not sanitizer
    assert shared_recording_tracer() is not tracer
    assert path_lock("/x") is not lock


def test_new_redaction_rules_build_the_default_sanitizer_again() -> None:
    """set_rules drops the shared Sanitizer; the next one redacts by the new rules."""
    before = default_sanitizer()
    assert before.sanitize({"tenant_id": "t-1"}) == {"tenant_id": "t-1"}
    redaction.set_rules(redact_keys=["tenant_id"])
    after = default_sanitizer()
    assert after is not before
    assert after.sanitize({"tenant_id": "t-1"}) == {"tenant_id": REDACTED}
    assert default_sanitizer() is after


def test_threads_asking_together_get_one_default_sanitizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight threads ask for the shared Sanitizer at once while building it is slow: it
    is built once and each gets that one."""
    built: list[Sanitizer] = []
    real_init = Sanitizer.__init__

    def slow_init(self: Sanitizer, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)  # widens the window in which a second build would start
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(Sanitizer, "__init__", slow_init)
    start = threading.Barrier(8)
    got: list[Sanitizer] = []

    def ask() -> None:
        start.wait()
        got.append(default_sanitizer())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert got == built * 8


def test_the_child_hooks_run_in_their_order_and_a_failing_one_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """after_fork marks the process forked and calls each imported owner's hook in the
    order of CHILD_HOOKS; one that raises is counted and logged, the next ones still run."""
    called: list[str] = []
    for name in CHILD_HOOKS:
        __import__(name)

        def hook(name: str = name) -> None:
            called.append(name)
            if name == "betty_otel._sanitize":
                raise RuntimeError("injected fault in a child hook")

        monkeypatch.setattr(sys.modules[name], "after_fork_in_child", hook)
    monkeypatch.setattr(STATE, "forked", False)
    after_fork()
    assert STATE.forked
    assert called == list(CHILD_HOOKS)
    assert betty_otel.internal_errors() == 1


def test_the_hook_tables_name_every_owner_and_only_owners() -> None:
    """Each module that defines a module-level after_fork_in_child or on_reset is in
    CHILD_HOOKS or RESET_HOOKS, and each listed module defines its hook: a module renamed
    or an owner added cannot silently drop out of after_fork or reset."""
    defined: dict[str, set[str]] = {"after_fork_in_child": set(), "on_reset": set()}
    for path in SRC.rglob("*.py"):
        module = ".".join(("betty_otel", *path.relative_to(SRC).with_suffix("").parts))
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name in defined:
                defined[node.name].add(module)
    assert defined["after_fork_in_child"] == set(CHILD_HOOKS)
    assert defined["on_reset"] == set(RESET_HOOKS)
    assert len(set(CHILD_HOOKS)) == len(CHILD_HOOKS)
    assert len(set(RESET_HOOKS)) == len(RESET_HOOKS)


def test_betty_otel_registers_one_at_fork_hook() -> None:
    """Only _state registers with os.register_at_fork (the standalone drop-in fallbacks
    aside, which run without the package): the owners' hooks run from its after_fork."""
    registering = sorted(
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if not path.name.startswith("dropin_fallback")
        and any(
            isinstance(node, ast.Attribute) and node.attr == "register_at_fork"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert registering == ["_state.py"]


@pytest.mark.faults
def test_a_forked_child_has_locks_of_its_own_and_none_of_its_parents_executions(
    tmp_path: Path,
) -> None:
    """Threads of the parent hold the setup lock (inside configure), the child's log's
    path lock and the default sanitizer's lock (building it), and run an execution, when
    the main thread forks: the child configures, decorates and records at once, sees no
    execution in flight, and its log has its one entry; nothing hangs."""
    child_log, parent_log = tmp_path / "child.json", tmp_path / "parent.json"
    output = run_script(
        _FORK_PROGRAM,
        tmp_path,
        {"CHILD_LOG": str(child_log), "BETTY_TELEMETRY_FILE": str(parent_log)},
    )
    child, parent = (json.loads(line) for line in output.strip().splitlines())
    assert child == {"open in the child": 0, "errors": 0}
    assert parent == {"child exit": 0, "open in the parent": 1}
    assert [entry["skill"] for entry in read_entries(child_log)] == ["child.work"]
    assert [entry["skill"] for entry in read_entries(parent_log)] == ["parent.open"]


_FORK_PROGRAM = """
    import json, os, signal, threading, warnings
    import betty_otel
    from betty_otel import _sanitize
    from betty_otel._inflight.hooks import open_runs
    from betty_otel._store.files import path_lock

    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
    child_log = os.environ["CHILD_LOG"]
    opened = betty_otel.TelemetryContext("parent.open")  # the default sanitizer, built
    holding, release, asked = threading.Barrier(5), threading.Event(), threading.Event()


    def hold():
        holding.wait()
        release.wait()


    class HeldMeterProvider:  # configure asks it for a meter under the setup lock
        def get_meter(self, *args, **kwargs):
            asked.set()  # the pipeline is configured: executions need no lock
            hold()
            raise RuntimeError("no meter here")


    real_init = _sanitize.Sanitizer.__init__


    def held_init(self, *args, **kwargs):  # runs under the default sanitizer's lock
        if threading.current_thread().name == "sanitizer":
            hold()
        real_init(self, *args, **kwargs)


    def hold_path_lock():
        with path_lock(child_log).lock:
            hold()


    def open_execution():
        with opened:
            hold()


    def configure_held():
        betty_otel.configure(otlp=False, meter_provider=HeldMeterProvider())


    _sanitize.on_reset()
    _sanitize.Sanitizer.__init__ = held_init
    threads = [
        threading.Thread(target=configure_held),
        threading.Thread(target=open_execution),
        threading.Thread(target=hold_path_lock),
        threading.Thread(target=_sanitize.default_sanitizer, name="sanitizer"),
    ]
    threads[0].start()
    asked.wait()
    for thread in threads[1:]:
        thread.start()
    holding.wait()  # every lock is held now, and the execution is open
    open_now = len(open_runs())
    child = os.fork()
    if child == 0:
        signal.alarm(60)  # a child that hangs ends, and the test says so
        open_in_child = len(open_runs())
        betty_otel.configure(child_log, otlp=False)

        @betty_otel.capture_telemetry(skill_name="child.work")
        def child_work():
            return 1

        child_work()
        betty_otel.shutdown()
        errors = betty_otel.internal_errors()
        print(json.dumps({"open in the child": open_in_child, "errors": errors}), flush=True)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    release.set()
    for thread in threads:
        thread.join()
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"child exit": code, "open in the parent": open_now}), flush=True)
    """


def test_an_execution_in_flight_across_reset_is_written_once_and_leaves_no_record(
    tmp_path: Path,
) -> None:
    """A call with a record beside the log (inflight_after=0) is open while reset() runs;
    it ends afterwards: its entry is written once, its record is removed, and a reaper
    finds nothing left to record as abandoned."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, otlp=False, inflight_after=0)
    with open_execution("state.spanning"):
        wait_until(lambda: record_files(log), "the record of the open call")
        betty_otel.reset()
    betty_otel.shutdown()
    assert record_files(log) == []
    assert reap(log).recorded == 0
    assert [entry["skill"] for entry in once_each(read_entries(log)).values()] == ["state.spanning"]


def test_a_configure_racing_reset_is_never_wiped_unclosed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread configures (batched) and records while reset() runs, right after
    reset's shutdown: either reset forgets it after closing it, or it comes after reset
    and stays current; its entry reaches the file either way."""
    from betty_otel._setup import pipeline as setup

    log = tmp_path / "telemetry.json"
    real_shutdown = setup.shutdown
    racer = threading.Thread(
        target=lambda: (betty_otel.configure(log, otlp=False, batch=True), work(1))
    )

    def shutdown_then_race() -> None:
        real_shutdown()
        racer.start()
        racer.join(0.5)  # the racer's chance to configure between shutdown and forgetting

    monkeypatch.setattr(setup, "shutdown", shutdown_then_race)
    betty_otel.reset()
    monkeypatch.setattr(setup, "shutdown", real_shutdown)
    racer.join(60)
    betty_otel.shutdown()
    assert [entry["skill"] for entry in read_entries(log)] == ["state.work"]


def test_a_forked_child_writes_through_its_parents_exporter_whose_lock_was_held(
    tmp_path: Path,
) -> None:
    """A parent thread holds the file exporter's lock when the main thread forks; the
    child, recording through the pipeline it inherited, writes its entry and ends."""
    log = tmp_path / "telemetry.json"
    output = run_script(_EXPORTER_FORK_PROGRAM, tmp_path, {"LOG": str(log)})
    assert json.loads(output.strip().splitlines()[-1]) == {"child exit": 0}
    assert [entry["skill"] for entry in read_entries(log)] == ["child.work"]


_EXPORTER_FORK_PROGRAM = """
    import json, os, signal, threading, warnings
    import betty_otel

    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
    exporter = betty_otel.configure(os.environ["LOG"], otlp=False)
    held, release = threading.Event(), threading.Event()


    def hold():  # the fault: the lock taken as a write or a drop count takes it
        with exporter._lock:
            held.set()
            release.wait()


    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    child = os.fork()
    if child == 0:
        signal.alarm(60)  # a child that hangs ends, and the test says so

        @betty_otel.capture_telemetry(skill_name="child.work")
        def child_work():
            return 1

        child_work()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    release.set()
    holder.join()
    print(json.dumps({"child exit": os.waitstatus_to_exitcode(status)}), flush=True)
    """
