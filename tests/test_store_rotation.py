"""The telemetry file store's settings and rotation.

Bad settings raise ValueError; with max_bytes the store keeps `backups` rotated files,
deletes the oldest beyond them and readers see them all, newest first; a torn file is
repaired before it is rotated, foreign content moved aside, never rotated.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from betty_otel._store import (
    TelemetryStore,
    check_file,
    iter_entries,
    log_files,
)
from helpers import (
    INVALID_NAME,
    append_entries,
    canonical,
    load_strict,
    make_entry,
    read_backward,
    read_forward,
)

# ---------------------------------------------------------------------------
# settings and rotation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lock_timeout": 0}, "lock_timeout"),
        ({"lock_timeout": -1.0}, "lock_timeout"),
        ({"lock_timeout": float("nan")}, "lock_timeout"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"max_bytes": 1000, "backups": 0}, "backups"),
        ({"max_bytes": 1000, "backups": -3}, "backups"),
    ],
)
def test_bad_settings_raise_value_error(
    log_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    """Out-of-range settings fail at construction with a ValueError naming the setting."""
    with pytest.raises(ValueError, match=message):
        TelemetryStore(log_path, **kwargs)


def test_backups_do_not_matter_without_rotation(log_path: Path) -> None:
    """backups=0 is fine when max_bytes=0 (rotation off)."""
    append_entries(log_path, [make_entry(1)], backups=0)
    assert load_strict(log_path) == [make_entry(1)]


def test_rotation_keeps_backups_and_readers_see_all_newest_first(log_path: Path) -> None:
    """Past max_bytes the file rotates to .1, .2, ...; readers see every kept entry once."""
    entries = [make_entry(n) for n in range(40)]
    store = TelemetryStore(log_path, max_bytes=1500, backups=100)
    try:
        for entry in entries:
            store.append([entry])
    finally:
        store.close()
    files = log_files(log_path)
    assert files[0] == log_path
    assert files[1:] == [log_path.with_name(f"telemetry.json.{n}") for n in range(1, len(files))]
    assert len(files) > 3
    per_file = [load_strict(p) for p in files]
    for path in files:
        assert path.stat().st_size <= 1500
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Oldest first across the files = the appended sequence, exactly once.
    assert [e for chunk in reversed(per_file) for e in chunk] == entries
    assert read_backward(log_path) == entries[::-1]
    assert read_forward(log_path) == entries
    assert list(iter_entries(log_path, rotated=False, newest_first=False)) == per_file[0]


def test_rotation_deletes_the_oldest_beyond_backups(log_path: Path) -> None:
    """Only `backups` rotated files are kept; the newest entries survive, in order."""
    entries = [make_entry(n) for n in range(60)]
    for entry in entries:
        append_entries(log_path, [entry], max_bytes=1200, backups=2)
    files = log_files(log_path)
    assert [p.name for p in files] == ["telemetry.json", "telemetry.json.1", "telemetry.json.2"]
    assert not log_path.with_name("telemetry.json.3").exists()
    kept = read_backward(log_path)
    assert 0 < len(kept) < len(entries)
    assert kept == entries[::-1][: len(kept)]
    assert read_forward(log_path) == kept[::-1]


def test_a_batch_bigger_than_max_bytes_is_written_whole(log_path: Path) -> None:
    """A batch larger than max_bytes is never split or dropped: it gets a file of its own."""
    batch = [make_entry(n) for n in range(10)]
    store = TelemetryStore(log_path, max_bytes=500, backups=3)
    try:
        store.append([make_entry(100)])
        store.append(batch)
        store.append([make_entry(101)])
    finally:
        store.close()
    assert load_strict(log_path) == [make_entry(101)]
    assert load_strict(log_path.with_name("telemetry.json.1")) == batch
    assert read_forward(log_path) == [make_entry(100), *batch, make_entry(101)]


def test_a_torn_file_is_repaired_before_it_is_rotated(log_path: Path) -> None:
    """Rotation never turns a torn tail into a permanently torn backup: it repairs first."""
    entries = [make_entry(n) for n in range(5)]
    log_path.write_bytes(canonical(entries)[: -len(b"\n]\n")] + b',\n{"torn": ')
    append_entries(log_path, [make_entry(9)], max_bytes=1000, backups=2)
    backup = log_path.with_name("telemetry.json.1")
    assert load_strict(backup) == entries
    assert check_file(backup).ok
    assert load_strict(log_path) == [make_entry(9)]
    assert [p.read_bytes() for p in log_path.parent.glob("*.torn-*")] == [b',\n{"torn": ']


def test_foreign_content_is_moved_aside_not_rotated(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A big non-array file is moved to .invalid-<UTC> with a warning, not kept as backup .1."""
    original = b'{"jsonl": 1}\n' * 200
    log_path.write_bytes(original)
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        append_entries(log_path, [make_entry(1)], max_bytes=1000, backups=2)
    assert not log_path.with_name("telemetry.json.1").exists()
    moved = [p for p in log_path.parent.iterdir() if INVALID_NAME.match(p.name)]
    assert [p.read_bytes() for p in moved] == [original]
    assert load_strict(log_path) == [make_entry(1)]
    assert any("not a JSON array" in r.getMessage() for r in caplog.records)
