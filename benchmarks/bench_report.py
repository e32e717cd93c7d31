"""The HTML report of a 1,000,000-entry log: build time, peak memory, page size.

Generates a realistic canonical telemetry.json (see gen_log.py) in a temporary
folder (or uses --file), then builds the report in a fresh Python process and
prints its wall time, CPU time and peak RSS (from wait4), beside `stats` on the
same log in its own process (the report reads every entry too, and does more per
entry), and the size of the page (most of it is plotly.js, inlined).

Usage: python benchmarks/bench_report.py [--entries N] [--file PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATOR = Path(__file__).resolve().parent / "gen_log.py"

REPORT = """
import sys, time
import betty_otel
start = time.perf_counter()
betty_otel.report(sys.argv[1], sys.argv[2])
print(time.perf_counter() - start)
"""

STATS = """
import sys, time
from betty_otel.query import stats
start = time.perf_counter()
stats(sys.argv[1])
print(time.perf_counter() - start)
"""


def measure(code: str, *args: str) -> tuple[float, float, float, float]:
    """(time inside the process, whole process wall time, CPU seconds, peak RSS MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"failed: {code}")
    cpu = usage.ru_utime + usage.ru_stime
    return float(output.strip().splitlines()[-1]), wall, cpu, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--file", type=Path, help="an existing log instead of a generated one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = args.file
        if log is None:
            log = Path(folder) / "telemetry.json"
            subprocess.run(
                [sys.executable, str(GENERATOR), str(log), str(args.entries)], check=True
            )
        out = Path(folder) / "report.html"
        size = log.stat().st_size
        print(f"log: {log} ({size / 1e6:,.0f} MB)")
        inner, wall, cpu, rss = measure(REPORT, str(log), str(out))
        s_inner, s_wall, s_cpu, s_rss = measure(STATS, str(log))
        print(f"{'':<8}{'time s':>10}{'process s':>12}{'cpu s':>9}{'peak RSS MB':>14}")
        print(f"{'report':<8}{inner:>10.2f}{wall:>12.2f}{cpu:>9.2f}{rss:>14.0f}")
        print(f"{'stats':<8}{s_inner:>10.2f}{s_wall:>12.2f}{s_cpu:>9.2f}{s_rss:>14.0f}")
        print(f"report / stats time: {inner / s_inner:.2f}x")
        print(f"page: {out.stat().st_size / 1e6:.2f} MB (self-contained, plotly.js inlined)")


if __name__ == "__main__":
    main()
