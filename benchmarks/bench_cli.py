"""Start-up of ``betty-telemetry capture`` against the original stdlib-only Betty script.

Wall time of whole processes, each started through the interpreter's own path (ours
through the installed console script, ``bin/betty-telemetry`` beside this interpreter,
whose shebang names it; no version-manager shim), median of RUNS runs with the
contenders alternating. Each contender writes its own log, reset before every run to
the same small log (LOG_ENTRIES entries, written with json.dump(indent=2) as Betty's
tools write it; not timed). Byte-code caches are written first (a warm-up run of each),
as they are in an installed package.

Targets:
- capture with no OTLP configured (the direct path: no OTel SDK) <= 1.0x
  ``benchmarks/original_capture.py`` (what the original skill's script does);
- the same with a small inputs object (the skill documentation's second example, which
  loads the sanitizer and its secret rules) <= 1.3x the original script given the same
  inputs;
- capture with OTLP configured (the span path; the collector down, a closed local port,
  and not waited for: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=0, so this is what the CLI itself
  costs) <= 1.3x a bare
  ``python -c "import opentelemetry.sdk.trace, <the OTLP HTTP exporter>"``. With the
  default exit budget a down collector costs at most that budget (1 s), printed too.

    .venv/bin/python benchmarks/bench_cli.py
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gen_log import generate
from table import Row, emit

RUNS = 21
LOG_ENTRIES = 100
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
CLI = str(Path(sys.executable).parent / "betty-telemetry")
CAPTURE = ("plugin.build", "success", "320", "CLI")
WITH_INPUTS = ("agent.run", "success", "1500", "API", '{"agent": "api.designer", "task": "x"}')
"""The skill documentation's second example: inputs to sanitize (and redact)."""
SDK_IMPORT = "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter"
SDK_EXPORTER = SDK_IMPORT + " as e; e.OTLPSpanExporter()"
"""The same, and the exporter made: it imports its HTTP stack (requests, urllib3) only then."""


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wall_ms(
    commands: dict[str, list[str]],
    env: dict[str, str],
    folder: Path,
    small: bytes,
    runs: int = RUNS,
) -> dict[str, float]:
    """Median wall time (ms) of each command, alternating them; each writes its own log
    (in folder, named after it: $BETTY_TELEMETRY_FILE), reset before each run."""
    logs = {name: folder / f"{name}.json" for name in commands}
    envs = {name: {**env, "BETTY_TELEMETRY_FILE": str(log)} for name, log in logs.items()}

    def run(name: str) -> float:
        logs[name].write_bytes(small)
        start = time.perf_counter()
        subprocess.run(
            commands[name],
            env=envs[name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        return (time.perf_counter() - start) * 1000

    for name in commands:  # warm-up: byte-code caches, page cache
        run(name)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name in commands:
            times[name].append(run(name))
    return {name: statistics.median(values) for name, values in times.items()}


def versus_original(
    args: tuple[str, ...], env: dict[str, str], folder: Path, small: bytes, runs: int = RUNS
) -> dict[str, float]:
    """Median wall times (ms) of the original script and of our console script given args."""
    return wall_ms(
        {
            "original": [PYTHON, str(HERE / "original_capture.py"), *args],
            "ours": [CLI, "capture", *args],
        },
        env,
        folder,
        small,
        runs,
    )


def with_otlp(env: dict[str, str], folder: Path, small: bytes) -> dict[str, float]:
    """The SDK's imports, and our capture with a (down) collector configured: not waited
    for (the CLI's own cost), then waited for at most the default exit budget (1 s)."""
    otlp_env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    no_wait = {**otlp_env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}
    otlp = wall_ms(
        {
            "sdk": [PYTHON, "-c", SDK_IMPORT],
            "exporter": [PYTHON, "-c", SDK_EXPORTER],
            "ours": [CLI, "capture", *CAPTURE],
        },
        no_wait,
        folder,
        small,
    )
    budget = wall_ms({"ours": [CLI, "capture", *CAPTURE]}, otlp_env, folder, small, runs=5)
    return {**otlp, "budget": budget["ours"]}


def main() -> int:
    if not Path(CLI).exists():
        print(f"{CLI} is missing: run this with the virtual environment's python (dev.py bench)")
        return 1
    entries = [json.loads(line) for line in generate(LOG_ENTRIES)]
    small = json.dumps(entries, indent=2).encode()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "TRACE")) and key != "PYTHONDONTWRITEBYTECODE"
    }
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        direct = versus_original(CAPTURE, env, folder, small)
        others = {
            "interpreter": [PYTHON, "-c", "pass"],
            "help": [CLI, "--help"],
            "query": [CLI, "query", "--limit", "5"],
            "stats": [CLI, "stats"],
        }
        direct.update(wall_ms(others, env, folder, small))
        inputs = versus_original(WITH_INPUTS, env, folder, small)
        empty = versus_original(CAPTURE, env, folder, b"[]\n", runs=11)
        otlp = with_otlp(env, folder, small)
    print(f"Wall time, median of {RUNS} runs, log of {LOG_ENTRIES} entries ({len(small):,} bytes):")
    for what, value in direct.items():
        print(f"  {what:12} {value:7.1f} ms")
    print(f"  on an empty log: original {empty['original']:.1f} ms, ours {empty['ours']:.1f} ms")
    print(
        f"  with inputs (sanitized, redacted): original {inputs['original']:.1f} ms,"
        f" ours {inputs['ours']:.1f} ms"
    )
    print(f"  {'sdk import':12} {otlp['sdk']:7.1f} ms")
    print(f"  {'sdk import':12} {otlp['exporter']:7.1f} ms (and the OTLP exporter made)")
    print(f"  {'otlp capture':12} {otlp['ours']:7.1f} ms (collector down, not waited for)")
    print(f"  {'otlp capture':12} {otlp['budget']:7.1f} ms (collector down, 1 s exit budget)")
    emit_rows(direct, inputs, otlp)
    return 0


def emit_rows(direct: dict[str, float], inputs: dict[str, float], otlp: dict[str, float]) -> None:
    """The three targets, for dev.py bench: (target, times, baseline's words, its key, goal)."""
    targets = (
        ("CLI capture, no OTLP", direct, "original script", "original", "<= 1.0"),
        (
            "CLI capture with inputs, no OTLP",
            inputs,
            "original script, same inputs",
            "original",
            "<= 1.3",
        ),
        ("CLI capture, OTLP configured", otlp, "bare SDK + OTLP import", "sdk", "<= 1.3"),
    )
    for target, times, words, baseline, goal in targets:
        emit(
            Row(
                target=target,
                ours=f"{times['ours']:.0f} ms",
                baseline=f"{words} {times[baseline]:.0f} ms",
                ratio=times["ours"] / times[baseline],
                goal=goal,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
