"""Faults at the seam with the original Betty writer, and logs old tools cannot read.

- An old writer killed in its gap (after its unlock, before close() flushed its last
  bytes) leaves a torn tail for good: the next append sets it aside whole once it has
  stayed the same for the grace period (it is repaired in place once at rest), and the
  old writer works again.
- A tail that keeps changing is waited for at most lock_timeout: never a hang, and the
  decorated call returns as always.
- Whatever betty_otel leaves at the path is a JSON array that json.load (and so the old
  writer) reads: a crash at any file operation of creating the log, moving a foreign file
  aside, rotating or repairing leaves the path holding the old file or a valid array,
  never missing and never 0 bytes; ``repair`` of a foreign or empty file leaves ``[]``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import LockTimeoutError, capture_telemetry
from betty_otel._store import TelemetryStore, check_file, iter_entries
from cli_helpers import run
from helpers import append_entries, load_strict, repair_file
from legacy_writer import legacy_append, legacy_text, lock_is_held, until

pytestmark = pytest.mark.faults

SEED = [{"id": f"old-{n}", "skill": "legacy.seed"} for n in range(4)]


def entry_id(entry: dict[str, Any]) -> str:
    return str(entry.get("id") or entry["inputs"]["n"])


def ids(path: Path) -> list[str]:
    """The ids in the live file, as json.load reads it."""
    return [entry_id(entry) for entry in load_strict(path)]


def in_child(work: Callable[[], object]) -> int:
    """Run work in a forked child that exits at its end (or where work exits); its code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 3
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# ---------------------------------------------------------------------------
# an old writer killed in its gap
# ---------------------------------------------------------------------------


KILLED_AT = [1, 2, 3, 30, 200, 10_000]
"""Bytes of the killed old writer's dump that never land (10,000: none of it did)."""


def killed_in_its_gap(path: Path, late: int) -> list[str]:
    """The old writer appends to SEED and is killed in its gap with late bytes buffered;
    returns the ids of the elements that are complete in what landed."""
    for entry in SEED:
        legacy_append(path, entry)
    text = legacy_text([*SEED, {"id": "old-killed"}])
    code = in_child(lambda: legacy_append(path, {"id": "old-killed"}, late=late, between=die))
    assert code == 9
    assert path.read_bytes() == text[: max(0, len(text) - late)]
    return complete_ids(path.read_bytes())


@pytest.mark.parametrize("late", KILLED_AT, ids=lambda late: f"late-{late}")
def test_an_old_writer_killed_in_its_gap_is_set_aside_whole_and_works_again(
    tmp_path: Path, late: int
) -> None:
    """Just after it died, no one can tell it from one stopped in its gap: the next append
    waits out the grace period, sets the file aside (telemetry.json.1, not cut: bytes that
    may still land go there) and appends to a new log; the log holds every complete
    element once, json.load reads the live file and the old writer appends to it again."""
    path = tmp_path / "telemetry.json"
    kept = killed_in_its_gap(path, late)
    left = path.read_bytes()
    append_entries(path, [{"skill": "ours", "inputs": {"n": "ours"}}])
    assert [entry_id(e) for e in iter_entries(path, newest_first=False)] == [*kept, "ours"]
    if late > 1:  # what landed is set aside byte for byte
        assert path.with_name("telemetry.json.1").read_bytes() == left
    assert check_file(path).ok
    legacy_append(path, {"id": "old-again"})
    assert ids(path)[-2:] == ["ours", "old-again"]


