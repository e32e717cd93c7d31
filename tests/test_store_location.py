"""Where the log lives (issue 10): the argument, $BETTY_TELEMETRY_FILE, then
registry/telemetry.json under $BETTY_HOME or the Betty repository holding the working
directory, else ./registry/telemetry.json; absolute, resolved once per process.

The rule itself is pinned in-process through `betty_root(start)`; the once-per-process
resolution through real processes (each resolves afresh), by the decorator,
TelemetryCapture() and the CLI alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from betty_otel._store import BETTY_MARKERS, betty_root

CLI = Path(sys.executable).parent / "betty-telemetry"


def make_repo(root: Path, marker: str = "skills") -> Path:
    """A Betty-like repository: registry/ and one marker folder."""
    (root / "registry").mkdir(parents=True)
    (root / marker).mkdir()
    return root


@pytest.fixture
def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BETTY_HOME", raising=False)


@pytest.mark.usefixtures("no_home")
@pytest.mark.parametrize("marker", BETTY_MARKERS)
def test_the_root_is_the_nearest_folder_up_with_registry_and_a_marker(
    tmp_path: Path, marker: str
) -> None:
    repo = make_repo(tmp_path / "repo", marker)
    deep = repo / "skills" / "a" / "b"
    deep.mkdir(parents=True, exist_ok=True)
    assert betty_root(deep) == repo
    assert betty_root(repo) == repo


@pytest.mark.usefixtures("no_home")
def test_registry_alone_or_a_marker_alone_is_not_a_root(tmp_path: Path) -> None:
    (tmp_path / "only_registry" / "registry").mkdir(parents=True)
    (tmp_path / "only_marker" / "skills").mkdir(parents=True)
    (tmp_path / "file_markers").mkdir()
    (tmp_path / "file_markers" / "registry").write_text("not a folder")
    (tmp_path / "file_markers" / "skills").mkdir()
    for folder in ("only_registry", "only_marker", "file_markers"):
        assert betty_root(tmp_path / folder) is None, folder


@pytest.mark.usefixtures("no_home")
def test_the_nearest_of_nested_repositories_wins(tmp_path: Path) -> None:
    outer = make_repo(tmp_path / "outer")
    inner = make_repo(outer / "vendor" / "inner", "agents")
    assert betty_root(inner / "agents") == inner
    assert betty_root(outer / "vendor") == outer


def test_betty_home_wins_over_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("BETTY_HOME", str(tmp_path / "home"))
    assert betty_root(repo) == tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BETTY_HOME", "relative-home")
    assert betty_root() == tmp_path / "relative-home"  # made absolute


# ---------------------------------------------------------------------------
# real processes: every writer and reader uses the same resolution, once
# ---------------------------------------------------------------------------

PROGRAM = """
import os, sys
from betty_otel import TelemetryCapture, capture_telemetry, shutdown
from betty_otel.query import query

@capture_telemetry(skill_name="located")
def step():
    return None

step()
os.chdir(sys.argv[1])  # a later chdir must not move the log
step()
TelemetryCapture().capture("captured", "success", 1.0, "CLI")
shutdown()
print(len(query()))
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BETTY_TELEMETRY_FILE", "BETTY_HOME")
    }
    environ.update(env)
    return subprocess.run(
        args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def skills_in(path: Path) -> list[str]:
    return [entry["skill"] for entry in json.loads(path.read_text(encoding="utf-8"))]


def test_a_program_started_inside_a_repository_writes_its_registry_once(tmp_path: Path) -> None:
    """Started from a folder deep in a Betty repository: decorator, TelemetryCapture() and
    query() all use <repo>/registry/telemetry.json, even after os.chdir elsewhere."""
    repo = make_repo(tmp_path / "repo")
    start = repo / "skills" / "x"
    start.mkdir()
    elsewhere = tmp_path / "elsewhere"
    make_repo(elsewhere, "workflows")  # another repository: chdir there must not matter
    result = run([sys.executable, "-c", PROGRAM, str(elsewhere)], cwd=start)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "3"
    assert skills_in(repo / "registry" / "telemetry.json") == ["located", "located", "captured"]
    assert not (start / "registry").exists()
    assert not (elsewhere / "registry" / "telemetry.json").exists()


def test_the_cli_uses_the_same_default(tmp_path: Path) -> None:
    """`betty-telemetry capture` and `query` from a subfolder write and read the root's log."""
    repo = make_repo(tmp_path / "repo", "agents")
    start = repo / "agents" / "deep"
    start.mkdir()
    result = run([str(CLI), "capture", "cli.skill", "success", "5", "CLI"], cwd=start)
    assert result.returncode == 0, result.stderr
    log = repo / "registry" / "telemetry.json"
    assert f"Telemetry captured to {log}" in result.stdout
    assert skills_in(log) == ["cli.skill"]
    result = run([str(CLI), "query", "--format", "json"], cwd=repo)
    assert [entry["skill"] for entry in json.loads(result.stdout)] == ["cli.skill"]


@pytest.mark.parametrize("where", ["home", "env_file", "no_repository"])
def test_betty_home_then_the_file_variable_then_the_working_directory(
    tmp_path: Path, where: str
) -> None:
    """BETTY_HOME beats the repository; BETTY_TELEMETRY_FILE beats BETTY_HOME; outside any
    repository the log is ./registry/telemetry.json of the starting folder."""
    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    env = {"BETTY_HOME": str(home)}
    start = repo
    if where == "home":
        want = home / "registry" / "telemetry.json"
    elif where == "env_file":
        env["BETTY_TELEMETRY_FILE"] = "rel/t.json"  # relative: to the starting folder
        want = repo / "rel" / "t.json"
    else:
        env = {}
        start = tmp_path / "plain"
        start.mkdir()
        want = start / "registry" / "telemetry.json"
    result = run([sys.executable, "-c", PROGRAM, str(tmp_path)], cwd=start, **env)
    assert result.returncode == 0, result.stderr
    assert skills_in(want) == ["located", "located", "captured"]
