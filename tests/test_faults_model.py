"""Faults: the log against a model, under random operations and crashes (issue 5, case 22).

Hypothesis draws random sequences of operations on one telemetry file:
``TelemetryCapture.capture``, decorated calls (synchronous file export; some raise),
writers killed with SIGKILL in the middle of an append (a forked child whose ``os.pwrite``
writes part of the payload and then kills the process), a torn write of the last entry
(the file cut inside it: that entry was never acknowledged), cuts inside a torn tail, and
repairs. After every operation ``query()`` (newest first, no limit) must equal the
model's list of acknowledged entries, newest first, and neither reader may report a torn
tail as damage; at the end a repair leaves exactly the model as strict JSON.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import betty_otel
from betty_otel import TelemetryCapture, capture_telemetry
from betty_otel._store import Damage, TelemetryStore, iter_entries
from betty_otel.query import query

pytestmark = pytest.mark.faults

Entry = dict[str, Any]

# Python 3.12+ warns when a process with threads forks; the children here only append.
_FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"


@capture_telemetry(skill_name="model.decorated", caller="model", capture_inputs=True)
def decorated(number: int, fail: bool) -> int:
    if fail:
        raise ValueError(f"call {number} failed")
    return number


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def key(entry: Entry) -> tuple[Any, ...]:
    return (
        entry.get("skill"),
        entry.get("status"),
        entry.get("caller"),
        entry.get("inputs"),
        entry.get("error_message"),
    )


@dataclass(frozen=True)
class Expected:
    """An acknowledged entry: its identifying fields, and the whole entry when known."""

    key: tuple[Any, ...]
    full: Entry | None = None

    def matches(self, entry: Entry) -> bool:
        return key(entry) == self.key and (self.full is None or entry == self.full)


@dataclass
class Model:
    path: Path
    capture: TelemetryCapture
    acknowledged: list[Expected] = field(default_factory=list)
    numbers: Iterator[int] = field(default_factory=itertools.count)
    log: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    status: str
    error: bool

    def apply(self, model: Model) -> None:
        number = next(model.numbers)
        entry = model.capture.capture(
            "model.capture",
            self.status,
            float(number),
            "model",
            inputs={"n": number},
            error_message=f"error {number}" if self.error else None,
        )
        model.acknowledged.append(Expected(key(entry), entry))


@dataclass(frozen=True)
class Decorated:
    fail: bool

    def apply(self, model: Model) -> None:
        number = next(model.numbers)
        if self.fail:
            with pytest.raises(ValueError, match="failed"):
                decorated(number, True)
            error: str | None = f"ValueError: call {number} failed"
        else:
            assert decorated(number, False) == number
            error = None
        status = "failure" if self.fail else "success"
        inputs = {"number": number, "fail": self.fail}
        model.acknowledged.append(Expected(("model.decorated", status, "model", inputs, error)))


@dataclass(frozen=True)
class Crash:
    """A writer SIGKILLed mid-append: its first pwrite writes part of the bytes, then dies.

    At most len(payload) - 4 bytes are written (the payload ends with the entry's ``}`` and
    ``\\n]\\n``), so the entry is never complete: it was not acknowledged and is not in the
    model. When the file had a torn tail the first pwrite belongs to the repair instead.
    """

    fraction: float
    via_capture: bool

    def apply(self, model: Model) -> None:
        number = next(model.numbers)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                real_pwrite = os.pwrite
                fraction = self.fraction

                def torn_pwrite(fd: int, data: Any, offset: int) -> int:
                    size = int(fraction * max(len(data) - 3, 0))
                    if size:
                        real_pwrite(fd, bytes(data[:size]), offset)
                    os.kill(os.getpid(), signal.SIGKILL)
                    return size

                os.pwrite = torn_pwrite
                if self.via_capture:
                    TelemetryCapture(model.path).capture("model.crash", "success", 1.0, "model")
                else:
                    decorated(number, False)
            finally:
                os._exit(3)  # no pwrite happened: the parent reports it
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"the writer was not killed mid-append ({status})"
        assert os.WTERMSIG(status) == signal.SIGKILL


def _complete_lines(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each line holding one complete entry (end: just after its ``}``)."""
    found = []
    offset = 0
    for line in data.split(b"\n"):
        body = line[:-1] if line.endswith(b",") else line
        if body.startswith(b"{") and body.endswith(b"}"):
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                found.append((offset, offset + len(body)))
        offset += len(line) + 1
    return found


