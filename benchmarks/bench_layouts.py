"""Reads and the next append are linear in the bytes touched, whatever the file's layout.

Issue 11, targets 1 and 2. For each layout a small and a large file are built in a
temporary folder, and two operations are timed on each:

- newest-N: ``betty_otel.query.query(path, limit=5)``;
- next append: one entry through a fresh ``TelemetryStore`` (the first append a process
  makes to that file, so the file's head and tail are checked as they would be).

Cases (small / large): a canonical log whose last entry is 2 / 20 MB; a single-line
legacy log (``json.dump(list)`` without indent) of 2 / 20 MB; a valid log followed by a
2 / 20 MB NUL-filled tail, sparse (what a power loss leaves: the size was extended but
the data never written) and written out as zeros; a legacy ``indent=2`` log of 1.3 / 13 MB
plus one entry appended by the store.

Each row's ratio is time(large) / time(small): linear work would be 10, O(1) work 1.
Goal: <= 3. Medians over a few rounds; every round builds the file afresh. About a minute.

    .venv/bin/python benchmarks/bench_layouts.py
"""

from __future__ import annotations

import json
import logging
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

from betty_otel._store import TelemetryStore
from betty_otel.query import query

MB = 1_000_000
ROUNDS = 5
SLOW = 1.0
"""Seconds: an operation slower than this is timed once (the code before the fix was)."""


def entry(number: int, **extra: Any) -> dict[str, Any]:
    """A realistic entry of about 400 bytes, one second after the previous one."""
    item: dict[str, Any] = {
        "timestamp": f"2025-10-{1 + number // 86400 % 28:02d}T"
        f"{number // 3600 % 24:02d}:{number // 60 % 60:02d}:{number % 60:02d}.123456+00:00",
        "skill": f"workflow.step{number % 50}",
        "status": "success" if number % 10 else "failure",
        "duration_ms": 12.345 + number % 1000,
        "caller": "workflow.compose",
        "inputs": {"path": f"skills/s{number % 97}.yaml", "args": [{"k": [1, 2]}, "]}"]},
        "error_message": None if number % 10 else "Validation failed: missing field 'name'",
        "metadata": {},
        "trace_id": f"{number:032x}",
        "span_id": f"{number:016x}",
        "parent_span_id": None,
    }
    item.update(extra)
    return item


def entries_of(size: int) -> list[dict[str, Any]]:
    """About size bytes of entries."""
    return [entry(n) for n in range(max(1, size // len(orjson.dumps(entry(1)))))]


def canonical(items: list[dict[str, Any]]) -> bytes:
    return b"[\n" + b",\n".join(orjson.dumps(item) for item in items) + b"\n]\n"


def long_last(size: int) -> Callable[[Path], None]:
    """A canonical log of 100 entries whose last entry holds a string of size bytes."""
    blob = "x]}\\n" * (size // 5)
    data = canonical([*entries_of(40_000), entry(10**6, inputs={"blob": blob})])
    return lambda path: _write(path, data)


def single_line(size: int) -> Callable[[Path], None]:
    """What Betty tools that json.dump(list) without indent write: one line."""
    data = json.dumps(entries_of(size)).encode()
    return lambda path: _write(path, data)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def nul_tail(size: int, *, sparse: bool) -> Callable[[Path], None]:
    """A valid canonical log of about 400 KB, then size NUL bytes."""
    data = canonical(entries_of(400_000))

    def build(path: Path) -> None:
        if sparse:
            path.write_bytes(data)
            os.truncate(path, len(data) + size)
        else:
            path.write_bytes(data + bytes(size))

    return build


def indent2(size: int) -> Callable[[Path], None]:
    """The original Betty writer's json.dump(indent=2), then one entry appended by the store."""
    data = json.dumps(entries_of(size), indent=2).encode()

    def build(path: Path) -> None:
        path.write_bytes(data)
        store = TelemetryStore(path)
        store.append([entry(10**6)])
        store.close()

    return build


def newest(path: Path) -> None:
    assert len(query(path, limit=5)) == 5


def next_append(path: Path) -> None:
    store = TelemetryStore(path)
    try:
        store.append([entry(10**7)])
    finally:
        store.close()


def seconds(build: Callable[[Path], None], operation: Callable[[Path], None], path: Path) -> float:
    """Median seconds of operation on a freshly built file (one round when it is slow)."""
    times: list[float] = []
    for _ in range(ROUNDS):
        build(path)
        started = time.perf_counter()
        operation(path)
        times.append(time.perf_counter() - started)
        if times[-1] > SLOW:
            break
    return statistics.median(times)


def describe(value: float) -> str:
    return f"{value * 1e3:.2f} ms" if value < SLOW else f"{value:.2f} s"


CASES: list[tuple[str, Callable[[int], Callable[[Path], None]], int, int]] = [
    ("long last entry", long_last, 2 * MB, 20 * MB),
    ("single-line legacy log", single_line, 2 * MB, 20 * MB),
    ("NUL tail (sparse, a power loss)", lambda n: nul_tail(n, sparse=True), 2 * MB, 20 * MB),
    ("NUL tail (written zeros)", lambda n: nul_tail(n, sparse=False), 2 * MB, 20 * MB),
    ("legacy indent=2 log", indent2, 1_300_000, 13 * MB),
]


def main() -> int:
    logging.disable(logging.WARNING)  # the NUL-tail cases log a repair every round
    started = time.perf_counter()
    operations = (("newest 5", newest), ("next append", next_append))
    with tempfile.TemporaryDirectory(prefix="bench-layouts-") as folder:
        path = Path(folder) / "telemetry.json"
        for name, make, small, large in CASES:
            small_build, large_build = make(small), make(large)
            for label, operation in operations:
                small_s = seconds(small_build, operation, path)
                large_s = seconds(large_build, operation, path)
                emit(
                    Row(
                        target=f"{label}, {name}, {large / MB:g} MB vs {small / MB:g} MB",
                        ours=describe(large_s),
                        baseline=describe(small_s),
                        ratio=large_s / small_s,
                        goal="<= 3",
                    )
                )
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
