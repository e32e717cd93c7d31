"""The HTML report of a 1,000,000-entry log: build time, peak memory, page size.

Generates a realistic canonical telemetry.json (see gen_log.py) in a temporary
folder (or uses --file), then builds the report in a fresh Python process and
prints its wall time, CPU time and peak RSS (from wait4), beside `stats` on the
same log in its own process (the report reads every entry too, and does more per
entry), and the size of the page (most of it is plotly.js, inlined). stats is cold:
its summary beside the log is removed before each run (it is only a cache). Each is
run --rounds times, in turn; the best time and the highest peak RSS are kept (the
machine may be busy).

Targets (`dev.py bench` rows): the report takes at most 2x a cold stats of the same
log; its peak RSS is at most 100 MB.

Usage: python benchmarks/bench_report.py [--entries N] [--file PATH] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import Row, emit

from betty_otel.query.summary import summary_path

RSS_GOAL_MB = 100
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
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, the best kept")
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
        runs = [
            (measure(REPORT, str(log), str(out)), cold_stats(log))
            for _ in range(max(1, args.rounds))
        ]  # in turn: a busy spell of the machine slows both
        report = best([mine for mine, _ in runs])
        stats = best([theirs for _, theirs in runs])
        print(f"{'':<8}{'time s':>10}{'process s':>12}{'cpu s':>9}{'peak RSS MB':>14}")
        for name, (inner, wall, cpu, rss) in (("report", report), ("stats", stats)):
            print(f"{name:<8}{inner:>10.2f}{wall:>12.2f}{cpu:>9.2f}{rss:>14.0f}")
        print(f"page: {out.stat().st_size / 1e6:.2f} MB (self-contained, plotly.js inlined)")
        entries = f"{args.entries / 1e6:g}M entries" if args.file is None else log.name
        emit(
            Row(
                target=f"report vs cold stats, {entries}",
                ours=f"report {report[0]:.2f} s",
                baseline=f"cold stats {stats[0]:.2f} s",
                ratio=report[0] / stats[0],
                goal="<= 2.0",
            )
        )
        emit(
            Row(
                target=f"report peak RSS, {entries}",
                ours=f"{report[3]:.0f} MB",
                baseline=f"{RSS_GOAL_MB} MB",
                ratio=report[3] / RSS_GOAL_MB,
                goal="<= 1.0",
            )
        )


def cold_stats(log: Path) -> tuple[float, float, float, float]:
    """stats of log in a fresh process, with no summary beside the log to start from."""
    summary_path(log).unlink(missing_ok=True)
    return measure(STATS, str(log))


def best(found: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """The lowest times and the highest peak RSS of several runs."""
    times = [min(item[k] for item in found) for k in range(3)]
    return times[0], times[1], times[2], max(item[3] for item in found)


if __name__ == "__main__":
    main()
