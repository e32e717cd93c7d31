"""Trust: readers see one consistent log while a writer rotates it, and raise only StoreError.

- A real writer process rotates the log (tiny max_bytes) while readers poll it: every
  poll of iter_entries/query sees a contiguous range of ids, no duplicate, no gap;
  stats sees the same (its count, max and mean fit one contiguous range).
- Paths that cannot be read (a symlink loop, a file where a folder should be, a FIFO or
  a folder among the rotated backups) raise the documented ``StoreError``, exported from
  ``betty_otel`` with ``LockTimeoutError``; nothing hangs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import betty_otel
from betty_otel._store import check_file, iter_entries
from betty_otel.query import query, stats, trace

pytestmark = pytest.mark.faults

WRITER = """
import sys
from betty_otel._store import TelemetryStore
path, max_bytes, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = TelemetryStore(path, max_bytes=max_bytes, backups=1_000)
for n in range(count):
    store.append([{"skill": "rot", "status": "success", "duration_ms": float(n), "n": n}])
store.close()
"""


def assert_contiguous(ids: list[int]) -> None:
    """Newest first: each id one less than the one before (no duplicate, no gap)."""
    if ids:
        assert ids == list(range(ids[0], ids[0] - len(ids), -1)), ids[:20]


def test_readers_polling_during_rotation_see_no_duplicate_and_no_gap(tmp_path: Path) -> None:
    """A writer process appends 1,000 entries rotating every few appends; readers poll the
    whole log meanwhile: each poll is one contiguous range of ids, in every reader."""
    path = tmp_path / "telemetry.json"
    count = 1000
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "400", str(count)],
        stderr=subprocess.PIPE,
        text=True,
    )
    polls = rotated_polls = 0
    try:
        while writer.poll() is None:
            ids = [entry["n"] for entry in iter_entries(path)]
            assert_contiguous(ids)
            assert_contiguous([entry["n"] for entry in query(path)])
            groups = stats(path)
            if groups:
                group = groups["rot"]
                assert group.max is not None
                low = group.max - group.count + 1
                assert group.mean == pytest.approx((low + group.max) / 2), (group, ids[:5])
            polls += 1
            rotated_polls += (tmp_path / "telemetry.json.2").exists()
    finally:
        # A hang of the writer is the failure this bound turns into one (generous).
        _, errors = writer.communicate(timeout=300)
    assert writer.returncode == 0, errors
    assert polls > 5, polls
    assert rotated_polls > 0, (polls, rotated_polls)  # the polls did overlap rotations
    final = [entry["n"] for entry in iter_entries(path)]
    assert final == list(range(count - 1, -1, -1))


def test_store_errors_are_exported_and_are_os_errors() -> None:
    """betty_otel.StoreError (an OSError) and LockTimeoutError (a StoreError) are public."""
    assert issubclass(betty_otel.StoreError, OSError)
    assert issubclass(betty_otel.LockTimeoutError, betty_otel.StoreError)
    assert {"StoreError", "LockTimeoutError"} <= set(betty_otel.__all__)


def _readers(path: Path) -> list[object]:
    return [
        lambda: query(path),
        lambda: query(path, limit=1),
        lambda: stats(path),
        lambda: trace("ab" * 16, path),
        lambda: list(iter_entries(path)),
    ]


@pytest.mark.parametrize("kind", ["symlink_loop", "file_as_folder", "fifo_backup", "dir_backup"])
def test_paths_that_cannot_be_read_raise_only_store_error(tmp_path: Path, kind: str) -> None:
    """Every reader raises StoreError (never a bare OSError, never a hang) for a log it
    cannot read, rotated backups included."""
    path = tmp_path / "telemetry.json"
    if kind == "symlink_loop":
        path.symlink_to(tmp_path / "loop")
        (tmp_path / "loop").symlink_to(path)
    elif kind == "file_as_folder":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "telemetry.json"
    else:
        path.write_text("[\n]\n")
        backup = tmp_path / "telemetry.json.1"
        if kind == "fifo_backup":
            os.mkfifo(backup)
        else:
            backup.mkdir()
    for read in _readers(path):
        with pytest.raises(betty_otel.StoreError):
            read()  # type: ignore[operator]
    if kind in ("symlink_loop", "file_as_folder"):
        with pytest.raises(betty_otel.StoreError):
            check_file(path)


def test_a_directory_says_so(tmp_path: Path) -> None:
    """The error for a folder at the log's path names the problem plainly."""
    with pytest.raises(betty_otel.StoreError, match="is a directory"):
        query(tmp_path)
