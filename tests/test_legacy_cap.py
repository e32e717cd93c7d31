"""The original Betty writer's cap: it keeps only the newest 100,000 entries it loads.

Once an old writer has been seen writing the log, betty_otel keeps the live file under
90% of that cap by rotating it (``telemetry.json.1``, ``.2``, ...; none deleted), so the
old writer never drops an entry; every reader reads the rotated files as one log, and
`check` says an old writer rewrote the log. Tests that shrink the cap say so: they
simulate the real one on a small log, with the same cap for the old writer and the store;
one test meets the real 100,000.
"""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import capture_telemetry
from betty_otel._store import TelemetryStore, check_file, iter_entries, log_files
from betty_otel.query import query, stats
from cli_helpers import run
from collector import RotelCollector
from helpers import load_strict
from legacy_writer import (
    FORK_WARNING,
    ORIGINAL_CAP,
    legacy_append,
    legacy_text,
    lock_is_held,
    until,
    waits_for_flock,
)

CAP = 40
"""Simulates the original's cap of 100,000 on a small log (old writer and store agree)."""
LIMIT = CAP - CAP // 10
"""The most entries betty_otel leaves in the live file once an old writer was seen."""


def entry_id(entry: dict[str, Any]) -> str:
    """The id a test gave an entry: the old writer's "id", or the input "n" of ours."""
    return str(entry["id"]) if "id" in entry else str(entry["inputs"]["n"])


def ours(ident: str, **extra: Any) -> dict[str, Any]:
    return {"skill": "cap.ours", "status": "success", "inputs": {"n": ident}, **extra}


def whole_log(path: Path) -> list[str]:
    """The ids of the whole log, oldest first, across its rotated files."""
    return [entry_id(entry) for entry in iter_entries(path, newest_first=False)]


def append(path: Path, *entries: dict[str, Any], cap: int = CAP) -> None:
    """One append by a fresh store (a capture in a new process), with the given cap."""
    store = TelemetryStore(path, legacy_cap=cap)
    try:
        store.append(list(entries))
    finally:
        store.close()


def backups(path: Path) -> list[Path]:
    return log_files(path)[1:]


# ---------------------------------------------------------------------------
# a simulated cap
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_an_old_writer_beside_our_writers_never_drops_an_entry(tmp_path: Path, seed: int) -> None:
    """Random turns of the old writer (cap simulated), a long-lived store and fresh stores:
    the old writer never loads more than its cap, the live file holds at most 90% of it
    after each of our appends, and the whole log holds every entry exactly once."""
    path = tmp_path / "telemetry.json"
    legacy_append(path, {"id": "old-first"}, cap=CAP)
    expected = ["old-first"]
    store = TelemetryStore(path, legacy_cap=CAP)
    rng = random.Random(seed)
    try:
        for n in range(300):
            turn = rng.random()
            if turn < 0.25:
                before = len(load_strict(path))
                legacy_append(path, {"id": f"old-{n}"}, cap=CAP)
                assert len(load_strict(path)) == before + 1  # nothing dropped
                expected.append(f"old-{n}")
                continue
            batch = [ours(f"ours-{n}-{k}") for k in range(rng.choice([1, 1, 2, 5]))]
            (store.append if turn < 0.7 else lambda es: append(path, *es))(batch)
            expected.extend(entry_id(entry) for entry in batch)
            assert len(load_strict(path)) <= LIMIT
    finally:
        store.close()
    assert sorted(whole_log(path)) == sorted(expected)
    assert len(backups(path)) >= len(expected) // CAP
    for file in log_files(path):
        assert check_file(file).ok


def test_without_an_old_writer_the_live_file_is_never_rotated(tmp_path: Path) -> None:
    """A log only betty_otel writes grows past the cap in one file, with nothing beside it."""
    path = tmp_path / "telemetry.json"
    for n in range(3 * CAP):
        append(path, ours(f"ours-{n}"))
    assert len(load_strict(path)) == 3 * CAP
    assert sorted(p.name for p in tmp_path.iterdir()) == ["telemetry.json"]


