"""Executions across threads: ``configure(threads=True)``.

- Off by default: an execution in a ThreadPoolExecutor worker or a Thread is a root.
- On: tasks submitted to a real ThreadPoolExecutor (and loop.run_in_executor) and
  threading.Thread objects (a subclass's own run too) started inside an execution are
  its children: the worker's entry has the submitter's trace_id and span_id as parent.
- Each task carries its own submitter's context, never that of whoever started the
  pool's worker thread.
- Tasks and threads return and raise exactly what they would without the hook.
- Reversible: configure() without it and shutdown() restore ThreadPoolExecutor.submit
  and Thread.start; a wrapper installed over ours stays and ours passes through.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import capture_telemetry
from helpers import read_entries

ORIGINAL_SUBMIT = ThreadPoolExecutor.submit
ORIGINAL_START = threading.Thread.start


@capture_telemetry(skill_name="worker.task")
def task(value: int) -> int:
    return value * 2


@capture_telemetry(skill_name="worker.fails")
def failing_task() -> None:
    raise LookupError("no such thing")


def parent_of(path: Path, skill: str) -> dict[str, Any]:
    """The one entry of skill."""
    (entry,) = [entry for entry in read_entries(path) if entry["skill"] == skill]
    return entry


def assert_child(path: Path, child: dict[str, Any], parent_skill: str) -> None:
    parent = parent_of(path, parent_skill)
    assert child["trace_id"] == parent["trace_id"]
    assert child["parent_span_id"] == parent["span_id"]


@pytest.fixture
def threads_on(tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, threads=True)
    return path


def test_without_the_option_a_pool_task_is_a_root_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)

    @capture_telemetry(skill_name="submitter")
    def submitter() -> int:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(task, 2).result()

    assert submitter() == 4
    child = parent_of(path, "worker.task")
    assert child["parent_span_id"] is None
    assert child["trace_id"] != parent_of(path, "submitter")["trace_id"]
    assert ThreadPoolExecutor.submit is ORIGINAL_SUBMIT
    assert threading.Thread.start is ORIGINAL_START


def test_pool_tasks_are_children_of_the_execution_that_submitted_them(threads_on: Path) -> None:
    @capture_telemetry(skill_name="submitter")
    def submitter() -> list[int]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(task, range(6)))

    assert submitter() == [0, 2, 4, 6, 8, 10]
    children = [entry for entry in read_entries(threads_on) if entry["skill"] == "worker.task"]
    assert len(children) == 6
    for child in children:
        assert_child(threads_on, child, "submitter")


def test_each_task_has_its_own_submitter_even_on_a_shared_pool(threads_on: Path) -> None:
    """Two executions in two threads submit to one pool, whose worker threads were
    started inside the first: every task is the child of the one that submitted it."""
    pool = ThreadPoolExecutor(max_workers=2)
    barrier = threading.Barrier(2)

    def submitter(name: str) -> Callable[[], list[int]]:
        @capture_telemetry(skill_name=name)
        def submit_some() -> list[int]:
            barrier.wait(timeout=30)  # bound catches a hang, not a speed assertion
            return [pool.submit(task, n).result() for n in range(4)]

        return submit_some

    with pool:
        pool.submit(task, 0).result()  # outside any execution: a root
        results: dict[str, list[int]] = {}
        runners = [
            threading.Thread(target=lambda n=name: results.update({n: submitter(n)()}))
            for name in ("submitter.a", "submitter.b")
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(timeout=60)
    assert results == {"submitter.a": [0, 2, 4, 6], "submitter.b": [0, 2, 4, 6]}
    entries = read_entries(threads_on)
    parents = {entry["span_id"]: entry["skill"] for entry in entries}
    tasks = [entry for entry in entries if entry["skill"] == "worker.task"]
    assert sorted(parents.get(entry["parent_span_id"], "root") for entry in tasks) == [
        "root",
        *["submitter.a"] * 4,
        *["submitter.b"] * 4,
    ]


def test_a_worker_started_inside_an_execution_does_not_adopt_later_tasks(
    threads_on: Path,
) -> None:
    pool = ThreadPoolExecutor(max_workers=1)

    @capture_telemetry(skill_name="first.submitter")
    def first() -> int:
        return pool.submit(task, 1).result()  # starts the pool's only worker thread

    with pool:
        assert first() == 2
        assert pool.submit(task, 2).result() == 4  # no execution is current here
    first_child, later = [e for e in read_entries(threads_on) if e["skill"] == "worker.task"]
    assert_child(threads_on, first_child, "first.submitter")
    assert later["parent_span_id"] is None


def test_threads_and_thread_subclasses_are_children_of_the_starter(threads_on: Path) -> None:
    class Worker(threading.Thread):
        def run(self) -> None:
            task(3)

    @capture_telemetry(skill_name="starter")
    def starter() -> list[threading.Thread]:
        started = [threading.Thread(target=task, args=(1,)), Worker()]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join(timeout=60)
        return started

    started = starter()
    children = [entry for entry in read_entries(threads_on) if entry["skill"] == "worker.task"]
    assert len(children) == 2
    for child in children:
        assert_child(threads_on, child, "starter")
    for thread in started:
        assert "run" not in vars(thread)  # the context left with the run


def test_run_in_executor_tasks_are_children_of_the_awaiting_execution(threads_on: Path) -> None:
    @capture_telemetry(skill_name="async.submitter")
    async def submitter() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, task, 5)

    assert asyncio.run(submitter()) == 10
    assert_child(threads_on, parent_of(threads_on, "worker.task"), "async.submitter")


def test_tasks_and_threads_return_and_raise_as_without_the_hook(threads_on: Path) -> None:
    seen: list[type[BaseException]] = []

    @capture_telemetry(skill_name="submitter")
    def submitter() -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(task, 21).result() == 42
            error = pool.submit(failing_task).exception()
            assert isinstance(error, LookupError)
            assert str(error) == "no such thing"
        thread = threading.Thread(target=failing_task)
        previous = threading.excepthook
        threading.excepthook = lambda hook_args: seen.append(hook_args.exc_type)
        try:
            thread.start()
            thread.join(timeout=60)
        finally:
            threading.excepthook = previous
        with pytest.raises(RuntimeError, match="once"):
            thread.start()
        assert "run" not in vars(thread)

    submitter()
    assert seen == [LookupError]
    failures = [entry for entry in read_entries(threads_on) if entry["skill"] == "worker.fails"]
    assert [entry["status"] for entry in failures] == ["failure", "failure"]
    for failure in failures:
        assert_child(threads_on, failure, "submitter")


def test_configure_without_the_option_and_shutdown_restore_the_originals(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, threads=True)
    assert ThreadPoolExecutor.submit is not ORIGINAL_SUBMIT
    assert threading.Thread.start is not ORIGINAL_START
    betty_otel.configure(path, otlp=False)
    assert ThreadPoolExecutor.submit is ORIGINAL_SUBMIT
    assert threading.Thread.start is ORIGINAL_START

    @capture_telemetry(skill_name="submitter")
    def submitter() -> int:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(task, 1).result()

    submitter()
    assert parent_of(path, "worker.task")["parent_span_id"] is None
    betty_otel.configure(path, otlp=False, threads=True)
    betty_otel.shutdown()
    assert ThreadPoolExecutor.submit is ORIGINAL_SUBMIT
    assert threading.Thread.start is ORIGINAL_START


def test_a_wrapper_installed_over_ours_stays_and_ours_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, threads=True)
    ours = ThreadPoolExecutor.submit
    calls: list[str] = []

    def theirs(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any) -> Any:
        calls.append("theirs")
        return ours(self, fn, *args)

    ThreadPoolExecutor.submit = theirs  # type: ignore[assignment,method-assign]
    try:
        betty_otel.configure(path, otlp=False)  # off: cannot unwrap from under theirs
        assert ThreadPoolExecutor.submit is theirs

        @capture_telemetry(skill_name="submitter")
        def submitter() -> int:
            with ThreadPoolExecutor(max_workers=1) as pool:
                return pool.submit(task, 4).result()

        assert submitter() == 8
        assert "theirs" in calls
        assert parent_of(path, "worker.task")["parent_span_id"] is None
    finally:
        ThreadPoolExecutor.submit = ours  # type: ignore[method-assign]
        betty_otel.shutdown()
    assert ThreadPoolExecutor.submit is ORIGINAL_SUBMIT
