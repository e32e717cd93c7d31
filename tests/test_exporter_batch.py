"""configure(batch=True), interpreter exit and fork children: no entry is lost.

Batched entries are written by force_flush, by shutdown and at normal interpreter exit;
fork children ending with os._exit (configured before or after the fork) lose nothing;
sync children and their parent share the file; decorated calls from eight threads are
all written. Everything is written to real files under tmp_path and read back.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import betty_otel
from betty_otel import _setup, capture_telemetry
from helpers import read_entries, run_script

FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"


# ---------------------------------------------------------------------------
# batch mode, exit, fork children
# ---------------------------------------------------------------------------


@capture_telemetry(skill_name="batched")
def _batched(n: int) -> int:
    return n


def test_batch_entries_are_written_by_force_flush(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    betty_otel.configure(path, batch=True, otlp=False)
    for n in range(5):
        _batched(n)
    assert _setup.current_pipeline().force_flush() is True
    assert [e["skill"] for e in read_entries(path)] == ["batched"] * 5


def test_batch_entries_are_written_by_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    betty_otel.configure(path, batch=True, otlp=False)
    for n in range(5):
        _batched(n)
    betty_otel.shutdown()
    assert len(read_entries(path)) == 5


def test_batch_entries_survive_normal_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.json"
    run_script(
        f"""
        import betty_otel
        from betty_otel import capture_telemetry

        betty_otel.configure({str(path)!r}, batch=True, otlp=False)

        @capture_telemetry(skill_name="at.exit")
        def work(n):
            return n

        for n in range(10):
            work(n)
        """,
        tmp_path,
    )
    assert [e["skill"] for e in read_entries(path)] == ["at.exit"] * 10


def _child_calls(count: int) -> None:
    for n in range(count):
        _batched(n)


def _child_configures_then_calls(path: str, count: int) -> None:
    betty_otel.configure(path, batch=True, otlp=False)
    _child_calls(count)


def _fork_and_join(target: Callable[..., None], *args: object) -> int | None:
    process = multiprocessing.get_context("fork").Process(target=target, args=args)
    process.start()
    process.join(30)
    return process.exitcode


@pytest.mark.filterwarnings(FORK_WARNING)
def test_batch_fork_child_ending_with_os_exit_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    betty_otel.configure(path, batch=True, otlp=False)
    _batched(-1)  # the parent has a live batch worker when it forks
    assert _fork_and_join(_child_calls, 20) == 0
    child_entries = read_entries(path) if path.exists() else []
    assert len(child_entries) == 20
    betty_otel.shutdown()
    assert len(read_entries(path)) == 21


@pytest.mark.filterwarnings(FORK_WARNING)
def test_batch_configured_in_a_fork_child_loses_nothing_at_os_exit(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    assert _fork_and_join(_child_configures_then_calls, str(path), 20) == 0
    assert len(read_entries(path) if path.exists() else []) == 20


@pytest.mark.filterwarnings(FORK_WARNING)
def test_sync_fork_child_and_parent_share_the_file_without_losing_entries(
    telemetry_file: Path,
) -> None:
    _batched(0)
    assert _fork_and_join(_child_calls, 20) == 0
    _batched(1)
    entries = read_entries(telemetry_file)
    assert len(entries) == 22
    assert len({entry["span_id"] for entry in entries}) == 22


def test_decorated_calls_from_eight_threads_are_all_written(telemetry_file: Path) -> None:
    threads_n, calls = 8, 40
    barrier = threading.Barrier(threads_n)

    @capture_telemetry(skill_name="threaded", capture_inputs=True)
    def work(t: int, n: int) -> int:
        return n

    def worker(t: int) -> None:
        barrier.wait()
        for n in range(calls):
            work(t, n)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = read_entries(telemetry_file)
    assert len(entries) == threads_n * calls
    assert len({entry["span_id"] for entry in entries}) == threads_n * calls
    assert all(entry["parent_span_id"] is None for entry in entries)
    for t in range(threads_n):  # each thread's calls are in its own order
        mine = [e["inputs"]["n"] for e in entries if e["inputs"]["t"] == t]
        assert mine == list(range(calls))
