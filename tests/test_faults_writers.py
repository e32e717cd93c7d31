"""Faults: many writers, a file replaced under them, a reader polling them (issue 5).

Cases of issue 5 proved here (numbers as in the issue):

6. 8 processes (fork and spawn) x 4 threads of decorated calls: exact counts.
9. The file replaced or removed under running writers: later calls land in the new one.
11. A polling reader during appends never raises, never sees a partial entry and never
    goes back.

Every decorated call carries a unique id (``entry["inputs"]["call_id"]``), so "exactly
once" is checked call by call. Writers are forked children managed by
``fault_writer.Children``, which kills and reaps them however a test ends.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel._store import Damage, check_file, iter_entries
from fault_writer import (
    FORK_WARNING,
    SKILL,
    Children,
    count_writer,
    generation_process,
    generation_writer,
    ids_of,
    multiprocessing_writer,
    padding,
    read_lines,
    record,
    wait_until,
)
from helpers import (
    ENTRY_KEYS,
    strict_entries,
)

pytestmark = pytest.mark.faults


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
