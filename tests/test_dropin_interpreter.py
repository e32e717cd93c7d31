"""The drop-in runs with the interpreter the skills run with, and never fails a skill.

After ``install-skill``, a skill started by an interpreter that cannot import betty_otel
(here: real venvs without the package) records through the installing interpreter's
betty_otel (test_dropin runs every documented example that way). These tests attack
the rest of the class: the installing interpreter gone, a betty_otel that breaks on
import, the command line handed to the installing interpreter, and what is left in
the skill's process when borrowing fails. In every case the skill does its job.
"""

from __future__ import annotations

import ast
import json
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from betty_otel import dropin_fallback
from dropin_helpers import (
    FALLBACK,
    SKILL,
    betty_repo,  # noqa: F401 - the repo fixture
    doc_blocks,
    install,
    make_venv,
    plain_python_fixture,  # noqa: F401 - the plain_python fixture
    run_python,
    shell,
)
from helpers import strict_entries

WARNING = "Warning: telemetry is not recorded: "


def _site_packages(python: Path) -> Path:
    found = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


@pytest.fixture
def orphaned(repo: Path, tmp_path: Path) -> Path:
    """repo, its shims installed by an interpreter that is gone since (a deleted venv
    that reached betty_otel through a .pth file): no betty_otel is reachable any more."""
    installer = make_venv(tmp_path / "gone")
    links = [str(Path(dropin_fallback.__file__).resolve().parents[1]), *site.getsitepackages()]
    (_site_packages(installer) / "betty.pth").write_text("\n".join(links) + "\n")
    result = subprocess.run(
        [str(installer), "-m", "betty_otel", "install-skill", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shim = (repo / SKILL / "telemetry_capture.py").read_text()
    assert str(installer) in shim
    assert str(_site_packages(installer)) in shim
    shutil.rmtree(tmp_path / "gone")
    return repo


def test_without_a_reachable_betty_otel_the_command_line_exits_0_and_says_so_once(
    orphaned: Path, plain_python: Path
) -> None:
    (basic,) = doc_blocks("bash")["Basic CLI Usage"]
    result = shell(orphaned, basic, plain_python)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count(WARNING) == 3  # once per process, three captures
    assert str(plain_python) in result.stderr
    assert not (orphaned / "registry" / "telemetry.json").exists()  # nothing unredacted


def test_without_a_reachable_betty_otel_every_documented_example_does_its_job(
    orphaned: Path, plain_python: Path
) -> None:
    """The skill's own work runs unchanged: results, exceptions and the original's
    ValueError for an invalid status; the log is not written; one warning a process."""
    blocks = doc_blocks("python")
    examples = [
        ("decorated", blocks["As a Decorator (Recommended)"][0], ""),
        ("context", blocks["As a Context Manager"][0], 'print(build_plugin("p.yaml"))\n'),
        ("api", blocks["Programmatic API"][0], ""),
        ("queried", blocks["Example 3: Query Recent Failures"][0], ""),
    ]
    for name, code, call in examples:
        result = run_python(orphaned, name, code, call, python=plain_python)
        assert result.stderr.count(WARNING) == 1, result.stderr
    both = """
        from telemetry_utils import TelemetryContext, capture_telemetry
        from telemetry_capture import TelemetryCapture

        @capture_telemetry
        def bare(x):
            return x * 2

        @capture_telemetry(skill_name="called", capture_inputs=True)
        def failing(password):
            raise KeyError(password)

        async def asynchronous():
            async with TelemetryContext("async.block") as ctx:
                ctx.set_metadata({"k": 1})
                return "awaited"

        import asyncio
        try:
            failing("hunter2")
        except KeyError as exc:
            caught = exc.args
        try:
            TelemetryCapture().capture("s", "invalid_status", 1, "CLI")
        except ValueError as exc:
            invalid = str(exc)
        entry = TelemetryCapture().capture("s", "success", "12.5", "CLI", {"a": 1})
        print(json.dumps([bare(21), list(caught), asyncio.run(asynchronous()), invalid,
                          entry["duration_ms"], entry["inputs"], TelemetryCapture().query()]))
        """
    result = run_python(
        orphaned, "both", textwrap.dedent(both), imports="import json\n", python=plain_python
    )
    assert json.loads(result.stdout) == [
        42,
        ["hunter2"],
        "awaited",
        "Invalid status: invalid_status. Must be one of: success, failure, timeout, error, pending",
        12.5,
        {"a": 1},
        [],
    ]
    assert result.stderr.count(WARNING) == 1  # both shims imported: said once
    assert not (orphaned / "registry" / "telemetry.json").exists()


def test_a_failed_borrow_leaves_nothing_of_it_in_the_skills_process(
    orphaned: Path, plain_python: Path
) -> None:
    """The installing interpreter's paths are taken back, with every module loaded from them."""
    code = """
        import sys
        before = list(sys.path)
        from telemetry_utils import capture_telemetry
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "betty_otel")
        print(json.dumps([sys.path == before, loaded]))
        """
    result = run_python(
        orphaned, "clean", textwrap.dedent(code), imports="import json\n", python=plain_python
    )
    assert json.loads(result.stdout) == [True, []]


def test_a_betty_otel_that_breaks_on_import_never_fails_the_skill(
    repo: Path, tmp_path: Path
) -> None:
    """An interpreter whose own betty_otel raises on import (not ImportError): the shim
    falls back (its own betty_otel still comes first on its path), the skill runs."""
    python = make_venv(tmp_path / "broken")
    package = _site_packages(python) / "betty_otel"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('a half-upgraded install')\n")
    install(repo)
    command = "python skills/telemetry.capture/telemetry_capture.py broken.run success 1 CLI"
    result = shell(repo, command, python)
    assert result.returncode == 0, result.stderr
    # The command line ran in the installing interpreter: recorded.
    entries = strict_entries(repo / "registry" / "telemetry.json")
    assert [entry["skill"] for entry in entries] == ["broken.run"]
    code = (
        "from telemetry_utils import capture_telemetry\n"
        "@capture_telemetry\ndef work():\n    return 'done'\nprint(work())\n"
    )
    assert run_python(repo, "broken.skill", code, python=python).stdout == "done\n"


def test_the_command_line_is_handed_to_the_installing_interpreter_once(tmp_path: Path) -> None:
    """exec of the installing interpreter with the shim and its arguments, marked so that
    it never hands on again; a marked process, or one that is that interpreter, goes on."""
    fake = tmp_path / "installing-python"
    fake.write_text(
        f'#!/bin/sh\necho "$@"; echo "from=${dropin_fallback.ENV_EXECUTED}"\n', encoding="utf-8"
    )
    fake.chmod(0o755)
    shim = tmp_path / "telemetry_capture.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('fallback', {dropin_fallback.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"chosen = module.dropin({{'python': {str(fake)!r}, 'paths': [], 'abi': None}}, "
        f"{str(shim)!r})\n"
        "print('went on with', chosen.TelemetryCapture.__module__)\n"
    )

    def run(*env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["env", *env, sys.executable, "-I", "-c", code, "a.skill", "success", "2", "CLI"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    handed = run()
    assert handed.returncode == 0, handed.stderr
    assert handed.stdout == f"{shim} a.skill success 2 CLI\nfrom={sys.executable}\n"
    marked = run(f"{dropin_fallback.ENV_EXECUTED}=/some/python")
    assert marked.stdout == "went on with fallback\n"
    assert marked.stderr.startswith(WARNING)


def test_the_fallback_beside_the_shims_is_betty_otels_module_and_runs_on_old_pythons(
    repo: Path,
) -> None:
    """The copy is the package's module byte for byte; it parses as Python 3.7."""
    install(repo)
    copied = (repo / SKILL / FALLBACK).read_bytes()
    assert copied == Path(dropin_fallback.__file__).read_bytes()
    ast.parse(copied, feature_version=(3, 7))