def test_once_seen_the_cap_is_kept_after_the_old_writer_is_rotated_away(tmp_path: Path) -> None:
    """After a rotation the live file starts in our layout, and a writer that starts later
    (a fresh store) still knows old writers were seen (the record beside the log): betty_otel
    alone keeps rotating, so an old writer that comes back much later drops nothing."""
    path = tmp_path / "telemetry.json"
    legacy_append(path, {"id": "old-first"}, cap=CAP)
    expected = ["old-first"]
    for n in range(5 * CAP):
        append(path, ours(f"ours-{n}"))
        expected.append(f"ours-{n}")
        assert len(load_strict(path)) <= LIMIT
    legacy_append(path, {"id": "old-back"}, cap=CAP)
    expected.append("old-back")
    assert sorted(whole_log(path)) == sorted(expected)
    assert path.with_name("telemetry.json.legacy").exists()


def test_rotation_under_the_cap_deletes_no_backup(tmp_path: Path) -> None:
    """Many rotations: every backup stays (an audit log), oldest with the highest number,
    and the log read as one holds every entry once, in order."""
    path = tmp_path / "telemetry.json"
    legacy_append(path, {"id": "old-first"}, cap=CAP)
    store = TelemetryStore(path, legacy_cap=CAP)
    try:
        for n in range(12 * LIMIT):
            store.append([ours(f"ours-{n}")])
    finally:
        store.close()
    names = [file.name for file in log_files(path)]
    assert names == ["telemetry.json"] + [f"telemetry.json.{k}" for k in range(1, len(names))]
    assert len(names) >= 12
    assert whole_log(path) == ["old-first"] + [f"ours-{n}" for n in range(12 * LIMIT)]
    assert entry_id(load_strict(backups(path)[-1])[0]) == "old-first"


