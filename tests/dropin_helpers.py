"""What the drop-in tests share: a Betty repository, the original skill's documented
examples, and running them the way skills run, with a chosen interpreter.

- `repo` (`betty_repo`): a fixture, a Betty repository with the original skill's files.
- `plain_python` (`plain_python_fixture`): a fixture, a real interpreter without
  betty_otel (a fresh venv of the same Python, without the package): what a skill run
  by the system ``python3`` meets.
- `doc_blocks`: the code blocks of ../shared/betty/telemetry.capture.md (or of another
  Markdown file, such as the README), by heading.
- `orphaned` (`orphaned_fixture`): a fixture, `repo` with shims whose installing
  interpreter is gone since: no betty_otel is reachable from them.
- `install`, `shell`, `run_python`, `skill_env`: install the shims, run the documented
  command lines and Python examples.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import betty_otel
from cli_helpers import run

DOC = Path(__file__).resolve().parents[1].parent / "shared" / "betty" / "telemetry.capture.md"
"""The original skill's documentation: its examples are the drop-in's specification."""
SKILL = Path("skills") / "telemetry.capture"
SHIMS = ("telemetry_capture.py", "telemetry_utils.py")
FALLBACK = "betty_otel_fallback.py"
FALLBACKS = (FALLBACK, "betty_otel_fallback_helper.py", "betty_otel_fallback_log.py")
"""The fallback and its parts, beside the shims."""

# Names the documentation's examples leave to the reader ("... implementation").
STUBS = """\
execution_result = {"done": True}
result = {"done": True}
def create_plugin_archive(path):
    return f"{path}.tar.gz"
"""

INSTALLING = Path(sys.executable)
"""The interpreter that runs install-skill in these tests (the venv's, with betty_otel)."""


def doc_blocks(language: str, doc: Path = DOC) -> dict[str, list[str]]:
    """A Markdown document's code blocks of one language, by the heading above them
    (by default the original skill's documentation)."""
    blocks: dict[str, list[str]] = {}
    heading = ""
    lines = iter(doc.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == f"```{language}":
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner)
            blocks.setdefault(heading, []).append("\n".join(body) + "\n")
    return blocks


@pytest.fixture(name="repo")
def betty_repo(tmp_path: Path) -> Path:
    """A Betty repository as they are today: with the original skill's files in place."""
    root = tmp_path / "betty"
    for folder in ("registry", "agents", "workflows", SKILL, "skills/agent.run"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / SKILL / "telemetry_capture.py").write_text("# the original skill\n")
    (root / SKILL / "telemetry_utils.py").write_text("# the original utilities\n")
    (root / SKILL / "SKILL.md").write_text("docs\n")
    return root


def make_venv(where: Path) -> Path:
    """A fresh venv of the Python running the tests, without betty_otel; its python."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    lacks = subprocess.run([str(python), "-c", "import betty_otel"], check=False)
    assert lacks.returncode != 0, "the plain interpreter must not have betty_otel"
    return python


@pytest.fixture(scope="module", name="plain_python")
def plain_python_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real second interpreter that cannot import betty_otel."""
    return make_venv(tmp_path_factory.mktemp("plain") / "venv")


def skill_env(python: Path = INSTALLING, /, **more: str) -> dict[str, str]:
    """The environment of a shell in the repository where `python` is the given one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BETTY_", "OTEL_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(more)
    return env


def install(repo: Path, *options: str) -> subprocess.CompletedProcess[str]:
    result = run("install-skill", str(repo), *options)
    assert result.returncode == 0, result.stderr
    return result


def shell(
    repo: Path, script: str, python: Path = INSTALLING, /, **more: str
) -> subprocess.CompletedProcess[str]:
    """Run a shell script in the repository, `python` being the given interpreter."""
    return subprocess.run(
        ["bash", "-c", script],
        cwd=repo,
        env=skill_env(python, **more),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_python(
    repo: Path,
    name: str,
    code: str,
    call: str = "",
    imports: str = "",
    python: Path = INSTALLING,
) -> subprocess.CompletedProcess[str]:
    """Run one documented example as a script in skills/<name>/, the way skills run.

    imports: what an example uses without importing it (it follows another one)."""
    folder = repo / "skills" / name
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{name.replace('.', '_')}.py"
    script.write_text(imports + STUBS + code + call, encoding="utf-8")
    result = subprocess.run(
        [str(python), str(script)],
        cwd=repo,
        env=skill_env(python, PYTHONPATH=str(repo / SKILL)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def site_packages(python: Path) -> Path:
    """The first site folder of python (a venv's site-packages)."""
    found = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


@pytest.fixture(name="orphaned")
def orphaned_fixture(repo: Path, tmp_path: Path) -> Path:
    """repo, its shims installed by an interpreter that is gone since (a deleted venv
    that reached betty_otel through a .pth file): no betty_otel is reachable any more."""
    installer = make_venv(tmp_path / "gone")
    links = [str(Path(betty_otel.__file__).resolve().parents[1]), *site.getsitepackages()]
    (site_packages(installer) / "betty.pth").write_text("\n".join(links) + "\n")
    result = subprocess.run(
        [str(installer), "-m", "betty_otel", "install-skill", str(repo)],
        env=skill_env(installer),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shim = (repo / SKILL / "telemetry_capture.py").read_text()
    assert str(installer) in shim
    assert str(site_packages(installer)) in shim
    shutil.rmtree(tmp_path / "gone")
    return repo