@dataclass(frozen=True)
class TearLast:
    """The last entry's append was torn after all: cut the file inside that entry."""

    fraction: float

    def apply(self, model: Model) -> None:
        data = model.path.read_bytes() if model.path.exists() else b""
        lines = _complete_lines(data)
        if not lines or not model.acknowledged:
            return
        start, end = lines[-1]
        cut = start + int(self.fraction * (end - start))  # the closing } is always cut off
        os.truncate(model.path, cut)
        model.acknowledged.pop()


@dataclass(frozen=True)
class CutTornTail:
    """Cut the file somewhere after its last complete entry (inside a torn tail, or the
    closing bracket): no acknowledged entry is touched."""

    fraction: float

    def apply(self, model: Model) -> None:
        if not model.path.exists():
            return
        data = model.path.read_bytes()
        lines = _complete_lines(data)
        last = lines[-1][1] if lines else data.find(b"[") + 1
        if last >= len(data) or last <= 0:
            return
        os.truncate(model.path, last + int(self.fraction * (len(data) - last)))


@dataclass(frozen=True)
class Repair:
    def apply(self, model: Model) -> None:
        store = TelemetryStore(model.path)
        try:
            store.repair()
        finally:
            store.close()
        assert_strict_model(model)


Operation = Capture | Decorated | Crash | TearLast | CutTornTail | Repair

fractions = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(Capture, st.sampled_from(betty_otel.STATUSES), st.booleans()),
    st.builds(Decorated, st.booleans()),
    st.builds(Crash, fractions, st.booleans()),
    st.builds(TearLast, fractions),
    st.builds(CutTornTail, fractions),
    st.just(Repair()),
)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def describe(expected: list[Expected], got: list[Entry]) -> str:
    lines = [f"expected {len(expected)}, got {len(got)} (newest first)"]
    for index in range(max(len(expected), len(got))):
        want = expected[index].key if index < len(expected) else None
        have = key(got[index]) if index < len(got) else None
        mark = " " if index < len(expected) and index < len(got) and want == have else "!"
        lines.append(f"{mark} {index}: want {want} / got {have}")
    return "\n".join(lines)


def assert_matches(model: Model, got: list[Entry], what: str) -> None:
    expected = model.acknowledged[::-1]
    ok = len(got) == len(expected) and all(
        e.matches(g) for e, g in zip(expected, got, strict=False)
    )
    assert ok, f"{what} after {model.log}:\n{describe(expected, got)}"


def assert_reads_model(model: Model) -> None:
    """query() and both readers give the acknowledged entries, and report no damage."""
    assert_matches(model, query(model.path), "query()")
    damage: list[Damage] = []
    newest = list(iter_entries(model.path, on_damage=damage.append))
    oldest = list(iter_entries(model.path, newest_first=False, on_damage=damage.append))
    assert_matches(model, newest, "iter_entries(newest_first=True)")
    assert_matches(model, oldest[::-1], "iter_entries(newest_first=False)")
    assert damage == [], f"a torn tail was reported as damage after {model.log}: {damage}"