@pytest.mark.filterwarnings(FORK_WARNING)
def test_an_old_writer_that_opened_the_file_before_a_rotation_writes_into_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old writer waits for the lock while we rotate: it keeps the file it opened (now
    backup 1), its entry is there, read as part of the log, and it dropped nothing."""
    # Our writer waits for the first old writer's late bytes until the test makes them land.
    monkeypatch.setattr("betty_otel._store.legacy.GRACE", 60.0)
    path = tmp_path / "telemetry.json"
    old = [{"id": f"old-{n}"} for n in range(LIMIT)]
    text = legacy_text(old)
    path.write_bytes(text[:-2])  # an old writer's dump at the limit, "]\n" still to land
    store = TelemetryStore(path, legacy_cap=CAP)
    ours_thread = threading.Thread(target=store.append, args=([ours("ours-rotating")],))
    ours_thread.start()  # takes the lock and waits for the late bytes
    until(lambda: lock_is_held(path), "our writer to take the lock")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - another old writer, in a child
        code = 1
        try:
            legacy_append(path, {"id": "old-waiting"}, cap=CAP)
            code = 0
        finally:
            os._exit(code)
    until(lambda: waits_for_flock(pid), "the old writer to wait for the lock")
    with path.open("r+b") as late:  # the first old writer's last bytes land
        late.seek(len(text) - 2)
        late.write(text[-2:])
    ours_thread.join()
    store.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    first = load_strict(path.with_name("telemetry.json.1"))
    assert [entry_id(entry) for entry in first] == [e["id"] for e in old] + ["old-waiting"]
    assert [entry_id(entry) for entry in load_strict(path)] == ["ours-rotating"]
    assert sorted(whole_log(path)) == sorted(
        [*(str(e["id"]) for e in old), "old-waiting", "ours-rotating"]
    )


# ---------------------------------------------------------------------------
# every reader reads the rotated files as one log; check says what happened
# ---------------------------------------------------------------------------


def rotated_log(path: Path) -> list[dict[str, Any]]:
    """A log that old writers and ours filled through several rotations (cap simulated);
    one trace runs across the files. Returns every entry written, oldest first."""
    written: list[dict[str, Any]] = []
    trace_id = "ab" * 16
    store = TelemetryStore(path, legacy_cap=CAP)
    try:
        for n in range(3 * CAP):
            timestamp = f"2025-10-24T14:{n // 60:02d}:{n % 60:02d}.000000+00:00"
            if n % 9 == 0:
                entry: dict[str, Any] = {"id": f"old-{n}", "skill": "cap.old"}
                entry.update(timestamp=timestamp, status="success", duration_ms=1, caller="CLI")
                legacy_append(path, entry, cap=CAP)
            else:
                parent = None if n == 1 else f"{n - 1:016x}"
                entry = ours(f"ours-{n}", trace_id=trace_id, span_id=f"{n:016x}")
                entry.update(parent_span_id=parent, timestamp=timestamp)
                store.append([entry])
            written.append(entry)
    finally:
        store.close()
    assert len(backups(path)) >= 2
    return written


def test_every_reader_reads_the_rotated_files_as_one_log(
    tmp_path: Path, rotel_collector: RotelCollector
) -> None:
    """query, stats, trace, report, export and check, through the API and the CLI."""
    path = tmp_path / "telemetry.json"
    written = rotated_log(path)
    ids = sorted(entry_id(entry) for entry in written)
    assert sorted(entry_id(entry) for entry in query(path)) == ids
    assert sum(group.count for group in stats(path).values()) == len(written)
    listed = run("query", "--file", str(path), "--limit", "all", "--format", "jsonl")
    assert sorted(entry_id(json.loads(line)) for line in listed.stdout.splitlines()) == ids
    spans = [entry for entry in written if "trace_id" in entry]
    traced = run("trace", "ab" * 16, "--file", str(path), "--format", "json")
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.count('"span_id"') == len(spans)
    page = tmp_path / "report.html"
    made = run("report", "--file", str(path), "-o", str(page))
    assert made.returncode == 0, made.stderr
    assert f">{len(written):,}<" in page.read_text(encoding="utf-8")
    sent = run("export", "--otlp", "--endpoint", rotel_collector.http_endpoint, "--file", str(path))
    assert sent.returncode == 0, sent.stderr
    assert len(rotel_collector.spans(expect=len(written), timeout=60)) == len(written)
    checked = run("check", "--file", str(path))
    assert checked.returncode == 0, checked.stdout
    for file in log_files(path):
        assert f"{file}: " in checked.stdout


def test_check_says_that_an_old_writer_rewrote_the_log(tmp_path: Path) -> None:
    """Entries betty_otel wrote, rewritten in the old layout by an old writer, are named;
    once betty_otel keeps the log under the cap, check says so and names the record."""
    path = tmp_path / "telemetry.json"
    append(path, ours("ours-1", trace_id="cd" * 16, span_id="ef" * 8))
    legacy_append(path, {"id": "old-1"}, cap=CAP)
    checked = run("check", "--file", str(path))
    assert checked.returncode == 0, checked.stdout
    assert "an old Betty writer (or another tool) rewrote this file: 1 entries" in checked.stdout
    for n in range(2 * CAP):
        append(path, ours(f"ours-more-{n}"))
    checked = run("check", "--file", str(path))
    assert checked.returncode == 0, checked.stdout
    assert f"betty_otel keeps telemetry.json under {LIMIT:,} entries by rotating" in checked.stdout
    assert "telemetry.json.legacy" in checked.stdout


# ---------------------------------------------------------------------------
# the real cap
# ---------------------------------------------------------------------------


@capture_telemetry(skill_name="cap.decorated", capture_inputs=True)
def decorated(n: str) -> str:
    return n


def test_the_real_cap_of_100000_entries_drops_nothing(tmp_path: Path) -> None:
    """An old writer's log 5 entries short of 90% of its real cap: the decorator (sync, then
    batch) and `betty-telemetry capture` append past that mark, which rotates the live file;
    the old writer then appends with its real cap; the log holds every entry once."""
    limit = ORIGINAL_CAP - ORIGINAL_CAP // 10
    old = [{"id": f"old-{n}", "skill": "cap.old"} for n in range(limit - 5)]
    path = tmp_path / "registry" / "telemetry.json"
    path.parent.mkdir()
    path.write_bytes(legacy_text(old))  # as the old writer leaves it
    expected = [str(entry["id"]) for entry in old]
    betty_otel.configure(path, otlp=False)
    for n in range(3):
        decorated(f"sync-{n}")
    betty_otel.configure(path, otlp=False, batch=True)
    for n in range(3):
        decorated(f"batch-{n}")
    betty_otel.shutdown()
    for n in range(3):
        captured = run(
            "capture",
            "cap.cli",
            "success",
            "1",
            "CLI",
            json.dumps({"n": f"cli-{n}"}),
            "--file",
            str(path),
        )
        assert captured.returncode == 0, captured.stderr
    legacy_append(path, {"id": "old-last"})  # the real writer, with its real cap
    expected += [f"{kind}-{n}" for kind in ("sync", "batch", "cli") for n in range(3)]
    expected.append("old-last")
    assert sorted(whole_log(path)) == sorted(expected)
    rotated, live = load_strict(path.with_name("telemetry.json.1")), load_strict(path)
    assert limit - 5 <= len(rotated) <= limit  # rotated before the append that would pass it
    assert len(rotated) + len(live) == len(expected)
    assert [file.name for file in log_files(path)] == ["telemetry.json", "telemetry.json.1"]
