"""``betty-telemetry install-skill``: an existing Betty repository adopts betty_otel in one command.

On a scratch Betty-like tree (registry/, skills/, agents/), the command writes the two
shims of the original telemetry.capture skill, never overwriting a file that is there
(it is saved beside as ``<name>.orig-<UTC>``). Then every example of the original skill's
documentation (../shared/betty/telemetry.capture.md), extracted from it and run verbatim
in subprocesses, prints what the original printed and writes through betty_otel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import run
from dropin_helpers import (
    FALLBACK,
    FALLBACKS,
    INSTALLING,
    SHIMS,
    SKILL,
    betty_repo,  # noqa: F401 - the repo fixture
    doc_blocks,
    install,
    plain_python_fixture,  # noqa: F401 - the plain_python fixture
    run_python,
    shell,
    skill_env,
)
from helpers import strict_entries


@pytest.fixture(params=["installing python", "python without betty_otel"])
def skill_python(request: pytest.FixtureRequest) -> Path:
    """The interpreter skills run with: the one that installed the drop-in, or another
    one that cannot import betty_otel (the system python3 beside a virtual environment)."""
    if request.param == "installing python":
        return INSTALLING
    python: Path = request.getfixturevalue("plain_python")
    return python


def test_install_writes_the_shims_and_saves_what_was_there(repo: Path) -> None:
    result = install(repo)
    folder = repo / SKILL
    assert (folder / FALLBACK).read_text().startswith('"""What the telemetry.capture shims run')
    for name in SHIMS:
        (saved,) = folder.glob(f"{name}.orig-*")
        assert saved.read_text().startswith("# the original")
        assert f"{folder / name}: written (the previous file is saved as {saved.name})" in (
            result.stdout
        )
        assert "betty_otel.dropin" in (folder / name).read_text()
    assert (folder / "SKILL.md").read_text() == "docs\n"
    # Again: nothing changes, nothing more is saved.
    before = sorted(path.name for path in folder.iterdir())
    again = install(repo)
    assert again.stdout.count("already up to date") == len(SHIMS) + len(FALLBACKS)
    assert sorted(path.name for path in folder.iterdir()) == before


def test_a_changed_shim_is_saved_again_never_overwritten(repo: Path) -> None:
    install(repo)
    shim = repo / SKILL / "telemetry_utils.py"
    shim.write_text("# edited by hand\n")
    install(repo)
    saved = sorted((repo / SKILL).glob("telemetry_utils.py.orig-*"))
    assert sorted(path.read_text() for path in saved) == [
        "# edited by hand\n",
        "# the original utilities\n",
    ]
    assert "betty_otel.dropin" in shim.read_text()


def test_a_symlink_at_a_shim_is_moved_aside_and_its_target_untouched(repo: Path) -> None:
    target = repo / "elsewhere.py"
    target.write_text("# not ours\n")
    shim = repo / SKILL / "telemetry_capture.py"
    shim.unlink()
    shim.symlink_to(target)
    install(repo)
    assert target.read_text() == "# not ours\n"
    assert not shim.is_symlink()
    (saved,) = (repo / SKILL).glob("telemetry_capture.py.orig-*")
    assert saved.is_symlink()