def assert_strict_model(model: Model) -> None:
    """The file is a strict JSON array holding exactly the acknowledged entries."""
    if not model.path.exists() or model.path.stat().st_size == 0:  # an empty log
        assert model.acknowledged == [], f"the file is empty after {model.log}"
        return
    data = json.loads(model.path.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    assert_matches(model, data[::-1], "the repaired file")


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------

_examples = itertools.count()


@pytest.mark.filterwarnings(_FORK_WARNING)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operations, min_size=1, max_size=20))
def test_query_equals_the_acknowledged_entries_after_any_sequence_of_writes_and_crashes(
    steps: list[Operation], tmp_path: Path
) -> None:
    """Random captures, decorated calls, SIGKILLed writers, torn writes, cuts and repairs:
    after each, query() is exactly the acknowledged entries, newest first; a final repair
    leaves exactly them as strict JSON."""
    folder = tmp_path / f"example-{next(_examples)}"
    folder.mkdir()
    path = folder / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    model = Model(path, TelemetryCapture(path))
    try:
        for step in steps:
            model.log.append(repr(step))
            step.apply(model)
            assert_reads_model(model)
        assert exporter.dropped == 0
        Repair().apply(model)
        assert_reads_model(model)
    finally:
        betty_otel.shutdown()


def _open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_a_fresh_telemetry_capture_per_call_leaks_no_file_descriptor(tmp_path: Path) -> None:
    """`TelemetryCapture(path).capture(...)` once per call, as the original Betty API is
    used: 300 calls later the process holds no more descriptors than before (a program
    doing this would otherwise die of EMFILE)."""
    path = tmp_path / "telemetry.json"
    TelemetryCapture(path).capture("warm.up", "success", 1.0, "model")
    gc.collect()
    before = _open_descriptors()
    for number in range(300):
        TelemetryCapture(path).capture("per.call", "success", 1.0, "model", {"n": number})
    gc.collect()
    assert _open_descriptors() - before <= 2
    assert len(query(path)) == 301


def test_per_call_captures_in_many_threads_leak_no_file_descriptor(tmp_path: Path) -> None:
    """The same from 8 threads at once: a capture's store closing while another thread's
    append holds the file still closes its descriptor (it used to stay open for good,
    one per overlap: hundreds here, then EMFILE)."""
    path = tmp_path / "telemetry.json"
    TelemetryCapture(path).capture("warm.up", "success", 1.0, "model")
    gc.collect()
    before = _open_descriptors()

    def calls() -> None:
        for number in range(100):
            TelemetryCapture(path).capture("per.call", "success", 1.0, "model", {"n": number})

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert _open_descriptors() - before <= 2
    assert len(query(path)) == 801


def test_a_store_closed_while_another_holds_the_file_is_closed_when_it_lets_go(
    tmp_path: Path,
) -> None:
    """close() never waits and never closes a descriptor under an append: asked while
    another store of the same file holds it, the close happens as that store lets go,
    and the closed store still appends afterwards (reopening)."""
    path = tmp_path / "telemetry.json"
    closing, holder = TelemetryStore(path), TelemetryStore(path)
    closing.append([{"skill": "first"}])
    with holder.locked():
        opened = _open_descriptors()
        closing.close()
        assert _open_descriptors() == opened
    assert _open_descriptors() == opened - 1
    closing.append([{"skill": "second"}])
    assert [entry["skill"] for entry in iter_entries(path, newest_first=False)] == [
        "first",
        "second",
    ]


def test_a_ctrl_c_while_closes_run_leaves_the_file_free_for_later_appends(tmp_path: Path) -> None:
    """A KeyboardInterrupt (a signal handler's) raised while the holder of the file runs
    the closes asked for meanwhile still lets go of the file: later appends of the
    process are not locked out (they were, for good), and the other closes still run."""
    path = tmp_path / "telemetry.json"
    holder, interrupted, other = (TelemetryStore(path, lock_timeout=1.0) for _ in range(3))
    other.append([{"skill": "first"}])
    opened = _open_descriptors()

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    interrupted._forget_descriptor = ctrl_c  # type: ignore[method-assign]

    def close_both_while_held() -> None:
        with holder.locked():
            other.close()
            interrupted.close()

    with pytest.raises(KeyboardInterrupt):
        close_both_while_held()
    later = TelemetryStore(path, lock_timeout=1.0)
    later.append([{"skill": "after"}])  # its unlock runs the close still asked for
    assert [entry["skill"] for entry in iter_entries(path, newest_first=False)] == [
        "first",
        "after",
    ]
    later.close()
    holder.close()
    assert _open_descriptors() == opened - 1  # other's too
