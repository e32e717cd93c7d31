"""Faults: many threads at once, and forked children that end with os._exit (issue 5).

Case 5: 32 threads x 1,000 decorated calls, with the synchronous file export and with
batching: exactly 32,000 unique entries, and the file is strict JSON.
Case 10: a multiprocessing fork child (synchronous and batched export) and a child that
calls os._exit itself lose nothing from the file.

Every call carries a unique id in its inputs, so "exactly N unique entries" means no
entry was lost and none was written twice.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import capture_telemetry
from helpers import strict_entries

pytestmark = pytest.mark.faults

THREADS = 32
CALLS_PER_THREAD = 1_000

# Python 3.12+ warns when a process with threads (the batch processor's worker) forks;
# forking such a process is exactly what these tests are about.
_FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"


def call_ids(entries: list[dict[str, Any]]) -> Counter[str]:
    """How many times each call id appears in the entries."""
    return Counter(str(entry["inputs"]["call_id"]) for entry in entries)


@capture_telemetry(skill_name="faults.work", caller="faults", capture_inputs=True)
def work(call_id: str) -> str:
    return call_id


def _hammer(prefix: str, threads: int, calls: int) -> set[str]:
    """threads x calls decorated calls started together; returns the ids that returned."""
    barrier = threading.Barrier(threads)
    done: list[list[str]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            out = done[index]
            for i in range(calls):
                call_id = f"{prefix}{index}-{i}"
                assert work(call_id) == call_id
                out.append(call_id)
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    return {call_id for ids in done for call_id in ids}


def _assert_exactly(path: Path, expected: set[str]) -> None:
    counts = call_ids(strict_entries(path))
    duplicated = {call_id: n for call_id, n in counts.items() if n > 1}
    missing = expected - set(counts)
    assert not duplicated, f"{len(duplicated)} calls written more than once"
    assert not missing, f"{len(missing)} of {len(expected)} acknowledged calls are not in the file"
    assert set(counts) == expected


# ---------------------------------------------------------------------------
# Case 5: 32 threads x 1,000 calls
# ---------------------------------------------------------------------------


def test_32_threads_x_1000_calls_with_synchronous_export_write_exactly_32000_entries(
    tmp_path: Path,
) -> None:
    """Synchronous export: every one of the 32,000 calls is in the file exactly once."""
    path = tmp_path / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    expected = _hammer("s", THREADS, CALLS_PER_THREAD)
    assert len(expected) == THREADS * CALLS_PER_THREAD
    _assert_exactly(path, expected)  # on disk when the calls returned: no flush needed
    assert exporter.exported == THREADS * CALLS_PER_THREAD
    assert exporter.dropped == 0


def test_32_threads_x_1000_calls_with_batching_write_exactly_32000_entries_after_shutdown(
    tmp_path: Path,
) -> None:
    """configure(batch=True), then shutdown() flushes: exactly 32,000 unique entries.

    32 threads produce spans much faster than one exporter thread drains them; a batch
    pipeline that drops spans when its queue is full loses acknowledged calls.
    """
    path = tmp_path / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False, batch=True)
    assert exporter is not None
    expected = _hammer("b", THREADS, CALLS_PER_THREAD)
    betty_otel.shutdown()
    _assert_exactly(path, expected)
    assert exporter.dropped == 0


def test_threads_mixing_decorator_context_and_capture_write_every_entry_once(
    tmp_path: Path,
) -> None:
    """8 threads, each interleaving decorated calls, TelemetryContext blocks and
    TelemetryCapture.capture() on the same file (synchronous export): every one once."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)
    capture = betty_otel.TelemetryCapture(path)
    threads, rounds = 8, 250
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                work(f"d{index}-{i}")
                with betty_otel.TelemetryContext(
                    "faults.block", inputs={"call_id": f"c{index}-{i}"}
                ):
                    pass
                capture.capture(
                    "faults.capture", "success", 1.0, "faults", {"call_id": f"k{index}-{i}"}
                )
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    expected = {f"{kind}{n}-{i}" for kind in "dck" for n in range(threads) for i in range(rounds)}
    _assert_exactly(path, expected)


# ---------------------------------------------------------------------------
# Case 10: fork children that end with os._exit
# ---------------------------------------------------------------------------

CHILD_CALLS = 200


def _child_calls(prefix: str) -> None:
    for i in range(CHILD_CALLS):
        work(f"{prefix}-{i}")


def _run_fork_child(prefix: str) -> None:
    """A multiprocessing fork child that makes decorated calls and ends normally.

    multiprocessing ends its children with os._exit, so atexit handlers never run there.
    """
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_child_calls, args=(prefix,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0


@pytest.mark.filterwarnings(_FORK_WARNING)
@pytest.mark.parametrize("batch", [False, True], ids=["synchronous", "batch"])
def test_a_multiprocessing_fork_child_loses_nothing_from_the_file(
    batch: bool, tmp_path: Path
) -> None:
    """Parent calls before and after the fork, child calls in between: nothing lost, nothing
    written twice (a batch queue copied into the child must not be written by both)."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, batch=batch)
    before = {work(f"parent-before-{i}") for i in range(50)}  # maybe still queued at fork
    _run_fork_child("child")
    after = {work(f"parent-after-{i}") for i in range(50)}
    if not batch:  # synchronous: the child's entries are on disk as soon as it has ended
        assert call_ids(strict_entries(path))["child-0"] == 1
    betty_otel.shutdown()
    child = {f"child-{i}" for i in range(CHILD_CALLS)}
    _assert_exactly(path, before | after | child)


@pytest.mark.filterwarnings(_FORK_WARNING)
@pytest.mark.parametrize("batch", [False, True], ids=["synchronous", "batch"])
def test_two_generations_of_fork_children_lose_nothing(batch: bool, tmp_path: Path) -> None:
    """A fork child that itself forks a child: every generation's calls are in the file."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, batch=batch)

    def middle() -> None:
        _child_calls("middle")
        _run_fork_child("grandchild")

    context = multiprocessing.get_context("fork")
    child = context.Process(target=middle)
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    betty_otel.shutdown()
    expected = {f"{who}-{i}" for who in ("middle", "grandchild") for i in range(CHILD_CALLS)}
    _assert_exactly(path, expected)


def _pool_task(index: int) -> int:
    for i in range(20):
        work(f"pool-{index}-{i}")
    return index


@pytest.mark.filterwarnings(_FORK_WARNING)
@pytest.mark.parametrize("batch", [False, True], ids=["synchronous", "batch"])
def test_fork_pool_workers_closed_and_joined_lose_nothing(batch: bool, tmp_path: Path) -> None:
    """multiprocessing.Pool (fork) workers end with os._exit after close() and join():
    every task's calls are in the file."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, batch=batch)
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        assert sorted(pool.map(_pool_task, range(10))) == list(range(10))
    finally:
        pool.close()
        pool.join()
    betty_otel.shutdown()
    _assert_exactly(path, {f"pool-{n}-{i}" for n in range(10) for i in range(20)})


@pytest.mark.filterwarnings(_FORK_WARNING)
def test_a_fork_child_that_calls_os_exit_itself_loses_nothing_with_synchronous_export(
    tmp_path: Path,
) -> None:
    """Default synchronous export: a child's os._exit(0) right after its calls loses nothing."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)
    work("parent-0")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: never returns into pytest
        code = 0
        try:
            _child_calls("exiting")
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # No shutdown/flush: the child's entries were on disk before it exited.
    expected = {"parent-0"} | {f"exiting-{i}" for i in range(CHILD_CALLS)}
    _assert_exactly(path, expected)
