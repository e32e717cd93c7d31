"""Cost of appending to and reading the telemetry file, at realistic and large sizes.

Prints, in one run (about a minute):

- µs per append (single-entry batches of one encoded ~300-byte line, through one open
  store) at 1,000 existing entries, against the least an O(1) append can do: a loop
  that holds one descriptor and does flock, one pwrite, unlock. Target: <= 2.
- the same append at 1,000 and at 1,000,000 existing entries, and their ratio.
  Target: <= 1.2 (appends are O(1) in the size).
- the original Betty writer (flock, json.load, append, json.dump indent=2) at 1,000 and
  10,000 entries, for comparison: it rewrites the whole file every time.
- reading all 1,000,000 entries newest first (entries/s, seconds), and the newest 10.

The large file is written directly in the canonical layout with orjson, so building it
takes seconds. Medians (of single appends, see store_append_us); compare ratios, not
absolute times.

    .venv/bin/python benchmarks/bench_store.py
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from table import Row, emit

from betty_otel._store import TelemetryStore, encode_entry, iter_entries

APPENDS = 1_000
ROUNDS = 10
BIG = 1_000_000
SMALL = 1_000


def entry(number: int) -> dict[str, Any]:
    """A realistic entry of about 300 bytes in the documented schema."""
    return {
        "timestamp": f"2025-10-24T14:{number // 60 % 60:02d}:{number % 60:02d}.123456+00:00",
        "skill": f"workflow.step{number % 50}",
        "status": "success" if number % 10 else "failure",
        "duration_ms": 12.345 + number % 1000,
        "caller": "workflow.compose",
        "inputs": {"path": f"skills/s{number % 97}.yaml"},
        "error_message": None if number % 10 else "Validation failed: missing field 'name'",
        "metadata": {},
        "trace_id": f"{number:032x}",
        "span_id": f"{number:016x}",
        "parent_span_id": None,
    }


def build_canonical(path: Path, count: int) -> None:
    """Write count entries in the canonical layout, in chunks (no store involved).

    Flushed to disk before returning, so its write-back does not run during the timings.
    """
    with path.open("wb") as handle:
        handle.write(b"[\n")
        chunk = 50_000
        for start in range(0, count, chunk):
            lines = [orjson.dumps(entry(n)) for n in range(start, min(count, start + chunk))]
            if start:
                handle.write(b",\n")
            handle.write(b",\n".join(lines))
        handle.write(b"\n]\n")
        handle.flush()
        os.fsync(handle.fileno())


def legacy_append(path: Path, item: dict[str, Any]) -> None:
    """The original Betty writer: lock, load the whole array, append, rewrite with indent=2."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            text = handle.read()
            data = json.loads(text) if text.strip() else []
            data.append(item)
            handle.seek(0)
            handle.truncate()
            json.dump(data, handle, indent=2)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def median_us(run_round: Callable[[int], float], rounds: int = ROUNDS) -> float:
    """Median over rounds of the µs per operation that run_round(round) returns."""
    return statistics.median(run_round(r) for r in range(rounds))


def store_append_us(paths: list[Path], bare: Path) -> tuple[list[float], float]:
    """µs per single-entry append through one open store per file (the exporter's steady
    state), and through the bare loop on its own file (see bare_append).

    Each append is timed on its own and each figure is the median of those times, less
    the timer's own cost: on a shared, overloaded machine a round of appends is often
    cut by the scheduler (a long round more often than a short one, which skews a
    ratio of round times), a single append seldom. Rounds alternate between the cases.
    """
    stores = [TelemetryStore(path) for path in paths]
    line = encode_entry(entry(7))
    samples: list[list[int]] = [[] for _ in paths]
    bare_samples: list[int] = []
    fd = os.open(bare, os.O_RDWR | os.O_CLOEXEC)
    clock = time.perf_counter_ns
    try:
        end = os.fstat(fd).st_size
        for store in stores:
            store.append_encoded([line])  # open the file and check its head, outside the timing
        for _ in range(ROUNDS):
            for store, times in zip(stores, samples, strict=True):
                for _i in range(APPENDS):
                    started = clock()
                    store.append_encoded([line])
                    times.append(clock() - started)
            for _i in range(APPENDS):
                started = clock()
                end = bare_append(fd, end, line)
                bare_samples.append(clock() - started)
    finally:
        os.close(fd)
        for store in stores:
            store.close()
    timer = statistics.median(timer_cost_ns() for _ in range(10_000))
    return (
        [(statistics.median(times) - timer) / 1000 for times in samples],
        (statistics.median(bare_samples) - timer) / 1000,
    )


