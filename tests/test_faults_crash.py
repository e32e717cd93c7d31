"""Faults: crashes, kills, torn tails and garbage lose no acknowledged entry (issue 5).

Cases of issue 5 proved here (numbers as in the issue):

1. SIGKILL one of 4 writer processes (2 threads of decorated calls each) 100 times:
   after one locked open the file is strict JSON with every acknowledged call once.
2. os._exit at the Nth low-level file operation of an append, for every N: the file
   holds the old entries or the old entries plus the new one.
3. Truncation at every byte of the last entry and the closing bracket.
4. 1 to 4096 random or NUL bytes after the end.

Many writers, replaced files and polling readers (cases 6, 9, 11) are in
test_faults_writers.py; lock holders that fork or stop (cases 7, 8) in test_faults_locks.py.

Every decorated call carries a unique id (``entry["inputs"]["call_id"]``), so "exactly
once" is checked call by call. Writers are forked children (cheap to restart) managed by
``fault_writer.Children``, which kills and reaps them however a test ends.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from betty_otel._store import Damage, TelemetryStore, check_file
from fault_writer import (
    Children,
    acked_writer,
    ids_of,
    raw_entry,
    read_lines,
    wait_until,
)
from helpers import (
    BOM,
    Entry,
    append_entries,
    canonical,
    read_backward,
    read_forward,
    repair_file,
    strict_entries,
)
from legacy_writer import legacy_append

pytestmark = pytest.mark.faults

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


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
