"""Faults: crashes, kills, stopped lock holders, forks, replaced files and torn tails (issue 5).

Cases of issue 5 proved here (numbers as in the issue):

1. SIGKILL one of 4 writer processes (2 threads of decorated calls each) 100 times:
   after one locked open the file is strict JSON with every acknowledged call once.
2. os._exit at the Nth low-level file operation of an append, for every N: the file
   holds the old entries or the old entries plus the new one.
3. Truncation at every byte of the last entry and the closing bracket.
4. 1 to 4096 random or NUL bytes after the end.
6. 8 processes (fork and spawn) x 4 threads of decorated calls: exact counts.
7. Fork while another thread holds the lock.
8. SIGSTOP the lock holder: others give up in bounded time, count and log the drop.
9. The file replaced or removed under running writers.
11. A polling reader during appends.

Every decorated call carries a unique id (``entry["inputs"]["call_id"]``), so "exactly
once" is checked call by call. Writers are forked children (cheap to restart) managed by
``fault_writer.Children``, which kills and reaps them however a test ends.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import multiprocessing
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel._store import Damage, LockTimeoutError, TelemetryStore, check_file, iter_entries
from fault_writer import (
    EXIT_DROPPED,
    EXIT_WRONG_VALUE,
    SKILL,
    Children,
    acked_writer,
    call_id_of,
    count_writer,
    current_exporter,
    generation_process,
    generation_writer,
    multiprocessing_writer,
    padding,
    raw_entry,
    read_lines,
    record,
)
from helpers import (
    BOM,
    ENTRY_KEYS,
    Entry,
    append_entries,
    betty_errors,
    canonical,
    read_backward,
    read_forward,
    repair_file,
    strict_entries,
)
from legacy_writer import legacy_append

pytestmark = pytest.mark.faults

# Python 3.12+ warns when a process with threads forks; these tests fork such processes.
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def ids_of(entries: list[Entry]) -> list[str]:
    return [call_id_of(entry) for entry in entries]


def read_both(path: Path) -> tuple[list[Entry], list[Entry], list[Damage]]:
    """(oldest first, newest first, damage reported by either reader)."""
    damage: list[Damage] = []
    forward = read_forward(path, rotated=False, on_damage=damage.append)
    backward = read_backward(path, rotated=False, on_damage=damage.append)
    return forward, backward, damage


def legacy(folder: Path, entries: list[Entry]) -> bytes:
    """The file the original Betty writer makes: json.dump(indent=2), via legacy_append."""
    path = folder / "legacy-source.json"
    path.unlink(missing_ok=True)
    for entry in entries:
        legacy_append(path, entry)
    data = path.read_bytes()
    path.unlink()
    return data


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


# ---------------------------------------------------------------------------
# Case 1: SIGKILL writer processes at random points
# ---------------------------------------------------------------------------

KILLS = 100
KILL_WRITERS = 4
THREADS_PER_WRITER = 2
# (input padding, batch, slow disk): writer 0 batches 100 calls per write (appends of about
# 300 KB), writer 1 writes 6 KB entries through a slow disk in 1 KB pieces (so kills often
# land inside its appends and leave torn tails), writers 2 and 3 write small entries.
KILL_WRITERS_SETUP = ((3_000, 100, False), (6_000, 0, True), (0, 0, False), (0, 0, False))


# A bound that catches a hang, not a speed target: 100 kills against four writers that append
# nonstop (the log grows to ~400 MB) measured 220-240 s on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_sigkilled_writer_processes_lose_no_acknowledged_call_and_duplicate_none(
    tmp_path: Path,
) -> None:
    """Case 1: one of 4 writer processes (2 threads of decorated calls each) is SIGKILLed at
    a random moment 100 times and restarted. A call is acknowledged only once its entry was
    written: when it returned (synchronous export), or when the force_flush() after it
    returned (the batching writer). After one locked open (repair), the file parses
    strictly, every acknowledged call is in it exactly once, no call is in it twice, kills
    inside appends left torn tails, and what repair cut off holds no acknowledged call."""
    path = tmp_path / "telemetry.json"
    acks = tmp_path / "acks"
    acks.mkdir()
    rng = random.Random(5_001)
    generation = [0] * KILL_WRITERS
    names = [""] * KILL_WRITERS
    pids = [0] * KILL_WRITERS

    def acknowledged_any(name: str) -> bool:
        return any(read_lines(acks / f"{name}-{t}.ack") for t in range(THREADS_PER_WRITER))

    with Children() as children:

        def launch(writer: int) -> None:
            names[writer] = name = f"w{writer}g{generation[writer]}"
            pids[writer] = children.fork(
                functools.partial(
                    acked_writer, path, name, acks, THREADS_PER_WRITER, *KILL_WRITERS_SETUP[writer]
                )
            )

        for writer in range(KILL_WRITERS):
            launch(writer)
        for _ in range(KILLS):
            victim = rng.randrange(KILL_WRITERS)
            name = names[victim]
            # Kill it while it is appending: after it acknowledged a call, at a random moment.
            wait_until(
                functools.partial(acknowledged_any, name), 30, f"writer {name} to acknowledge"
            )
            time.sleep(rng.uniform(0.005, 0.03))
            code = children.kill(pids[victim])
            assert code == -signal.SIGKILL, f"writer {name} ended by itself with {code}"
            generation[victim] += 1
            launch(victim)
        for writer in range(KILL_WRITERS):
            code = children.kill(pids[writer])
            assert code == -signal.SIGKILL, f"writer {names[writer]} ended by itself with {code}"

    repair_file(path)
    ids = ids_of(strict_entries(path))
    counts = Counter(ids)
    assert [call_id for call_id, n in counts.items() if n > 1] == []
    acked = [line for ack in sorted(acks.iterdir()) for line in read_lines(ack)]
    assert len(acked) >= KILLS
    missing = set(acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged calls lost, e.g. {sorted(missing)[:5]}"
    assert check_file(path).ok
    # Kills inside appends left torn tails, which the next writers repaired (saving the
    # removed bytes beside the file): never an acknowledged call among them.
    torn = sorted(tmp_path.glob("telemetry.json.torn-*"))
    assert torn, "no kill landed inside an append: the test lost its teeth"
    for saved in torn:
        text = saved.read_text(encoding="utf-8", errors="replace")
        assert not [i for i in acked if f'"call_id":"{i}"' in text], saved.name


# ---------------------------------------------------------------------------
# Case 2: os._exit at the Nth low-level file operation of one append
# ---------------------------------------------------------------------------

CRASH_OPS = ("pwrite", "write", "ftruncate", "fsync")
CRASHED = 1


def _append_crashing_at(path: Path, n: int, chunk: int, entry: Entry) -> None:
    """In a forked child: one durable append that calls os._exit(CRASHED) instead of its
    nth os.pwrite / os.write / os.ftruncate / os.fsync. With chunk, every pwrite writes at
    most chunk bytes (short writes), so crashes also land inside the payload."""
    calls = 0

    def wrap(name: str) -> Callable[..., Any]:
        real = getattr(os, name)

        def operation(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == n:
                os._exit(CRASHED)
            if name == "pwrite" and chunk:
                fd, data, offset = args
                return real(fd, bytes(data)[:chunk], offset)
            return real(*args)

        return operation

    for name in CRASH_OPS:
        setattr(os, name, wrap(name))
    store = TelemetryStore(path, fsync=True)
    store.append([entry])


def _crash_start(name: str, folder: Path) -> tuple[bytes, list[Entry]]:
    """A starting file and the complete entries it holds."""
    old = [raw_entry(f"old-{i}") for i in range(3)]
    if name == "canonical":
        return canonical(old), old
    if name == "legacy-indent2":
        return legacy(folder, old), old
    if name == "legacy-indent2-bom":
        return BOM + legacy(folder, old), old
    if name == "torn-tail":  # an earlier writer died inside its append: repaired first
        return canonical(old)[:-3] + b',\n{"timestamp": "2025-10-24T14:3', old
    raise AssertionError(name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunk", [0, 41], ids=["whole-writes", "short-writes"])
@pytest.mark.parametrize(
    "start", ["canonical", "legacy-indent2", "legacy-indent2-bom", "torn-tail"]
)
def test_crash_at_every_file_operation_of_an_append_leaves_old_or_old_plus_new(
    tmp_path: Path, start: str, chunk: int
) -> None:
    """Case 2: a child appends one entry with fsync=True and os._exit()s at its Nth
    pwrite/write/ftruncate/fsync, for N = 1, 2, ... until the append completes without
    reaching N. After every crash both readers show the old entries or the old entries
    plus the new one (and agree), report no damage and write nothing; after repair() the
    file parses strictly to the same list, and the next append works."""
    path = tmp_path / "telemetry.json"
    initial, old = _crash_start(start, tmp_path)
    new = raw_entry("new")
    after = raw_entry("after")
    outcomes: list[int] = []
    with Children() as children:
        for n in itertools.count(1):
            assert n < 1000, "the append never completed"
            path.write_bytes(initial)
            for saved in tmp_path.glob("telemetry.json.*"):
                saved.unlink()
            pid = children.fork(functools.partial(_append_crashing_at, path, n, chunk, new))
            code = children.wait(pid, timeout=30)
            if code == 0:  # completed without reaching operation n
                assert strict_entries(path) == [*old, new]
                break
            assert code == CRASHED, f"child failed before operation {n}: exit {code}"
            crashed = path.read_bytes()
            forward, backward, damage = read_both(path)
            assert forward in (old, [*old, new]), f"crash at operation {n}: {forward}"
            outcomes.append(len(forward) - len(old))
            assert backward == forward[::-1], f"crash at operation {n}"
            assert damage == [], f"crash at operation {n}"
            assert path.read_bytes() == crashed, "a reader wrote to the file"
            repair_file(path)
            assert strict_entries(path) == forward, f"crash at operation {n}: repair disagrees"
            append_entries(path, [after])
            assert strict_entries(path) == [*forward, after], f"crash at operation {n}"
    assert len(outcomes) >= 3  # at least: folder fsync, the write, the file fsync
    assert outcomes[0] == 0  # crashing before anything was written keeps just the old ones


# ---------------------------------------------------------------------------
# Case 3: truncation at every byte of the last entry and the closing bracket
# ---------------------------------------------------------------------------


def _tricky_last() -> Entry:
    """An entry whose text looks like structure and ends in nested brackets."""
    entry = raw_entry("last")
    entry["inputs"] = {
        "call_id": "last",
        "text": 'a]b},{"x": [1]}, \\"quoted\\" \\\\ ž🐍 \u2028',
        "nested": [[1, [2, []]], {"k": "]"}, {}],
    }
    entry["error_message"] = "ends with ]"
    entry["metadata"] = {"list": [1, 2, [3]]}
    return entry


def _layout(layout: str, entries: list[Entry]) -> tuple[bytes, int]:
    """(file bytes, length of its closing part after the last entry's brace)."""
    if layout == "canonical":
        return canonical(entries), len(b"\n]\n")
    return json.dumps(entries, indent=2).encode(), len(b"\n]")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout", ["canonical", "legacy-indent2"])
def test_truncation_at_every_byte_of_the_last_entry_reads_complete_entries_and_repairs(
    tmp_path: Path, layout: str
) -> None:
    """Case 3: the file cut at every offset from the end of the second-last entry through
    the closing bracket. Both readers never raise, report no damage and return the complete
    entries: all but the last until the last entry's closing brace is in the file, all of
    them from then on (the old tools' indent=2 layout included: a complete element is
    complete before its separator or the closing bracket arrives); repair() restores
    strict JSON with what the readers returned, so it keeps every complete entry; the next
    append works."""
    path = tmp_path / "telemetry.json"
    entries = [raw_entry(f"t-{i}") for i in range(3)] + [_tricky_last()]
    full, closing = _layout(layout, entries)
    without_last, _ = _layout(layout, entries[:-1])
    start = len(without_last) - closing  # just after the second-last entry's brace
    assert full.startswith(without_last[:start])
    brace_end = len(full) - closing
    new = raw_entry("next")
    for cut in range(start, len(full) + 1):
        path.write_bytes(full[:cut])
        forward, backward, damage = read_both(path)
        # An entry is complete once its closing brace is in the file, in any layout.
        expected = entries[:-1] if cut < brace_end else entries
        assert forward == expected, f"cut at {cut} of {len(full)}"
        assert backward == forward[::-1], f"cut at {cut} of {len(full)}"
        assert damage == [], f"cut at {cut} of {len(full)}"
        assert path.read_bytes() == full[:cut], "a reader wrote to the file"
        repair_file(path)
        assert strict_entries(path) == forward, f"cut at {cut} of {len(full)}"
        append_entries(path, [new])
        assert strict_entries(path) == [*forward, new], f"cut at {cut} of {len(full)}"
        for saved in tmp_path.glob("telemetry.json.torn-*"):
            saved.unlink()


# ---------------------------------------------------------------------------
# Case 4: garbage after the end
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["canonical", "legacy-indent2"])
@pytest.mark.parametrize("kind", ["random", "nul"])
@pytest.mark.parametrize("size", [1, 7, 100, 4096])
def test_garbage_after_the_end_is_removed_by_repair_and_no_entry_is_lost(
    tmp_path: Path, layout: str, kind: str, size: int
) -> None:
    """Case 4: 1, 7, 100 or 4096 random or NUL bytes after a complete file: both readers
    still return every entry; repair() removes the garbage (strict JSON, every entry); the
    next append works."""
    path = tmp_path / "telemetry.json"
    entries = [raw_entry(f"g-{i}") for i in range(3)] + [_tricky_last()]
    full, _ = _layout(layout, entries)
    garbage = random.Random(size).randbytes(size) if kind == "random" else b"\0" * size
    path.write_bytes(full + garbage)
    forward, backward, _ = read_both(path)
    assert forward == entries
    assert backward == entries[::-1]
    repair_file(path)
    assert strict_entries(path) == entries
    append_entries(path, [raw_entry("next")])
    assert strict_entries(path) == [*entries, raw_entry("next")]
    assert check_file(path).ok


