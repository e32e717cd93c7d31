"""Faults: a symlink at the telemetry path, and a zero umask (issue 5, cases 17 and 18).

Case 17: a symlink at the path (live or dangling): nothing is written through it, by the
store, TelemetryCapture, the decorator (which still returns; the drop is logged and
counted) or the CLI.
Case 18: under umask 000 the file is created 0600 and every folder we create 0700, by
the decorator, TelemetryCapture.capture and the CLI's capture.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

import betty_otel
from betty_otel import TelemetryCapture
from betty_otel._store import StoreError, TelemetryStore
from files_helpers import NEW, decorated, run_cli
from helpers import (
    betty_errors,
    canonical,
    load_strict,
    make_entry,
    umask_zero,  # noqa: F401 - a fixture, used by name
)

pytestmark = pytest.mark.faults


# ---------------------------------------------------------------------------
# Case 17: a symlink at the file's path
# ---------------------------------------------------------------------------

TARGET_BYTES = canonical([make_entry(1)])


def plant_symlink(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    """(path, target): a symlink at the telemetry path, to a file (live) or to nothing."""
    path = tmp_path / "logs" / "telemetry.json"
    path.parent.mkdir()
    target = tmp_path / "elsewhere" / "target.json"
    target.parent.mkdir()
    if kind == "live":
        target.write_bytes(TARGET_BYTES)
    path.symlink_to(target)
    return path, target


def assert_not_written_through(kind: str, path: Path, target: Path) -> None:
    assert path.is_symlink()
    if kind == "dangling":
        assert not target.exists()
    else:
        assert target.read_bytes() == TARGET_BYTES
    assert sorted(p.name for p in target.parent.iterdir()) == (
        [] if kind == "dangling" else ["target.json"]
    )
    assert [p.name for p in path.parent.iterdir()] == ["telemetry.json"]


@pytest.mark.parametrize("kind", ["live", "dangling"])
def test_symlink_at_the_path_is_never_written_through_by_the_store_or_capture(
    kind: str, tmp_path: Path
) -> None:
    """TelemetryStore.append / repair and TelemetryCapture.capture refuse the symlink with
    an OSError naming it; its target is byte-identical (or still absent)."""
    path, target = plant_symlink(kind, tmp_path)
    store = TelemetryStore(path)
    try:
        with pytest.raises(StoreError, match="symbolic link"):
            store.append([NEW])
        with pytest.raises(OSError, match="symbolic link"):
            store.repair()
    finally:
        store.close()
    with pytest.raises(OSError, match="symbolic link"):
        TelemetryCapture(path).capture("faults.symlink", "success", 1.0, "faults")
    assert_not_written_through(kind, path, target)


@pytest.mark.parametrize("kind", ["live", "dangling", "swapped_in"])
def test_symlink_at_the_path_is_never_written_through_by_the_decorator(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Decorated calls with a symlink at the path (there from the start, or swapped in for
    the file after a first write) return normally; each drop is counted, the error is logged
    and names the path, and nothing reaches the target."""
    caplog.set_level(logging.WARNING, logger="betty_otel")
    if kind == "swapped_in":
        path = tmp_path / "logs" / "telemetry.json"
        path.parent.mkdir()
        exporter = betty_otel.configure(path, otlp=False)
        assert exporter is not None
        assert decorated(1) == 2
        first = path.read_bytes()
        path.rename(tmp_path / "old.json")
        target = tmp_path / "elsewhere" / "target.json"
        target.parent.mkdir()
        target.write_bytes(TARGET_BYTES)
        path.symlink_to(target)
        kind_written = "live"
    else:
        path, target = plant_symlink(kind, tmp_path)
        exporter = betty_otel.configure(path, otlp=False)
        assert exporter is not None
        kind_written = kind
    assert [decorated(n) for n in range(3)] == [0, 2, 4]
    assert exporter.dropped == 3
    errors = [r.getMessage() for r in betty_errors(caplog.records)]
    assert errors, "the drop was not logged"
    assert any(str(path) in message and "symbolic link" in message for message in errors)
    assert_not_written_through(kind_written, path, target)
    if kind == "swapped_in":
        assert (tmp_path / "old.json").read_bytes() == first


@pytest.mark.parametrize("kind", ["live", "dangling"])
def test_symlink_at_the_path_is_never_written_through_by_the_cli(kind: str, tmp_path: Path) -> None:
    """`betty-telemetry capture` and `repair` with a symlink at --file: exit 1 with one clear
    `Error:` line naming the symlink, no traceback, the target untouched."""
    path, target = plant_symlink(kind, tmp_path)
    result = run_cli("capture", "faults.symlink", "success", "1.5", "CLI", "--file", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: "), result.stderr
    assert "symbolic link" in result.stderr
    assert str(path) in result.stderr
    result = run_cli("repair", "--file", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: "), result.stderr
    assert_not_written_through(kind, path, target)


# ---------------------------------------------------------------------------
# Case 18: umask 000
# ---------------------------------------------------------------------------


def assert_private(path: Path, created: list[Path]) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    for folder in created:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, (folder, oct(folder.stat().st_mode))


@pytest.mark.usefixtures("umask_zero")
def test_under_umask_zero_the_decorator_creates_the_file_0600_and_folders_0700(
    tmp_path: Path,
) -> None:
    """configure(path) with three missing folders, then a decorated call, under umask 000."""
    path = tmp_path / "a" / "b" / "c" / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert decorated(1) == 2
    assert exporter.dropped == 0
    assert_private(path, [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"])
    assert len(load_strict(path)) == 1


@pytest.mark.usefixtures("umask_zero")
def test_under_umask_zero_capture_creates_the_file_0600_and_folders_0700(
    tmp_path: Path,
) -> None:
    """TelemetryCapture(path).capture() with missing folders, under umask 000."""
    path = tmp_path / "x" / "y" / "telemetry.json"
    TelemetryCapture(path).capture("faults.umask", "success", 1.0, "faults")
    assert_private(path, [tmp_path / "x", tmp_path / "x" / "y"])


@pytest.mark.parametrize("where", ["--file", "default"])
def test_under_umask_zero_the_cli_capture_creates_the_file_0600_and_folders_0700(
    where: str, tmp_path: Path
) -> None:
    """`betty-telemetry capture` run with umask 000: with --file in missing nested folders,
    and at the default ./registry/telemetry.json (no --file, no $BETTY_TELEMETRY_FILE)."""
    env = {k: v for k, v in os.environ.items() if k != "BETTY_TELEMETRY_FILE"}
    args = ["capture", "faults.umask", "success", "2.5", "CLI", '{"k": 1}']
    if where == "--file":
        path = tmp_path / "p" / "q" / "r" / "telemetry.json"
        created = [tmp_path / "p", tmp_path / "p" / "q", tmp_path / "p" / "q" / "r"]
        args += ["--file", str(path)]
    else:
        path = tmp_path / "registry" / "telemetry.json"
        created = [tmp_path / "registry"]
    result = run_cli(*args, cwd=tmp_path, env=env, preexec_fn=lambda: os.umask(0))
    assert result.returncode == 0, result.stderr
    # The default is resolved once to an absolute path (issue 9), as the original skill printed.
    assert f"Telemetry captured to {path}" in result.stdout
    assert_private(path, created)
    assert [e["inputs"] for e in load_strict(path)] == [{"k": 1}]
