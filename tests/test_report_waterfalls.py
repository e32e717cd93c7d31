"""The report's traces, read by a forked child while the page is built, are those one read finds.

`betty_otel._report.waterfalls.TraceRead` gives each trace's tree exactly as
`betty_otel.query.trace.read_traces` builds it (entries, order, notes), whether a child
read them or, when the child cannot, this process; a child that dies, hands over
garbage or never finishes is never waited for beyond its time, and never left behind.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from betty_otel._report.waterfalls import TraceRead, slowest_traces
from betty_otel.query.parallel import ENV_PARALLEL
from betty_otel.query.trace import TraceNode, read_traces
from helpers import append_entries, indent2, make_entry

TRACES = [f"{n:032x}" for n in (1, 2, 3)]


def log(path: Path) -> Path:
    """Three traces (one nested, one with an orphan and a cycle), in both layouts and damage."""
    entries = []
    for number in range(60):
        trace = TRACES[number % 3]
        parent = f"{number - 3 + 1:016x}" if number >= 3 and number % 3 != 2 else None
        entries.append(make_entry(number, trace_id=trace, parent_span_id=parent))
    entries.append(make_entry(90, trace_id=TRACES[2], span_id="aa", parent_span_id="bb"))
    entries.append(make_entry(91, trace_id=TRACES[2], span_id="bb", parent_span_id="aa"))
    path.write_bytes(indent2(entries[:20]))
    append_entries(path, entries[20:])
    with path.open("ab") as handle:
        handle.write(b'\n{"timestamp": broken\n')
    return path


def shape(found: dict[str, list[TraceNode]]) -> list[tuple[str, int, dict[str, Any], str | None]]:
    """Every node of every tree: trace, depth, entry and note, in walking order."""
    return [
        (trace_id, depth, node.entry, node.note)
        for trace_id, roots in found.items()
        for root in roots
        for depth, node in root.walk()
    ]


def child_gone(pid: int) -> bool:
    """True when pid is no child of this process any more (reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def read_aside(path: Path, seconds: float) -> dict[str, list[TraceNode]]:
    """TRACES read with a child given seconds: checked to be one read's trees, the child gone."""
    with TraceRead(path, TRACES, seconds) as reading:
        pid = reading.pid
        found = reading.result()
    assert pid > 0
    assert shape(found) == shape(read_traces(path, TRACES))
    assert child_gone(pid)
    return found


def test_traces_read_aside_are_the_trees_one_read_builds(tmp_path: Path) -> None:
    path = log(tmp_path / "telemetry.json")
    wanted = [TRACES[2], TRACES[0], "f" * 32]
    with TraceRead(path, wanted, 60.0) as reading:
        assert reading.pid > 0  # really read by a child
        pid = reading.pid
        found = reading.result()
    assert list(found) == wanted
    assert shape(found) == shape(read_traces(path, wanted))
    assert len(shape(found)) == 42
    assert found["f" * 32] == []
    assert child_gone(pid)


def test_without_a_helper_the_traces_are_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = log(tmp_path / "telemetry.json")
    monkeypatch.setenv(ENV_PARALLEL, "0")
    with TraceRead(path, TRACES, 60.0) as reading:
        assert reading.pid == 0
        found = reading.result()
    assert shape(found) == shape(read_traces(path, TRACES))


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["garbage", "half", "dies", "other ids"])
def test_a_child_that_hands_over_no_entries_means_a_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    path = log(tmp_path / "telemetry.json")

    def work(self: TraceRead, out: int) -> None:
        if fault == "garbage":
            os.write(out, b"\x80\x05garbage")
        elif fault == "half":
            os.write(out, pickle.dumps({TRACES[0]: []})[:-3])
        elif fault == "other ids":
            os.write(out, pickle.dumps({TRACES[1]: []}))
        else:
            os._exit(3)

    monkeypatch.setattr(TraceRead, "_work", work)
    found = read_aside(path, 60.0)
    assert len(shape(found)) == 62


@pytest.mark.faults
def test_a_child_still_reading_when_its_time_is_up_is_killed_and_the_traces_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = log(tmp_path / "telemetry.json")

    def work(self: TraceRead, out: int) -> None:
        os.write(out, b"\x80")  # a start, then nothing more, ever
        time.sleep(3600)

    monkeypatch.setattr(TraceRead, "_work", work)
    read_aside(path, 0.5)


@pytest.mark.faults
def test_leaving_before_the_result_kills_and_reaps_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = log(tmp_path / "telemetry.json")

    def work(self: TraceRead, out: int) -> None:
        time.sleep(3600)

    def interrupted() -> None:
        with TraceRead(path, TRACES, 60.0) as reading:
            started.append(reading.pid)
            raise KeyboardInterrupt

    started: list[int] = []
    monkeypatch.setattr(TraceRead, "_work", work)
    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert started[0] > 0
    assert child_gone(started[0])


def test_the_slowest_traces_are_the_first_distinct_ids_of_the_slowest_executions() -> None:
    slowest: list[dict[str, Any]] = [
        {"trace_id": "b"},
        {"trace_id": None},
        {"trace_id": "b"},
        {"trace_id": ""},
        {"trace_id": 7},
        {},
        {"trace_id": "a"},
        {"trace_id": "c"},
        {"trace_id": "d"},
    ]
    assert slowest_traces(slowest) == ["b", "a", "c"]
