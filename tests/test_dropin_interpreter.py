"""The drop-in runs with the interpreter the skills run with, and never fails a skill.

After ``install-skill``, a skill started by an interpreter that cannot import betty_otel
(here: real venvs without the package) records through a helper process of the
installing interpreter (test_dropin runs every documented example that way). These
tests attack the rest of the class: what the skill's interpreter was started with
(``PYTHONHOME``, ``PYTHONPATH``, ``-I``, ``-E``) never reaching the helper; the
installing interpreter gone (the standard-library writer then records, secrets left
out); the fallback beside the shims missing or broken; Pythons as old as 3.6; nothing
of the installing interpreter in the skill's process; and the shim's log staying the
skill's own, never its children's.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from betty_otel import dropin_fallback
from betty_otel.cli.install import install_skill, shim_text
from dropin_helpers import (
    FALLBACK,
    FALLBACKS,
    INSTALLING,
    SHIMS,
    SKILL,
    betty_repo,  # noqa: F401 - the repo fixture
    doc_blocks,
    install,
    orphaned_fixture,  # noqa: F401 - the orphaned fixture
    plain_python_fixture,  # noqa: F401 - the plain_python fixture
    run_python,
    shell,
    skill_env,
)
from helpers import strict_entries

RECORDED_ITSELF = "Warning: telemetry is recorded without betty_otel: "
"""The first line of the one warning of a process that records with the standard library."""
SKIPPED = "Warning: telemetry is not recorded (this skill runs unchanged): "
"""The one warning of a process whose fallback beside the shims cannot be loaded."""
CAPTURE = str(SKILL / "telemetry_capture.py")


def _run(
    repo: Path, python: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run python (with its flags in args) in the repository, as a skill would."""
    return subprocess.run(
        [str(python), *args],
        cwd=repo,
        env=skill_env(python, **(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def shadowing(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH whose betty_otel and opentelemetry fail on import."""
    folder = tmp_path / "shadowing"
    for package in ("betty_otel", "opentelemetry"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(f"raise RuntimeError('shadowed {package}')\n")
    return folder


# ---------------------------------------------------------------------------
# What the skill's interpreter was started with never reaches the installing one
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "variables"),
    [
        (["-I"], {"PYTHONHOME": "/nonexistent"}),
        (["-E"], {"PYTHONHOME": "/nonexistent", "PYTHONPATH": "{shadowing}"}),
        (["-I"], {"PYTHONPATH": "{shadowing}", "PYTHONSAFEPATH": "1"}),
        ([], {"PYTHONPATH": "{shadowing}"}),
        (["-E", "-s"], {"PYTHONHOME": "/nonexistent", "PYTHONNOUSERSITE": "1"}),
    ],
    ids=["-I PYTHONHOME", "-E PYTHONHOME PYTHONPATH", "-I PYTHONPATH", "PYTHONPATH", "-E -s"],
)
def test_what_the_skill_was_started_with_never_reaches_betty_otel(
    repo: Path, plain_python: Path, shadowing: Path, flags: list[str], variables: dict[str, str]
) -> None:
    """The command line records through betty_otel (full redaction, no warning), with
    the skill's interpreter started as it is: a PYTHONHOME or PYTHONPATH it ignores, or
    one that hides betty_otel from it, never breaks the installing interpreter."""
    install(repo)
    env = {name: value.format(shadowing=shadowing) for name, value in variables.items()}
    inputs = '{"password": "hunter2-secret", "plugin": "p.yaml"}'
    for python in (plain_python, INSTALLING):
        result = _run(
            repo, python, *flags, CAPTURE, "p.build", "success", "320", "CLI", inputs, env=env
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        printed, _, done = result.stdout.rstrip("\n").rpartition("\n\n")
        assert done == f"✓ Telemetry captured to {repo / 'registry' / 'telemetry.json'}"
        assert json.loads(printed)["inputs"] == {"password": "***REDACTED***", "plugin": "p.yaml"}
    entries = strict_entries(repo / "registry" / "telemetry.json")
    assert [(e["skill"], e["duration_ms"], e["metadata"]) for e in entries] == [
        ("p.build", 320.0, {})
    ] * 2
    assert "hunter2" not in (repo / "registry" / "telemetry.json").read_text()


def test_the_python_api_records_through_betty_otel_and_reads_the_log_back(
    repo: Path, plain_python: Path, shadowing: Path
) -> None:
    """capture writes the entry it returns, query finds what the log holds, the decorator
    and the context record; with the skill's PYTHONPATH shadowing betty_otel."""
    install(repo)
    code = """
        from telemetry_capture import TelemetryCapture
        from telemetry_utils import TelemetryContext, capture_telemetry

        @capture_telemetry(skill_name="api.login", capture_inputs=True, sanitize_keys=["pin"])
        def login(user, pin):
            raise PermissionError(f"pin {pin} refused")

        try:
            login("ada", "8231-7788")
        except PermissionError:
            pass
        with TelemetryContext("api.block", caller="API") as ctx:
            ctx.set_metadata({"token": "abc"})
        telemetry = TelemetryCapture()
        entry = telemetry.capture("api.capture", "failure", 12.5, "CLI", {"k": 1}, "went wrong")
        found = telemetry.query(status="failure")
        print(json.dumps([entry, found, telemetry.query(skill="api.block", limit=1)]))
        """
    env = {"PYTHONPATH": f"{shadowing}{os.pathsep}{repo / SKILL}"}
    script = repo / "skills" / "api.py"
    script.write_text("import json\n" + textwrap.dedent(code), encoding="utf-8")
    result = _run(repo, plain_python, str(script), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    entry, failures, blocks = json.loads(result.stdout)
    log = strict_entries(repo / "registry" / "telemetry.json")
    assert entry in log  # what capture returned is what the file holds
    assert [e["skill"] for e in log] == ["api.login", "api.block", "api.capture"]
    assert [e["skill"] for e in failures] == ["api.capture", "api.login"]  # newest first
    assert [e["skill"] for e in blocks] == ["api.block"]
    assert log[0]["inputs"] == {"user": "ada", "pin": "***REDACTED***"}
    assert log[0]["error_message"] == "PermissionError: pin ***REDACTED*** refused"
    assert "8231-7788" not in (repo / "registry" / "telemetry.json").read_text()


# ---------------------------------------------------------------------------
# No betty_otel reachable at all: the standard-library writer
# ---------------------------------------------------------------------------


def test_without_a_reachable_betty_otel_the_command_line_records_without_secrets(
    orphaned: Path, plain_python: Path
) -> None:
    """Each documented command line exits 0 and writes its entry, the log stays a JSON
    array; inputs and the error text are left out (nothing unredacted reaches the disk),
    and each process says so once."""
    blocks = doc_blocks("bash")
    for script in (*blocks["Basic CLI Usage"], *blocks["Example 1: Capture Plugin Build"]):
        result = shell(orphaned, script.replace("api.designer", "hunter2-secret"), plain_python)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        processes = result.stdout.count("✓ Telemetry captured to ")
        assert result.stderr.count(RECORDED_ITSELF) == processes
    log = orphaned / "registry" / "telemetry.json"
    entries = strict_entries(log)
    assert [(e["skill"], e["status"]) for e in entries] == [
        ("plugin.build", "success"),
        ("agent.run", "success"),
        ("workflow.compose", "failure"),
        ("plugin.build", "success"),
    ]
    assert entries[2]["error_message"] == "(withheld)"
    assert entries[2]["metadata"] == {"withheld": ["inputs", "error_message"]}
    assert all(e["inputs"] == {} for e in entries)
    assert "hunter2" not in log.read_text()
    assert "Validation failed" not in log.read_text()


def test_without_a_reachable_betty_otel_every_documented_example_does_its_job(
    orphaned: Path, plain_python: Path
) -> None:
    """The skill's own work runs unchanged: results, exceptions and the original's
    ValueError for an invalid status; every execution is in the log; one warning a process;
    capture returns the entry it wrote and query reads the log back."""
    blocks = doc_blocks("python")
    examples = [
        ("decorated", blocks["As a Decorator (Recommended)"][0], ""),
        ("context", blocks["As a Context Manager"][0], 'print(build_plugin("p.yaml"))\n'),
        ("api", blocks["Programmatic API"][0], ""),
        ("queried", blocks["Example 3: Query Recent Failures"][0], ""),
    ]
    for name, code, call in examples:
        result = run_python(orphaned, name, code, call, python=plain_python)
        assert result.stderr.count(RECORDED_ITSELF) == 1, result.stderr
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
        entry = TelemetryCapture().capture("s", "success", 12.5, "CLI", {"a": 1})
        found = TelemetryCapture().query(skill="s")
        print(json.dumps([bare(21), list(caught), asyncio.run(asynchronous()), invalid,
                          entry == found[0], [e["skill"] for e in TelemetryCapture().query()]]))
        """
    result = run_python(
        orphaned, "both", textwrap.dedent(both), imports="import json\n", python=plain_python
    )
    assert json.loads(result.stdout) == [
        42,
        ["hunter2"],
        "awaited",
        "Invalid status: invalid_status. Must be one of: success, failure, timeout, error, pending",
        True,
        ["async.block", "bare", "s", "called", "plugin.build", "plugin.build", "agent.run"],
    ]
    assert result.stderr.count(RECORDED_ITSELF) == 1  # both shims imported: said once
    log = orphaned / "registry" / "telemetry.json"
    assert "hunter2" not in log.read_text()
    assert len(strict_entries(log)) == 7


# ---------------------------------------------------------------------------
# The fallback itself missing or broken; old Pythons
# ---------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("damage", ["missing", "a syntax error", "raises on import"])
@pytest.mark.parametrize("part", FALLBACKS)
def test_a_missing_or_broken_fallback_never_fails_a_skill(
    repo: Path, plain_python: Path, part: str, damage: str
) -> None:
    """Every shim still imports; the skill's code runs; the command line exits 0; one
    warning says telemetry is not recorded and how to put it right."""
    install(repo)
    path = repo / SKILL / part
    if damage == "missing":
        path.unlink()
    else:
        path.write_text("def broken(:\n" if damage == "a syntax error" else "raise OSError(5)\n")
    result = shell(repo, f"python {CAPTURE} p.build success 320 CLI", plain_python)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(SKIPPED)
    assert "install-skill" in result.stderr
    assert "Traceback" not in result.stderr
    code = """
        from telemetry_utils import TelemetryContext, capture_telemetry
        from telemetry_capture import TelemetryCapture

        @capture_telemetry(skill_name="x", capture_inputs=True)
        def work(value):
            return value + 1

        with TelemetryContext("block") as ctx:
            ctx.set_status("success")
        entry = TelemetryCapture().capture("s", "success", 1, "CLI", metadata={"m": 1})
        print(work(1), entry["skill"], TelemetryCapture().query())
        """
    ran = run_python(repo, "damaged", textwrap.dedent(code), python=plain_python)
    assert ran.stdout == "2 s []\n"
    assert ran.stderr.count(SKIPPED) == 1


def _other_pythons() -> list[Path]:
    """The system python3 and Python 3 interpreters older than this one on this machine
    (none is fine: the syntax test still holds the files to 3.6)."""
    found = [Path("/usr/bin/python3")] if Path("/usr/bin/python3").is_file() else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in range(6, sys.version_info[1]):
        system = Path(f"/usr/bin/python3.{minor}")
        found.extend(
            [system] if system.is_file() else sorted(pyenv.glob(f"3.{minor}.*/bin/python3"))[:1]
        )
    return [python for python in found if python.resolve() != Path(sys.executable).resolve()]


def test_the_shims_and_the_fallback_are_python_3_6_and_run_on_every_python_found(
    orphaned: Path, plain_python: Path
) -> None:
    """Parsed as Python 3.6 (the oldest a Betty repository is expected to run); then the
    command line and the decorator run on the system python3 and every older Python 3
    this machine has, and on the plain interpreter, without betty_otel: each records."""
    for name in (*SHIMS, *FALLBACKS):
        ast.parse((orphaned / SKILL / name).read_bytes(), feature_version=(3, 6))
    for name in SHIMS:
        ast.parse(shim_text(name, Path("/elsewhere/t.json")), feature_version=(3, 6))
    pythons = [*_other_pythons(), plain_python]
    for python in pythons:
        script = f"{python} {CAPTURE} old.python success 1 CLI '{{\"x\": 1}}'"
        result = shell(orphaned, script, python)
        assert result.returncode == 0, (python, result.stderr)
        assert result.stderr.startswith(RECORDED_ITSELF), result.stderr
        code = "@capture_telemetry(skill_name='old.decorated')\ndef f():\n    return 1\n"
        code += "print(f())\n"
        imports = "from telemetry_utils import capture_telemetry\n"
        assert run_python(orphaned, "old", code, imports=imports, python=python).stdout == "1\n"
    skills = [e["skill"] for e in strict_entries(orphaned / "registry" / "telemetry.json")]
    assert skills == ["old.python", "old.decorated"] * len(pythons)
    install(orphaned)  # reachable again: each records through the helper, without a word
    for python in pythons:
        result = shell(orphaned, f"{python} {CAPTURE} helped success 1 CLI '{{\"x\": 1}}'")
        assert (result.returncode, result.stderr) == (0, ""), python
    log = strict_entries(orphaned / "registry" / "telemetry.json")
    assert [e["inputs"] for e in log if e["skill"] == "helped"] == [{"x": 1}] * len(pythons)


def test_the_fallback_beside_the_shims_is_betty_otels(repo: Path) -> None:
    """The copies are the package's modules byte for byte, written before the shims."""
    result = install(repo)
    modules = {
        FALLBACK: "dropin_fallback.py",
        "betty_otel_fallback_helper.py": "dropin_fallback_helper.py",
        "betty_otel_fallback_log.py": "dropin_fallback_log.py",
    }
    package = Path(dropin_fallback.__file__).parent
    for copy, module in modules.items():
        assert (repo / SKILL / copy).read_bytes() == (package / module).read_bytes()
    written = [line.split(": ")[0].rsplit("/", 1)[-1] for line in result.stdout.splitlines()[1:-1]]
    assert written == [*FALLBACKS[1:], FALLBACK, *SHIMS]


@pytest.mark.faults
def test_an_install_that_fails_midway_leaves_whole_files_and_the_old_shims(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure placing the fallback (a full disk) leaves the parts written before it
    whole, no half-written file, and the shims that were there untouched: nothing
    points at a fallback that is not there."""
    real_link = os.link

    def link(source: str, target: str) -> None:
        if Path(target).name == FALLBACK:
            raise OSError(28, "No space left on device")
        real_link(source, target)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(OSError, match="No space left"):
        install_skill(repo)
    folder = repo / SKILL
    package = Path(dropin_fallback.__file__).parent
    for part in FALLBACKS[1:]:
        module = part.replace("betty_otel_fallback", "dropin_fallback")
        assert (folder / part).read_bytes() == (package / module).read_bytes()
    assert not (folder / FALLBACK).exists()
    assert (folder / "telemetry_capture.py").read_text() == "# the original skill\n"
    assert (folder / "telemetry_utils.py").read_text() == "# the original utilities\n"
    assert not [path.name for path in folder.iterdir() if path.name.endswith(".new")]


# ---------------------------------------------------------------------------
# The skill's process and its children
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("reachable", [True, False], ids=["helper", "standard library"])
def test_nothing_of_the_installing_interpreter_enters_the_skills_process(
    repo: Path, orphaned: Path, plain_python: Path, reachable: bool
) -> None:
    """Importing the shims and recording leave sys.path, sys.meta_path and sys.modules
    as the skill had them: no site folder, no .pth file, no betty_otel or OpenTelemetry."""
    if reachable:
        install(repo)  # over the orphaned shims (the same repository)
    code = """
        import sys
        before = (list(sys.path), list(sys.meta_path), set(sys.modules))
        from telemetry_utils import capture_telemetry
        from telemetry_capture import TelemetryCapture
        capture_telemetry(lambda: None)()
        TelemetryCapture().capture("clean", "success", 1, "CLI")
        TelemetryCapture().query()
        loaded = sorted(
            name for name in set(sys.modules) - before[2]
            if name.split(".")[0] in ("betty_otel", "opentelemetry", "wrapt", "orjson")
        )
        print(json.dumps([sys.path == before[0], sys.meta_path == before[1], loaded]))
        """
    result = run_python(
        repo, "clean", textwrap.dedent(code), imports="import json\n", python=plain_python
    )
    assert json.loads(result.stdout) == [True, True, []]


@pytest.mark.parametrize("skill_python", ["installing", "plain"])
def test_the_shims_log_is_the_skills_own_never_its_childrens(
    repo: Path, tmp_path: Path, plain_python: Path, skill_python: str
) -> None:
    """install-skill --file makes the skill's log X, for the skill only: nothing is put
    in its environment, so a skill of another repository that it starts writes to that
    repository's log."""
    python = INSTALLING if skill_python == "installing" else plain_python
    chosen = tmp_path / "chosen.json"
    install(repo, "--file", str(chosen))
    other = tmp_path / "other"
    for folder in ("registry", "skills", SKILL):
        (other / folder).mkdir(parents=True, exist_ok=True)
    install(other)
    code = f"""
        import os, subprocess, sys
        from telemetry_capture import TelemetryCapture
        TelemetryCapture().capture("parent", "success", 1, "CLI")
        child = [sys.executable, {str(other / CAPTURE)!r}, "child", "success", "2", "CLI"]
        subprocess.run(child, check=True, stdout=subprocess.DEVNULL)
        print(os.environ.get("BETTY_TELEMETRY_FILE"), os.environ.get("BETTY_HOME"))
        """
    result = run_python(repo, "parent", textwrap.dedent(code), python=python)
    assert result.stdout == "None None\n"
    assert [e["skill"] for e in strict_entries(chosen)] == ["parent"]
    assert [e["skill"] for e in strict_entries(other / "registry" / "telemetry.json")] == ["child"]
    assert not (repo / "registry" / "telemetry.json").exists()


def test_the_warning_says_what_happened_and_what_to_do(orphaned: Path, plain_python: Path) -> None:
    result = shell(orphaned, f"python {CAPTURE} w.s success 1 CLI", plain_python)
    (line,) = result.stderr.splitlines()
    assert line.startswith(RECORDED_ITSELF)
    assert "could not run it" in line
    assert f"Install betty-otel for {plain_python}" in line
    assert "betty-telemetry install-skill" in line