# ---------------------------------------------------------------------------
# Case 6: 8 processes x 4 threads, fork and spawn
# ---------------------------------------------------------------------------

PROCESSES = 8
PROCESS_THREADS = 4
PROCESS_CALLS = 40


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.timeout(180)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_8_processes_x_4_threads_of_decorated_calls_write_exact_counts(
    tmp_path: Path, method: str
) -> None:
    """Case 6: 8 multiprocessing children (fork: the parent's pipeline, inherited after a
    parent call opened the file; spawn: configured in the child) x 4 threads x 40 decorated
    calls: every call in the file exactly once, strict JSON, no drop."""
    path = tmp_path / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert record("parent-0") == "parent-0"
    context: Any = multiprocessing.get_context(method)
    target = None if method == "fork" else str(path)
    processes = [
        context.Process(
            target=multiprocessing_writer,
            args=(target, f"{method}{n}", PROCESS_THREADS, PROCESS_CALLS),
        )
        for n in range(PROCESSES)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [process.exitcode for process in processes] == [0] * PROCESSES
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    counts = Counter(ids_of(strict_entries(path)))
    expected = {"parent-0"} | {
        f"{method}{n}-{t}-{i}"
        for n in range(PROCESSES)
        for t in range(PROCESS_THREADS)
        for i in range(PROCESS_CALLS)
    }
    assert {call_id: n for call_id, n in counts.items() if n > 1} == {}
    assert set(counts) == expected
    assert exporter.dropped == 0
    assert check_file(path).ok


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


# ---------------------------------------------------------------------------
# Case 9: the file replaced or removed under running writers
# ---------------------------------------------------------------------------

STEPS = 10  # odd steps replace the file with a fresh "[]", even steps remove it
GEN_PROCESSES = 2
GEN_THREADS = 2
MAIN_THREADS = 2
ACKS_PER_STEP = 20


def _generations(acks: Path) -> dict[str, list[tuple[str, int]]]:
    """Per writer: (call id, generation seen before the call) for each acknowledged call."""
    found: dict[str, list[tuple[str, int]]] = {}
    for ack in acks.glob("*.ack"):
        rows = []
        for line in read_lines(ack):
            call_id, generation = line.split(" ")
            rows.append((call_id, int(generation)))
        found[ack.stem] = rows
    return found


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.timeout(180)
def test_writers_follow_a_replaced_or_removed_file_and_later_calls_land_in_the_new_one(
    tmp_path: Path,
) -> None:
    """Case 9: 2 processes x 2 threads and 2 threads of the test process make decorated
    calls while the file is replaced by a fresh ``[]`` (os.replace) or removed, 10 times.
    Every writer goes on writing after each step; a call that started after step k is in
    the file created by step k or a later one, never in an earlier one; every call is in
    exactly one of the files; every file is strict JSON."""
    path = tmp_path / "telemetry.json"
    control = tmp_path / "control"
    acks = tmp_path / "acks"
    control.mkdir()
    acks.mkdir()
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert record("seed") == "seed"
    writers = [f"p{p}t{t}" for p in range(GEN_PROCESSES) for t in range(GEN_THREADS)]
    writers += [f"main{t}" for t in range(MAIN_THREADS)]
    failures: list[BaseException] = []

    def in_thread(name: str) -> None:
        try:
            generation_writer(name, acks / f"{name}.ack", control)
        except BaseException as exc:
            failures.append(exc)

    def progressed(generation: int) -> bool:
        rows = _generations(acks)
        return all(
            sum(1 for _, g in rows.get(name, []) if g >= generation) >= ACKS_PER_STEP
            for name in writers
        )

    threads = [threading.Thread(target=in_thread, args=(f"main{t}",)) for t in range(MAIN_THREADS)]
    try:
        with Children() as children:
            pids = [
                children.fork(
                    functools.partial(generation_process, f"p{p}", GEN_THREADS, acks, control)
                )
                for p in range(GEN_PROCESSES)
            ]
            for thread in threads:
                thread.start()
            wait_until(lambda: progressed(0), 30, "every writer to start")
            for step in range(1, STEPS + 1):
                (tmp_path / f"inode-{step - 1}.json").hardlink_to(path)  # kept for the check
                if step % 2:
                    fresh = tmp_path / "fresh.json"
                    fresh.write_bytes(b"[]")
                    fresh.replace(path)
                else:
                    path.unlink()
                (control / f"gen-{step}").touch()
                wait_until(
                    functools.partial(progressed, step), 30, f"every writer to go on after {step}"
                )
            (control / "stop").touch()
            codes = [children.wait(pid, timeout=60) for pid in pids]
    finally:
        (control / "stop").touch()
        for thread in threads:
            thread.join(60)
    assert codes == [0] * GEN_PROCESSES
    assert failures == []
    assert exporter.dropped == 0
    files = [tmp_path / f"inode-{k}.json" for k in range(STEPS)] + [path]
    where: dict[str, list[int]] = {}
    for index, file in enumerate(files):
        for call_id in ids_of(strict_entries(file)):
            where.setdefault(call_id, []).append(index)
    assert {call_id: found for call_id, found in where.items() if len(found) > 1} == {}
    rows = _generations(acks)
    assert sorted(rows) == sorted(writers)
    for name, acked in rows.items():
        for call_id, generation in acked:
            assert call_id in where, f"{call_id} (acknowledged in generation {generation}) lost"
            (index,) = where[call_id]
            assert index >= generation, (
                f"{name}: {call_id} started after step {generation} but went to the file "
                f"that step {generation} had already replaced or removed (file {index})"
            )
    last = [call_id for acked in rows.values() for call_id, g in acked if g == STEPS]
    assert last
    final = set(ids_of(strict_entries(path)))
    assert [call_id for call_id in last if call_id not in final] == []


# ---------------------------------------------------------------------------
# Case 11: a reader polling during appends
# ---------------------------------------------------------------------------

READER_WRITERS = 3
READER_THREADS = 2
READER_CALLS = 300
READER_PAD = 3_000  # entries of about 3 KB: appends cross page boundaries


@pytest.mark.timeout(180)
def test_a_polling_reader_never_raises_never_sees_a_partial_entry_and_never_goes_back(
    tmp_path: Path,
) -> None:
    """Case 11: while 3 writer processes x 2 threads append decorated calls (3 KB entries;
    one process writes through a slow disk in 1 KB pieces, so appends stay half-written
    for a while), the test polls the file with both readers in turn. No read raises or
    reports damage; every entry yielded is a complete entry of the writers (all schema
    keys, the whole padding); within a read no call appears twice; each read's
    oldest-first list extends the previous one (so the count never decreases); at the end
    all calls are there."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)
    go = tmp_path / "go"
    pad = padding(READER_PAD)
    total = READER_WRITERS * READER_THREADS * READER_CALLS
    damage: list[Damage] = []
    previous: list[str] = []
    counts: list[int] = []

    def poll() -> None:
        nonlocal previous
        for newest_first in (False, True):
            got = list(
                iter_entries(
                    path, newest_first=newest_first, rotated=False, on_damage=damage.append
                )
            )
            for entry in got:
                assert isinstance(entry, dict)
                assert tuple(entry) == ENTRY_KEYS, entry
                assert entry["skill"] == SKILL
                assert entry["status"] == "success"
                assert set(entry["inputs"]) == {"call_id", "pad"}, entry["inputs"]
                assert entry["inputs"]["pad"] == pad
            ids = ids_of(got)
            oldest_first = ids if not newest_first else ids[::-1]
            assert len(set(ids)) == len(ids)
            assert oldest_first[: len(previous)] == previous, "a read lost or reordered entries"
            previous = oldest_first
            counts.append(len(ids))
        assert damage == []

    with Children() as children:
        pids = [
            children.fork(
                functools.partial(
                    count_writer,
                    None,
                    f"r{w}",
                    READER_THREADS,
                    READER_CALLS,
                    READER_PAD,
                    go,
                    slow=w == 0,
                )
            )
            for w in range(READER_WRITERS)
        ]
        go.touch()
        codes: dict[int, int] = {}
        deadline = time.monotonic() + 120
        while len(codes) < len(pids):
            assert time.monotonic() < deadline, "writers did not finish"
            poll()
            for pid in pids:
                if pid not in codes:
                    code = children.poll(pid)
                    if code is not None:
                        codes[pid] = code
    assert sorted(codes.values()) == [0] * READER_WRITERS
    poll()
    assert counts[-1] == total
    assert counts == sorted(counts)
    assert any(0 < count < total for count in counts), "never read during the appends"
    for w in range(READER_WRITERS):
        for t in range(READER_THREADS):
            mine = [i for i in previous if i.startswith(f"r{w}-{t}-")]
            assert mine == [f"r{w}-{t}-{i}" for i in range(READER_CALLS)]
