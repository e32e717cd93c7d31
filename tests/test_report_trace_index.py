"""The report's trace index finds each trace's entries as a full read of the log does.

The report's one read keeps where every canonical line's trace id is
(`betty_otel._report.traceindex.TraceIndex`), so the slowest traces are drawn without a
second read of the whole log. Whatever the log holds, the index either gives exactly
the entries `betty_otel.query.trace.trace_entries` finds (same entries, same order) or
says it cannot (None), and the report then reads the log as before: an entry of the old
tools' layout, a line that does not end with the ids, a file rotated away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._report.ingest import read_log
from betty_otel._report.waterfalls import TraceRead
from betty_otel.query import make_filters
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper
from betty_otel.query.trace import trace_entries
from helpers import append_entries, canonical, indent2, make_entry, patient_ready

TRACES = [f"{n:032x}" for n in range(1, 6)]


def entry(number: int, trace: int, twist: str) -> dict[str, Any]:
    """An entry of trace TRACES[trace] (or of no trace), with a twist that could fool a
    search by text: another trace's id in its inputs, escapes, a null trace id."""
    found = make_entry(number, trace_id=TRACES[trace], span_id=f"{number + 1:016x}")
    if twist == "id in inputs":
        found["inputs"] = {"trace_id": TRACES[(trace + 1) % len(TRACES)]}
    elif twist == "escapes":
        found["skill"] = "caf\u00e9\ttab"
        found["metadata"] = {"path": "C:\\temp\\x", "quote": '"'}
    elif twist == "quote in skill":  # not a canonical line by its captures: parsed
        found["skill"] = 'a "quoted" skill'
    elif twist == "null ids":
        found.update(trace_id=None, span_id=None)
    return found


ENTRIES = st.lists(
    st.tuples(
        st.integers(0, len(TRACES) - 1),
        st.sampled_from(
            ["plain", "plain", "id in inputs", "escapes", "null ids", "quote in skill"]
        ),
    ),
    min_size=1,
    max_size=120,
)


def write(path: Path, plan: list[tuple[int, str]], appends: int) -> None:
    """The log in the store's own layout, written by appends of a real store."""
    entries = [entry(number, trace, twist) for number, (trace, twist) in enumerate(plan)]
    size = max(1, len(entries) // appends)
    for start in range(0, len(entries), size):
        append_entries(path, entries[start : start + size])


def indexed(path: Path, wanted: list[str]) -> Any:
    """The traces as the index of one report read finds them (None: it cannot tell)."""
    return read_log(path, make_filters()).traces.entries(path, wanted)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=ENTRIES, appends=st.integers(1, 5), helped=st.booleans(), first=st.integers(1, 30))
def test_the_index_of_a_log_in_the_stores_layout_finds_what_a_full_read_finds(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    plan: list[tuple[int, str]],
    appends: int,
    helped: bool,
    first: int,
) -> None:
    path = tmp_path_factory.mktemp("log") / "telemetry.json"
    write(path, plan, appends)
    wanted = [TRACES[0], TRACES[3], "f" * 32]
    with monkeypatch.context() as patch:
        if helped:  # read in parts, the helper's taken where the read meets them
            patch.setenv(ENV_MIN_BYTES, "0")
            patch.setattr(Helper, "ready", patient_ready(first, []))
        else:
            patch.setenv(ENV_PARALLEL, "0")
        found = indexed(path, wanted)
    if any(twist == "quote in skill" for _, twist in plan):
        assert found is None or found == trace_entries(path, wanted)
    else:
        assert found == trace_entries(path, wanted)


def test_an_entry_of_another_layout_means_the_log_is_read_again(tmp_path: Path) -> None:
    """A trace whose first entries are in the old tools' indent=2 layout: the index cannot
    hold them, so the report's waterfall comes from a full read, which has them all."""
    path = tmp_path / "telemetry.json"
    old = [make_entry(n, trace_id=TRACES[0], span_id=f"{n + 1:016x}") for n in range(3)]
    path.write_bytes(indent2(old))
    append_entries(path, [make_entry(n, trace_id=TRACES[0]) for n in range(3, 6)])
    counts = read_log(path, make_filters())
    assert counts.traces.entries(path, [TRACES[0]]) is None
    assert counts.traces.blocks == []  # an index that cannot answer keeps nothing
    with TraceRead(path, [TRACES[0]], 60.0, None) as reading:
        roots = reading.result()[TRACES[0]]
    assert len(roots) == 6


def test_a_line_that_does_not_end_with_the_ids_means_the_log_is_read_again(
    tmp_path: Path,
) -> None:
    """Canonical lines in another key order (a foreign writer): their trace id is not
    captured, so the index does not answer."""
    path = tmp_path / "telemetry.json"
    lines = [make_entry(n, trace_id=TRACES[1]) for n in range(4)]
    moved = dict(lines[2])
    moved["extra"] = moved.pop("trace_id")  # the key order changes: trace_id no longer last
    moved["trace_id"] = TRACES[1]
    moved["extra"] = 1
    path.write_bytes(canonical([*lines[:2], moved, *lines[3:]]))
    assert indexed(path, [TRACES[1]]) is None
    assert len(trace_entries(path, [TRACES[1]])[TRACES[1]]) == 4


def test_a_file_rotated_away_after_the_read_means_the_log_is_read_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(n, trace_id=TRACES[2]) for n in range(5)])
    counts = read_log(path, make_filters())
    path.unlink()
    append_entries(path, [make_entry(n, trace_id=TRACES[2]) for n in range(2)])
    assert counts.traces.entries(path, [TRACES[2]]) is None
    assert counts.traces.entries(path, [TRACES[4]]) == {TRACES[4]: []}  # not in the file gone


def test_a_report_draws_the_traces_from_the_index_without_reading_the_log_again(
    tmp_path: Path,
) -> None:
    """With the entries already found, TraceRead forks no child and reads nothing."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(n, trace_id=TRACES[n % 2]) for n in range(8)])
    wanted = [TRACES[0], TRACES[1]]
    found = indexed(path, wanted)
    assert found is not None
    with TraceRead(path, wanted, 60.0, found) as reading:
        assert reading.pid == 0
        path.unlink()  # nothing is read from here on
        trees = reading.result()
    assert {trace: len(roots) for trace, roots in trees.items()} == {TRACES[0]: 4, TRACES[1]: 4}
