#!/usr/bin/env python3
"""The project's two commands, runnable with nothing but python3.

    python3 dev.py demo   record telemetry with the quickstart example and show it
    python3 dev.py test   lint, type-check and run the whole test suite

Both create (or reuse) a virtual environment in `.venv` and install the package
with its test and OTLP extras into it; the install is redone only when
`pyproject.toml` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".betty-otel-installed"


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the repository root; stop with its exit code if it fails."""
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
    if code != 0:
        sys.exit(code)


def _ensure_venv() -> None:
    """Create .venv and install the package (editable) with its extras when needed."""
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing betty-otel and its test dependencies into .venv ...", flush=True)
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(PY, "-m", "pip", "install", "--quiet", "-e", ".[test,otlp,bench]")
    STAMP.write_text(wanted)


def demo() -> None:
    """Record a few executions to the default telemetry file and print them."""
    _run(PY, "examples/quickstart.py")


def test(extra: list[str]) -> None:
    """Lint, format-check, type-check, then run every test (none are skipped in CI)."""
    _run(PY, "-m", "ruff", "check", ".")
    _run(PY, "-m", "ruff", "format", "--check", ".")
    _run(PY, "-m", "mypy")
    # The CLI tests run the installed console script from the venv.
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    _run(PY, "-m", "pytest", *extra, env=env)


def main() -> None:
    """Dispatch `demo` or `test`; extra arguments of `test` go to pytest."""
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    _ensure_venv()
    if sys.argv[1] == "demo":
        demo()
    else:
        test(sys.argv[2:])


if __name__ == "__main__":
    main()
