"""Faults: lock holders that fork or stop (issue 5, cases 7 and 8).

7. Fork while another thread holds the lock: the child appends and never releases the
   parent's lock.
8. SIGSTOP the lock holder: others give up in bounded time, count and log the drop, and
   all continue once it resumes.

Every decorated call carries a unique id (``entry["inputs"]["call_id"]``), so "exactly
once" is checked call by call. Writers are forked children managed by
``fault_writer.Children``, which kills and reaps them however a test ends.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel._store import LockTimeoutError, TelemetryStore, check_file
from fault_writer import (
    EXIT_DROPPED,
    EXIT_WRONG_VALUE,
    FORK_WARNING,
    Children,
    current_exporter,
    ids_of,
    raw_entry,
    record,
)
from helpers import (
    append_entries,
    betty_errors,
    strict_entries,
)

pytestmark = pytest.mark.faults


# ---------------------------------------------------------------------------
# Case 7: fork while another thread holds the lock
# ---------------------------------------------------------------------------

PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(0)
sys.exit(1)
"""


def locked_by_someone(path: Path) -> bool:
    """Asked from a third process: is flock(LOCK_EX) on path held by anyone?"""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], timeout=60, check=False, capture_output=True
    )
    assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
    return done.returncode == 0


def _read_byte(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 1) if ready else b""


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.timeout(120)
def test_a_child_forked_while_a_thread_holds_the_lock_appends_and_never_releases_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 7: a thread of the parent is inside a decorated call's append (its pwrite blocks)
    when the process forks. In the child, a fresh store gives up while the parent holds the
    lock (the child did not inherit it); a third process then still finds the file locked
    (the child did not release it); once the parent's thread finishes, the child appends
    through the inherited decorator pipeline and a fresh TelemetryStore within seconds.
    Every call is in the file once."""
    path = tmp_path / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert record("parent-before") == "parent-before"
    parent = os.getpid()
    holding = threading.Event()
    release = threading.Event()
    holder_ident: list[int] = []
    real_pwrite = os.pwrite

    def blocking_pwrite(fd: int, data: Any, offset: int) -> int:
        if os.getpid() == parent and threading.get_ident() in holder_ident and not holding.is_set():
            holding.set()
            release.wait(60)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", blocking_pwrite)
    returned: list[str] = []

    def hold() -> None:
        holder_ident.append(threading.get_ident())
        returned.append(record("parent-held"))

    holder = threading.Thread(target=hold)
    holder.start()
    read_fd, write_fd = os.pipe()

    def child() -> None:
        os.close(read_fd)
        early = TelemetryStore(path, lock_timeout=0.5)
        try:
            early.append([raw_entry("child-early")])
        except LockTimeoutError:
            pass
        else:
            raise SystemExit(10)  # appended while the parent's thread held the lock
        finally:
            early.close()
        os.write(write_fd, b"1")
        if record("child-decorated") != "child-decorated":
            raise SystemExit(EXIT_WRONG_VALUE)
        fresh = TelemetryStore(path)
        try:
            fresh.append([raw_entry("child-store")])
        finally:
            fresh.close()
        if current_exporter().dropped:
            raise SystemExit(EXIT_DROPPED)

    try:
        assert holding.wait(30), "the holder thread never reached its write"
        with Children() as children:
            pid = children.fork(child)
            os.close(write_fd)
            if _read_byte(read_fd, 30) != b"1":
                code = children.wait(pid, timeout=30)
                pytest.fail(f"the child did not time out on the parent's lock (exit {code})")
            time.sleep(0.3)  # the child is now waiting for the lock in its decorated call
            assert locked_by_someone(path), "the child released the parent's lock"
            assert holder.is_alive()
            assert children.poll(pid) is None, "the child ended while the lock was held"
            release.set()
            started = time.monotonic()
            code = children.wait(pid, timeout=30)
            waited = time.monotonic() - started
        assert code == 0, f"child exit {code}"
        assert waited < 10, f"the child needed {waited:.1f} s after the lock was released"
    finally:
        release.set()
        holder.join(60)
        os.close(read_fd)
    assert returned == ["parent-held"]
    counts = Counter(ids_of(strict_entries(path)))
    assert counts == Counter(["parent-before", "parent-held", "child-decorated", "child-store"])
    assert exporter.dropped == 0
    assert not locked_by_someone(path)


# ---------------------------------------------------------------------------
# Case 8: SIGSTOP the lock holder
# ---------------------------------------------------------------------------

BOUND = 5.0  # a generous bound on a give-up that waits 0.5 s: not a timing benchmark


def _hold_lock(path: Path, how: str, ready_fd: int, go_fd: int) -> None:
    """In a forked child: take the store's lock (or stop half-way through a write), say so
    on ready_fd, and wait for a byte on go_fd before finishing."""
    store = TelemetryStore(path)

    def wait_for_go() -> None:
        os.write(ready_fd, b"1")
        os.read(go_fd, 1)

    if how == "holding-the-lock":
        with store.locked():
            wait_for_go()
    else:
        real = os.pwrite
        first = True

        def half_then_wait(fd: int, data: Any, offset: int) -> int:
            nonlocal first
            if not first:
                return real(fd, data, offset)
            first = False
            payload = bytes(data)
            written = real(fd, payload[: len(payload) // 2], offset)
            wait_for_go()
            return written  # a short write: the store writes the rest when continued

        os.pwrite = half_then_wait
        store.append([raw_entry("holder")])
    store.close()


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["holding-the-lock", "mid-append"])
def test_a_sigstopped_lock_holder_makes_others_give_up_in_bounded_time_then_all_continue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Case 8: a child holding the lock (idle, or stopped half-way through its write) is
    SIGSTOPped. A TelemetryStore(lock_timeout=0.5) raises LockTimeoutError, decorated calls
    (pipeline lock_timeout=0.5; one alone, then 4 threads at once) and another process all
    return within 5 s; the decorated calls return their values, each drop is counted and
    logged (one error); nothing is written meanwhile. After SIGCONT the holder finishes
    (its entry whole) and later appends, decorated or direct, succeed."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path = tmp_path / "telemetry.json"
    append_entries(path, [raw_entry("seed")])
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    try:
        with Children() as children:
            pid = children.fork(
                functools.partial(_hold_lock, path, how, ready_write, go_read), lifetime=120
            )
            assert _read_byte(ready_read, 30) == b"1", "the holder never took the lock"
            os.kill(pid, signal.SIGSTOP)
            children.wait_stopped(pid)
            frozen = path.read_bytes()

            store = TelemetryStore(path, lock_timeout=0.5)
            started = time.monotonic()
            with pytest.raises(LockTimeoutError):
                store.append([raw_entry("store-dropped")])
            assert time.monotonic() - started < BOUND

            exporter = betty_otel.configure(path, otlp=False, lock_timeout=0.5)
            assert exporter is not None
            started = time.monotonic()
            assert record("decorated-dropped") == "decorated-dropped"
            assert time.monotonic() - started < BOUND
            assert (exporter.dropped, exporter.exported) == (1, 0)

            results: dict[int, tuple[str, float]] = {}

            def call(thread: int) -> None:
                began = time.monotonic()
                value = record(f"thread-dropped-{thread}")
                results[thread] = (value, time.monotonic() - began)

            threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert {n: value for n, (value, _) in results.items()} == {
                n: f"thread-dropped-{n}" for n in range(4)
            }
            assert max(elapsed for _, elapsed in results.values()) < BOUND
            assert (exporter.dropped, exporter.exported) == (5, 0)

            def other_process() -> float:
                other = TelemetryStore(path, lock_timeout=0.5)
                began = time.monotonic()
                try:
                    other.append([raw_entry("process-dropped")])
                except LockTimeoutError:
                    return time.monotonic() - began
                raise AssertionError("appended while the stopped holder had the lock")

            assert children.call(other_process, timeout=30) < BOUND

            errors = betty_errors(caplog.records)
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert "could not write" in errors[0].getMessage()
            assert str(path) in errors[0].getMessage()
            assert path.read_bytes() == frozen

            os.kill(pid, signal.SIGCONT)
            os.write(go_write, b"1")
            assert children.wait(pid, timeout=30) == 0
    finally:
        for fd in (ready_read, ready_write, go_read, go_write):
            os.close(fd)
    assert record("decorated-after") == "decorated-after"
    store.append([raw_entry("store-after")])
    store.close()
    assert (exporter.dropped, exporter.exported) == (5, 1)
    expected = ["seed", *(["holder"] if how == "mid-append" else [])]
    assert ids_of(strict_entries(path)) == [*expected, "decorated-after", "store-after"]
    assert check_file(path).ok