@pytest.mark.parametrize("where", ["root", "nested", "betty_home"])
def test_without_an_argument_the_betty_repository_is_found(
    repo: Path, tmp_path: Path, where: str
) -> None:
    cwd = {"root": repo, "nested": repo / "skills" / "agent.run", "betty_home": tmp_path}[where]
    env = skill_env(**({"BETTY_HOME": str(repo)} if where == "betty_home" else {}))
    result = run("install-skill", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert f"in {repo}" in result.stdout
    assert all((repo / SKILL / name).read_text().startswith("#!") for name in SHIMS)


def test_without_a_betty_repository_it_says_so_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()  # a registry alone is not a Betty repository
    result = run("install-skill", cwd=tmp_path, env=skill_env())
    assert result.returncode == 1
    assert "no Betty repository" in result.stderr
    assert "BETTY_HOME" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["registry"]


def test_a_missing_repository_argument_is_an_error(tmp_path: Path) -> None:
    result = run("install-skill", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "is not a folder" in result.stderr


def test_the_documented_command_lines_run_verbatim(repo: Path, skill_python: Path) -> None:
    install(repo)
    blocks = doc_blocks("bash")
    (basic,) = blocks["Basic CLI Usage"]
    result = shell(repo, basic, skill_python)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("✓ Telemetry captured to ") == 3

    (example,) = blocks["Example 1: Capture Plugin Build"]
    result = shell(repo, example, skill_python)
    assert result.returncode == 0, result.stderr
    printed, _, done = result.stdout.rstrip("\n").rpartition("\n\n")
    assert done == f"✓ Telemetry captured to {Path('registry') / 'telemetry.json'}" or (
        done == f"✓ Telemetry captured to {repo / 'registry' / 'telemetry.json'}"
    )
    entry = json.loads(printed)
    assert printed == json.dumps(entry, indent=2)
    assert {key: entry[key] for key in ("skill", "status", "duration_ms", "caller")} == {
        "skill": "plugin.build",
        "status": "success",
        "duration_ms": 320.0,
        "caller": "CLI",
    }
    assert entry["inputs"] == {"plugin_path": "./plugin.yaml", "output_format": "tar.gz"}

    (malformed,) = blocks["Malformed Input JSON (CLI)"]
    result = shell(repo, malformed, skill_python)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "Error: Invalid JSON for inputs: Expecting property name enclosed in double quotes"
    )

    entries = strict_entries(repo / "registry" / "telemetry.json")
    assert [(e["skill"], e["status"]) for e in entries] == [
        ("plugin.build", "success"),
        ("agent.run", "success"),
        ("workflow.compose", "failure"),
        ("plugin.build", "success"),
    ]
    assert entries[2]["error_message"] == "Validation failed at step 3"


def test_the_documented_python_examples_run_verbatim(repo: Path, skill_python: Path) -> None:
    install(repo)
    blocks = doc_blocks("python")

    def example(name: str, code: str, call: str = "", imports: str = "") -> str:
        result = run_python(repo, name, code, call, imports, python=skill_python)
        assert result.stderr == ""  # nothing to say: telemetry is recorded
        return result.stdout

    (decorator,) = blocks["As a Decorator (Recommended)"]
    example("agent.designer", decorator)
    (context,) = blocks["As a Context Manager"]
    example("plugin.build", context, 'build_plugin("./plugin.yaml")\n')
    (api,) = blocks["Programmatic API"]
    assert example("api.example", api).startswith("Captured: ")
    (example2,) = blocks["Example 2: Capture Agent Execution with Decorator"]
    example("agent.run", example2)
    (login,) = blocks["Q: How to exclude sensitive data?"]
    imports = "from telemetry_utils import capture_telemetry\n"
    example("auth.login", login, 'login("ada", "hunter2-secret")\n', imports)
    (custom,) = blocks["Custom Telemetry File"]
    example("custom.file", custom, "assert telemetry.telemetry_file.name\n")
    assert not Path("/custom/path/telemetry.json").exists()  # nothing written yet

    entries = strict_entries(repo / "registry" / "telemetry.json")
    by_skill: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_skill.setdefault(entry["skill"], []).append(entry)
    assert len(by_skill["agent.run"]) == 2
    assert by_skill["agent.run"][0]["inputs"] == {
        "agent_path": "/agents/api.designer",
        "task_context": "Design user authentication API",
    }
    assert by_skill["agent.run"][0]["caller"] == "CLI"
    (build,) = [
        e for e in by_skill["plugin.build"] if e["inputs"] == {"plugin_path": "./plugin.yaml"}
    ]
    assert (build["status"], build["caller"]) == ("success", "CLI")
    assert by_skill["plugin.build"][-1]["metadata"] == {
        "user": "developer@example.com",
        "environment": "production",
    }
    (login_entry,) = by_skill["auth.login"]
    assert login_entry["inputs"] == {"username": "ada", "password": "***REDACTED***"}
    assert "hunter2" not in (repo / "registry" / "telemetry.json").read_text()

    # The query examples read back what was recorded, newest first.
    shell(
        repo,
        "python skills/telemetry.capture/telemetry_capture.py workflow.compose failure 2800 CLI "
        "'{}' 'Validation failed at step 3'",
        skill_python,
    )
    queries = blocks["Query Telemetry Data"] + blocks["Example 3: Query Recent Failures"]
    printed = [example(f"query.{n}", code) for n, code in enumerate(queries)]
    assert "workflow.compose - Validation failed at step 3" in printed[0]
    assert printed[1].startswith("Recent Failures:\n")
    assert "    Error: Validation failed at step 3" in printed[1]


def test_the_documented_invalid_status_error_is_raised_unchanged(
    repo: Path, skill_python: Path
) -> None:
    install(repo)
    (invalid,) = doc_blocks("python")["Invalid Status Value"]
    wrapped = (
        "from telemetry_capture import TelemetryCapture\ntelemetry = TelemetryCapture()\n"
        "try:\n" + textwrap.indent(invalid, "    ") + "except ValueError as e:\n"
        "    print(f'ValueError: {e}')\n"
    )
    printed = run_python(repo, "invalid.status", wrapped, python=skill_python).stdout
    assert printed == (
        "ValueError: Invalid status: invalid_status. "
        "Must be one of: success, failure, timeout, error, pending\n"
    )
    assert not (repo / "registry" / "telemetry.json").exists()


def test_the_shim_run_without_site_packages_records_through_the_installing_python(
    repo: Path,
) -> None:
    """-I -S: the interpreter that installed the shims, without its site folders, cannot
    import betty_otel by itself; the shim takes the installing interpreter's import paths."""
    install(repo)
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(repo / SKILL / "telemetry_capture.py"),
            "isolated.run",
            "success",
            "5",
            "CLI",
        ],
        cwd=repo,
        env=skill_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"Telemetry captured to {repo / 'registry' / 'telemetry.json'}\n")
    (entry,) = strict_entries(repo / "registry" / "telemetry.json")
    assert (entry["skill"], entry["caller"]) == ("isolated.run", "CLI")


def test_install_skill_file_is_the_log_the_skills_write_unless_the_environment_says(
    repo: Path, tmp_path: Path
) -> None:
    chosen = tmp_path / "logs" / "betty.json"
    result = install(repo, "--file", str(chosen))
    assert f"now write through betty_otel to {chosen}." in result.stdout
    command = "python skills/telemetry.capture/telemetry_capture.py chosen.file success 1 CLI"
    assert shell(repo, command).returncode == 0
    assert [entry["skill"] for entry in strict_entries(chosen)] == ["chosen.file"]
    assert not (repo / "registry" / "telemetry.json").exists()
    elsewhere = tmp_path / "env.json"
    assert shell(repo, command, BETTY_TELEMETRY_FILE=str(elsewhere)).returncode == 0
    assert len(strict_entries(elsewhere)) == 1
    assert len(strict_entries(chosen)) == 1