@pytest.mark.parametrize("late", KILLED_AT, ids=lambda late: f"late-{late}")
def test_an_old_writers_tail_at_rest_is_repaired_in_place(
    tmp_path: Path, late: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead old writer's tail that has not changed for AT_REST seconds (simulated: 0) is
    cut back to its last complete element like any torn tail, in the file itself."""
    monkeypatch.setattr("betty_otel._store.legacy.AT_REST", 0.0)
    path = tmp_path / "telemetry.json"
    kept = killed_in_its_gap(path, late)
    append_entries(path, [{"skill": "ours", "inputs": {"n": "ours"}}])
    assert ids(path) == [*kept, "ours"]
    assert not path.with_name("telemetry.json.1").exists()
    legacy_append(path, {"id": "old-again"})
    assert ids(path) == [*kept, "ours", "old-again"]


def die() -> None:
    os._exit(9)  # the old writer killed in its gap: its buffers are never flushed


def complete_ids(prefix: bytes) -> list[str]:
    """The ids of the elements of an indent=2 dump that are complete in prefix."""
    # Each "\n  }" closes a top-level element (nested ones are deeper).
    return [
        json.loads(block[block.rindex(b"{") :] + b"}")["id"]
        for block in prefix.split(b"\n  }")[:-1]
    ]


# ---------------------------------------------------------------------------
# never a hang
# ---------------------------------------------------------------------------


@capture_telemetry(skill_name="faults.legacy")
def recorded() -> str:
    return "returned"


def test_a_tail_that_keeps_changing_is_waited_for_at_most_lock_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old writer's dump that keeps growing without ever closing: a store gives up with
    LockTimeoutError after lock_timeout, the decorated call returns as always (the drop
    logged and counted), and once the file stops changing the next append sets it aside
    and works."""
    # However slow the machine, the dump must keep looking alive between two of its bytes.
    monkeypatch.setattr("betty_otel._store.legacy.GRACE", 60.0)
    path = tmp_path / "telemetry.json"
    path.write_bytes(legacy_text(SEED)[:-3])
    stop = threading.Event()

    def keep_landing() -> None:
        with path.open("ab") as handle:
            while not stop.wait(0.01):
                handle.write(b" ")
                handle.flush()

    landing = threading.Thread(target=keep_landing)
    landing.start()
    try:
        store = TelemetryStore(path, lock_timeout=0.3)
        with pytest.raises(LockTimeoutError, match="old Betty writer"):
            store.append([{"skill": "ours", "inputs": {"n": "dropped"}}])
        store.close()
        exporter = betty_otel.configure(path, otlp=False, lock_timeout=0.3)
        assert exporter is not None
        assert recorded() == "returned"
        assert exporter.dropped == 1
    finally:
        stop.set()
        landing.join()
    betty_otel.shutdown()
    monkeypatch.undo()
    append_entries(path, [{"skill": "ours", "inputs": {"n": "after"}}])  # sets it aside
    whole = [entry_id(entry) for entry in iter_entries(path, newest_first=False)]
    assert whole == [*(str(entry["id"]) for entry in SEED), "after"]
    assert ids(path) == ["after"]
    assert any("old Betty writer" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------------------
# never a log that old tools cannot read
# ---------------------------------------------------------------------------

CRASH_OPS = ("open", "pwrite", "write", "ftruncate", "fsync", "link", "rename", "replace")
CRASHED = 7


def crash_at(n: int, work: Callable[[], object]) -> Callable[[], None]:
    """work, in a child that os._exit()s instead of its nth file operation (CRASH_OPS)."""

    def crashing() -> None:
        calls = 0

        def wrap(name: str) -> Callable[..., Any]:
            real = getattr(os, name)

            def operation(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls == n:
                    os._exit(CRASHED)
                return real(*args, **kwargs)

            return operation

        for name in CRASH_OPS:
            setattr(os, name, wrap(name))
        work()

    return crashing


FOREIGN = b'{"not": "an array"}\n'
ROTATING = legacy_text([{"id": f"old-{n}"} for n in range(20)])

SCENARIOS: dict[str, tuple[bytes | None, Callable[[Path], object]]] = {
    "create the log": (None, lambda path: append_entries(path, [{"id": "new"}])),
    "move a foreign file aside": (FOREIGN, lambda path: append_entries(path, [{"id": "new"}])),
    "repair a foreign file": (FOREIGN, repair_file),
    "repair an empty file": (b"", repair_file),
    "rotate by size": (ROTATING, lambda path: append_entries(path, [{"id": "new"}], max_bytes=64)),
    "rotate under the old writers' cap": (
        ROTATING,
        lambda path: append_entries(path, [{"id": "new"}], legacy_cap=20),
    ),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_crash_at_any_file_operation_never_leaves_a_log_old_tools_cannot_read(
    tmp_path: Path, scenario: str
) -> None:
    """For N = 1, 2, ... a child does the scenario and dies at its Nth file operation. The
    path then holds the file that was there, or a JSON array json.load reads: never missing
    (an old writer would create it without the lock) and never 0 bytes (it would fail)."""
    start, work = SCENARIOS[scenario]
    for n in range(1, 1000):
        folder = tmp_path / f"crash-{n}"
        folder.mkdir()
        path = folder / "telemetry.json"
        if start is not None:
            path.write_bytes(start)
        code = in_child(crash_at(n, functools.partial(work, path)))
        if code == 0:  # it finished before operation n
            assert isinstance(load_strict(path), list)
            break
        assert code == CRASHED, f"operation {n}: exit {code}"
        if start is None and not path.exists():
            continue  # crashed before the log was created: nothing there, as before
        left = path.read_bytes()
        if left != start:  # changed by us: to a whole array only
            assert left, f"operation {n}: an empty file at the path"
            assert isinstance(json.loads(left), list), f"operation {n}: {left[:80]!r}"
    else:
        raise AssertionError("the scenario never finished")
    assert n > 3


@pytest.mark.parametrize("content", [FOREIGN, b"", b" \n\t "], ids=["foreign", "empty", "blank"])
def test_repair_leaves_an_empty_array_that_check_and_the_old_writer_accept(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """`repair` on a file that is not a JSON array (moved aside first) or holds no JSON value:
    the log is ``[]`` as json.load reads it, check calls it OK, the old writer appends."""
    caplog.set_level(logging.WARNING, logger="betty_otel")
    path = tmp_path / "telemetry.json"
    path.write_bytes(content)
    checked = run("check", "--file", str(path))
    assert checked.returncode == 1
    assert ("not a JSON array" if content == FOREIGN else "empty: no JSON value") in checked.stdout
    repaired = run("repair", "--file", str(path))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert load_strict(path) == []
    assert run("check", "--file", str(path)).returncode == 0
    legacy_append(path, {"id": "old-after"})
    assert ids(path) == ["old-after"]
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("telemetry.json.invalid-")]
    assert [p.read_bytes() for p in moved] == ([FOREIGN] if content == FOREIGN else [])


def test_an_empty_file_an_old_writer_may_still_be_writing_is_not_filled_by_repair(
    tmp_path: Path,
) -> None:
    """An empty file just truncated (an old writer with its whole dump still buffered):
    repair waits, holding the lock, and the dump that lands is kept whole."""
    path = tmp_path / "telemetry.json"
    for entry in SEED:
        legacy_append(path, entry)
    repairs: list[threading.Thread] = []

    def repair_in_the_gap() -> None:
        repairs.append(threading.Thread(target=repair_file, args=(path,)))
        repairs[0].start()
        until(lambda: lock_is_held(path) or not repairs[0].is_alive(), "repair to take the lock")

    legacy_append(path, {"id": "old-new"}, late=10**6, between=repair_in_the_gap)
    repairs[0].join()
    assert ids(path) == [*(str(entry["id"]) for entry in SEED), "old-new"]
