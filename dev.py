#!/usr/bin/env python3
"""The project's commands, runnable with nothing but python3.

    python3 dev.py demo        record telemetry with the quickstart example and show it
    python3 dev.py test        lint, type-check and run the whole test suite
    python3 dev.py bench       run every benchmark in benchmarks/ and print one table of ratios
    python3 dev.py screenshot  redraw docs/report.png, the README's picture of the report

Each creates (or reuse) a virtual environment in `.venv` and install the package
with its test and OTLP extras into it; the install is redone only when
`pyproject.toml` changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
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


def screenshot() -> None:
    """Redraw docs/report.png from the Betty registry in docs/ (needs the system's chromium)."""
    _run(PY, "docs/screenshot.py")


def test(extra: list[str]) -> None:
    """Lint, format-check, type-check, then run every test (none are skipped in CI)."""
    _run(PY, "-m", "ruff", "check", ".")
    _run(PY, "-m", "ruff", "format", "--check", ".")
    _run(PY, "-m", "mypy")
    # The CLI tests run the installed console script from the venv.
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    _run(PY, "-m", "pytest", *extra, env=env)


def bench(names: list[str]) -> None:
    """Run the benchmark scripts (all, or those named) and print one table of their targets.

    Each script prints its detail and one `BENCH-ROW` line per target (benchmarks/table.py,
    which also decides whether the goal is met).
    """
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    rows: list[dict[str, object]] = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        with subprocess.Popen(
            [str(PY), str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("BENCH-ROW "):
                    rows.append(json.loads(line.removeprefix("BENCH-ROW ")))
                else:
                    print(line, end="", flush=True)
        if child.returncode != 0:
            sys.exit(child.returncode)
    print(f"\n{_machine()}\n")
    print("| target | betty_otel | baseline | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ratio = float(str(row["ratio"]))
        print(
            f"| {row['target']} | {row['ours']} | {row['baseline']} | {ratio:.2f}x "
            f"| {row['goal']}x | {'yes' if row['met'] else '**no**'} |"
        )


def _machine() -> str:
    """The machine the table was measured on: CPU, cores, memory, OS and Python."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        memory = f", {gib:.0f} GiB RAM"
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores{memory}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def main() -> None:
    """Dispatch `demo`, `test`, `bench` or `screenshot`; extra arguments of `test` go to pytest."""
    commands = {"demo", "test", "bench", "screenshot"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    _ensure_venv()
    if sys.argv[1] == "demo":
        demo()
    elif sys.argv[1] == "bench":
        bench(sys.argv[2:])
    elif sys.argv[1] == "screenshot":
        screenshot()
    else:
        test(sys.argv[2:])


if __name__ == "__main__":
    main()
