"""``betty-telemetry check`` and ``repair``, run in a subprocess like a user would.

check reports a healthy log and names problems (rotated backups included); repair cuts a
torn tail and leaves damage in the middle in place, reporting it.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import (
    entry,
    run,
    write,
)

# ---------------------------------------------------------------------------
# check, repair
# ---------------------------------------------------------------------------


TORN = b',\n{"timestamp":"2025-10-24T00:00:00+00:00"'


def torn(path: Path) -> Path:
    """Cut the closing bracket and add half an entry: an append that was interrupted."""
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n]")] + TORN)
    return path


def test_check_ok_and_problems(tmp_path: Path, log: Path) -> None:
    result = run("check", "--file", str(log))
    assert (result.returncode, result.stdout.strip()) == (0, f"{log}: 12 entries, OK")
    torn(log)
    result = run("check", "--file", str(log))
    assert result.returncode == 1
    assert "12 entries, 1 problem(s)" in result.stdout
    assert "torn tail" in result.stdout
    damaged = write(tmp_path / "damaged.json", [entry(i) for i in range(5)])
    lines = damaged.read_bytes().split(b"\n")
    offset = len(b"\n".join(lines[:3])) + 1
    lines[3] = b"{garbage"
    damaged.write_bytes(b"\n".join(lines))
    result = run("check", "--file", str(damaged))
    assert result.returncode == 1
    assert f"damaged region at byte offset {offset}" in result.stdout
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"not": "an array"}', encoding="utf-8")
    result = run("check", "--file", str(foreign))
    assert result.returncode == 1
    assert "not a JSON array" in result.stdout
    result = run("check", "--file", str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")


def test_check_covers_rotated_backups(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", [entry(1)])
    torn(write(tmp_path / "t.json.1", [entry(0)]))
    result = run("check", "--file", str(path))
    assert result.returncode == 1
    assert f"{path}: 1 entries, OK" in result.stdout
    assert f"{path}.1: 1 entries, 1 problem(s)" in result.stdout


def test_repair(tmp_path: Path, log: Path) -> None:
    before = json.loads(log.read_text(encoding="utf-8"))
    result = run("repair", "--file", str(log))
    assert (result.returncode, result.stdout.split(":")[0]) == (0, "Nothing to repair")
    torn(log)
    result = run("repair", "--file", str(log))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"Repaired {log}: removed a torn tail of {len(TORN)} bytes")
    assert "kept all 12 complete entries" in result.stdout
    assert json.loads(log.read_text(encoding="utf-8")) == before
    assert list(tmp_path.glob("log.json.torn-*"))
    assert run("check", "--file", str(log)).returncode == 0
    result = run("repair", "--file", str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert not (tmp_path / "absent.json").exists()


def test_repair_leaves_damage_and_reports_it(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", [entry(i) for i in range(5)])
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"{garbage"
    path.write_bytes(b"\n".join(lines))
    before = path.read_bytes()
    result = run("repair", "--file", str(path))
    assert result.returncode == 1
    assert "still: damaged region" in result.stdout
    assert path.read_bytes() == before
