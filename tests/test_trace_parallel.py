"""Finding a trace's entries with a helper process equals a read by one process.

`betty_otel.query.needles.scan_entries` (under `trace`, `stats --trace-id` and the
report's waterfalls) reads a large file as stats does: a forked helper reads the last
parts. Forced on small files with ``BETTY_OTEL_STATS_PARALLEL_BYTES=0``; `Helper.ready`
waits for the helper from a given part on (a slow parent), so its parts are really used.
The entries (in the order of the file), the trees, the stats of the traces and the
damage logged are those of one read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel.query import make_filters, stats
from betty_otel.query.needles import scan_entries
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper
from betty_otel.query.trace import read_traces
from helpers import make_entry, patient_ready, write_damaged

TRACES = [f"{n:032x}" for n in range(1, 5)]
DAMAGE = [
    b"garbage line",
    b'{"timestamp":"2025-10-24T14:00:00+00:00","skill":"x",',
    b'{"timestamp":"2025-10-24T14:00:00.000000+00:00","skill":"x","status":"success",'
    b'"duration_ms":1,"trace_id":"' + TRACES[0].encode() + b'",}',
]


def build(path: Path, count: int, legacy: bool, damage: list[tuple[float, bytes]]) -> None:
    """Entries of four traces among others (some ids escaped), in one layout or both, damaged."""
    entries = []
    for number in range(count):
        trace = TRACES[number % 4] if number % 3 == 0 else f"{number + 100:032x}"
        entries.append(make_entry(number, trace_id=trace, parent_span_id=f"{number:016x}"))
    lines = write_damaged(path, entries, legacy, damage)  # the old layout: ids as they are
    escaped = b'"trace_id":"\\u0030' + TRACES[1][1:].encode() + b'"'  # the same id, spelled
    lines = [line.replace(b'"trace_id":"' + TRACES[1].encode() + b'"', escaped, 1)
             if index % 2 else line for index, line in enumerate(lines)]  # fmt: skip
    path.write_bytes(b"\n".join(lines))


def read(path: Path, caplog: Any, wanted: list[str]) -> Any:
    """The entries found, the trees, the stats of the traces and the damage logged."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        found = scan_entries(path, make_filters(trace_id=wanted))
        trees = {
            trace_id: [(depth, node.entry) for root in roots for depth, node in root.walk()]
            for trace_id, roots in read_traces(path, wanted).items()
        }
        figures = stats(path, trace_id=wanted)
    # Damage is logged per part read: the same warnings, in another order perhaps.
    return found, trees, figures, sorted(record.getMessage() for record in caplog.records)


def both(path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, first: int) -> Any:
    """(one process, with a helper the parent waits for from part first on), and how many
    times the parent found the helper's parts ready."""
    wanted = TRACES[:3]
    with monkeypatch.context() as patch:
        patch.setenv(ENV_PARALLEL, "0")
        alone = read(path, caplog, wanted)
    taken: list[bool] = []
    with monkeypatch.context() as patch:
        patch.setenv(ENV_MIN_BYTES, "0")
        patch.setattr(Helper, "ready", patient_ready(first, taken))
        helped = read(path, caplog, wanted)
    return alone, helped, taken


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    count=st.integers(40, 300),
    legacy=st.booleans(),
    damage=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(DAMAGE)), max_size=3),
    first=st.integers(1, 30),
)
def test_trace_entries_found_with_a_helper_equal_one_read_alone(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    count: int,
    legacy: bool,
    damage: list[tuple[float, bytes]],
    first: int,
) -> None:
    path = tmp_path_factory.mktemp("traces") / "telemetry.json"
    build(path, count, legacy, damage)
    alone, helped, _ = both(path, monkeypatch, caplog, first)
    assert helped == alone


def test_the_helpers_parts_are_taken_and_the_entries_come_in_log_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    path = tmp_path / "telemetry.json"
    build(path, 3000, False, [(0.5, DAMAGE[0]), (0.7, DAMAGE[2])])
    alone, helped, taken = both(path, monkeypatch, caplog, 1)
    assert helped == alone
    assert taken == [True] * 3  # each of the three reads took every part after its first
    found = helped[0]
    assert [entry["inputs"]["n"] for entry in found] == sorted(
        entry["inputs"]["n"] for entry in found
    )
    assert {entry["trace_id"] for entry in found} == set(TRACES[:3])
    assert len(found) == 750  # every third of 3000, of three traces in four
    assert len(helped[3]) == 2 * 3  # each damaged line logged once by each of the three reads