def timer_cost_ns() -> int:
    """What timing one operation adds by itself: two readings back to back."""
    first = time.perf_counter_ns()
    return time.perf_counter_ns() - first


def bare_append(fd: int, end: int, line: bytes) -> int:
    """The least an O(1) writer can do: flock, one pwrite, unlock; return the new end.

    No inode, size or tail check, no repair, no layers: the floor the store's append
    is measured against.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b",\n" + line + b"\n]\n", end - 3)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return end + len(line) + 2


def legacy_append_us(path: Path, appends: int) -> float:
    def one_round(_: int) -> float:
        started = time.perf_counter()
        for i in range(appends):
            legacy_append(path, entry(i))
        return (time.perf_counter() - started) / appends * 1e6

    return median_us(one_round, rounds=3)


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        base = Path(folder)
        print(
            f"entry size: {len(orjson.dumps(entry(1)))} bytes; {APPENDS} appends x {ROUNDS} rounds"
        )

        small = base / "small.json"
        build_canonical(small, SMALL)
        big = base / "big.json"
        t0 = time.perf_counter()
        build_canonical(big, BIG)
        size_mb = big.stat().st_size / 1e6
        print(f"built {BIG:,}-entry file ({size_mb:,.0f} MB) in {time.perf_counter() - t0:.1f} s")

        bare = base / "bare.json"
        build_canonical(bare, SMALL)
        (small_us, big_us), bare_us = store_append_us([small, big], bare)
        print()
        print("append (store, single-entry batches)")
        print(f"  at {SMALL:>9,} entries: {small_us:8.1f} µs/append")
        print(f"  at {BIG:>9,} entries: {big_us:8.1f} µs/append")
        print(f"  bare flock + pwrite + unlock: {bare_us:8.1f} µs/append")
        emit(
            Row(
                target="store append, one ~300-byte entry",
                ours=f"{small_us:.1f} µs/append",
                baseline=f"flock+pwrite+unlock {bare_us:.1f} µs",
                ratio=small_us / bare_us,
                goal="<= 2",
            )
        )
        emit(
            Row(
                target="store append, O(1) in the file's size",
                ours=f"{big_us:.1f} µs at {BIG:,} entries",
                baseline=f"{small_us:.1f} µs at {SMALL:,}",
                ratio=big_us / small_us,
                goal="<= 1.2",
            )
        )

        print()
        print("append (original Betty writer: json.load + json.dump indent=2 under flock)")
        legacy_small = base / "legacy-small.json"
        legacy_big = base / "legacy-big.json"
        for path, count in ((legacy_small, SMALL), (legacy_big, 10_000)):
            path.write_text(json.dumps([entry(n) for n in range(count)], indent=2))
        legacy_small_us = legacy_append_us(legacy_small, 100)
        legacy_big_us = legacy_append_us(legacy_big, 10)
        print(
            f"  at {SMALL:>9,} entries: {legacy_small_us:8.0f} µs/append"
            f"   ({legacy_small_us / small_us:,.0f}x the store)"
        )
        print(
            f"  at {10_000:>9,} entries: {legacy_big_us:8.0f} µs/append"
            f"   ({legacy_big_us / small_us:,.0f}x the store)"
        )
        print(
            f"  ratio 10K / 1K:       {legacy_big_us / legacy_small_us:8.2f}x   (grows with size)"
        )

        print()
        print("read (newest first)")
        t0 = time.perf_counter()
        count = sum(1 for _ in iter_entries(big, newest_first=True))
        elapsed = time.perf_counter() - t0
        print(f"  all {count:,} entries: {elapsed:6.2f} s   ({count / elapsed:,.0f} entries/s)")

        def newest_10(_: int) -> float:
            t = time.perf_counter()
            got = list(itertools.islice(iter_entries(big, newest_first=True), 10))
            assert len(got) == 10
            return (time.perf_counter() - t) * 1e6

        newest_us = median_us(newest_10, rounds=21)
        print(f"  newest 10 of {count:,}: {newest_us:8.0f} µs")
    print()
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
