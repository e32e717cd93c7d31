"""`betty-telemetry report` / `betty_otel.report` without a browser: what the page holds.

The figures are read back from the page's JSON, so these tests pin what is drawn:
the same entries as `query` selects (filters, legacy layouts, rotated files, odd
timestamps), a time bucket that fits the data's span, the log's health, and the
command's behaviour (missing extra, progress, never writing over the log).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel.query import iter_query
from cli_helpers import LEGACY_FILE, run, run_on_terminal, write
from helpers import FIGURE_SCRIPT, canonical, indent2, make_entry
from helpers import page_figures as figures


def drawn(page: str) -> int:
    """Executions the timeline shows."""
    return sum(sum(trace["y"]) for trace in figures(page)["chart-timeline"]["data"])


def health_cell(page: str, label: str) -> str:
    found = re.search(rf"<td class=\"\">{re.escape(label)}</td><td class=\"num\">(.*?)</td>", page)
    assert found, label
    return re.sub(r"<[^>]+>", "", found.group(1))


def python(code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (its own sys.modules); stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=check
    )


def _entries(start: datetime, count: int, step: timedelta, **extra: Any) -> list[dict[str, Any]]:
    return [
        make_entry(
            number,
            timestamp=(start + step * number).isoformat(timespec="microseconds"),
            **extra,
        )
        for number in range(count)
    ]


def _mixed_log(tmp_path: Path) -> Path:
    """A log every reading path meets: canonical lines, the old indent=2 layout, a
    rotated backup, odd timestamps, escapes, durations that are not numbers."""
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    log = tmp_path / "telemetry.json"
    rotated = _entries(start, 40, timedelta(minutes=7), caller="API")
    log.with_name("telemetry.json.1").write_bytes(indent2(rotated))
    current = _entries(start + timedelta(hours=5), 300, timedelta(minutes=3))
    current[3]["timestamp"] = "2025-03-01T12:00:00.5+02:00"  # not the store's UTC layout
    current[4]["timestamp"] = "yesterday"
    current[5]["skill"] = 'quote " and \\ back\nslash'
    current[6]["duration_ms"] = None
    current[7]["duration_ms"] = True
    current[8]["status"] = "Failed"
    current[9]["caller"] = "API"
    log.write_bytes(canonical(current))
    return log


FILTERS: list[dict[str, Any]] = [
    {},
    {"skill": "workflow.step3"},
    {"status": ["failure", "Failed"]},
    {"caller": "API"},
    {"since": "2025-03-01T08:00:00+00:00", "until": "2025-03-01T12:00:00+00:00"},
    {"min_duration_ms": 200},
    {"trace_id": [f"{n + 1:032x}" for n in (10, 11, 12)]},
]


@pytest.mark.parametrize("chosen", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_report_draws_exactly_the_entries_query_selects(
    tmp_path: Path, chosen: dict[str, Any]
) -> None:
    log = _mixed_log(tmp_path)
    out = betty_otel.report(log, tmp_path / "r.html", **chosen)
    page = out.read_text(encoding="utf-8")
    selected = list(iter_query(log, **chosen))
    timed = [e for e in selected if e["timestamp"] != "yesterday"]
    assert drawn(page) == len(timed)
    assert health_cell(page, "selected by the filters") == f"{len(selected):,}"
    assert health_cell(page, "entries") == f"{len(list(iter_query(log))):,}"


def test_health_counts_damage_and_legacy_entries(tmp_path: Path) -> None:
    log = tmp_path / "telemetry.json"
    entries = [make_entry(n) for n in range(5)]
    text = canonical(entries).replace(b"\n{", b"\n#garbage#\n{", 1)
    log.write_bytes(text)
    result = run("report", "--file", str(log), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stderr  # logged, as every reader does
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert health_cell(page, "damaged regions (skipped)") == "1"
    assert health_cell(page, "entries") == "5"
    legacy = (tmp_path / "r2.html").as_posix()
    assert run("report", "--file", str(LEGACY_FILE), "-o", legacy).returncode == 0
    assert (
        health_cell(Path(legacy).read_text(encoding="utf-8"), "legacy entries (old Betty tools)")
        == "225"
    )


@pytest.mark.parametrize(
    ("span", "unit"),
    [
        (timedelta(minutes=90), "minute"),
        (timedelta(hours=20), "15 minutes"),
        (timedelta(days=4), "hour"),
        (timedelta(days=60), "day"),
        (timedelta(days=400), "week"),
        (timedelta(days=3000), "month"),
    ],
)
def test_time_bucket_fits_the_span_of_the_data(tmp_path: Path, span: timedelta, unit: str) -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    log = write(tmp_path / "telemetry.json", _entries(start, 200, span / 199))
    page = betty_otel.report(log, tmp_path / "r.html").read_text(encoding="utf-8")
    timeline = figures(page)["chart-timeline"]
    assert timeline["layout"]["title"]["text"].startswith(f"Executions per {unit},")
    assert sum(len(trace["x"]) for trace in timeline["data"]) <= 2 * 130
    assert drawn(page) == 200


def test_missing_plotly_exits_1_and_says_how_to_install_it(tmp_path: Path) -> None:
    log = write(tmp_path / "telemetry.json", [make_entry(1)])
    code = (
        "import sys; sys.modules['plotly'] = None\n"
        "from betty_otel.cli import main\n"
        f"sys.exit(main(['report', '--file', {str(log)!r}, '-o', {str(tmp_path / 'r.html')!r}]))"
    )
    result = python(code, check=False)
    assert result.returncode == 1
    assert "pip install 'betty-otel[report]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_missing_plotly_raises_import_error_in_python(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['plotly'] = None\n"
        "import betty_otel\n"
        "try:\n"
        f"    betty_otel.report({str(tmp_path / 'none.json')!r}, {str(tmp_path / 'r.html')!r})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = python(code)
    assert "pip install 'betty-otel[report]'" in result.stdout


def test_report_never_writes_over_the_log(tmp_path: Path) -> None:
    log = write(tmp_path / "telemetry.json", [make_entry(n) for n in range(3)])
    before = log.read_bytes()
    for target in (log, tmp_path / "." / "telemetry.json"):
        result = run("report", "--file", str(log), "-o", str(target))
        assert result.returncode == 1
        assert "overwrite the telemetry log" in result.stderr
    link = tmp_path / "link.html"
    link.symlink_to(log)
    assert run("report", "--file", str(log), "-o", str(link)).returncode == 1
    assert log.read_bytes() == before


def test_progress_only_when_stderr_is_a_terminal(tmp_path: Path) -> None:
    log = write(tmp_path / "telemetry.json", [make_entry(n) for n in range(50)])
    piped = run("report", "--file", str(log), "-o", str(tmp_path / "a.html"))
    assert piped.returncode == 0
    assert "reading the log" not in piped.stderr
    assert piped.stdout == ""
    code, shown = run_on_terminal("report", "--file", str(log), "-o", str(tmp_path / "b.html"))
    assert code == 0
    assert b"reading the log" in shown


def test_report_command_loads_neither_the_sdk_nor_wrapt(tmp_path: Path) -> None:
    log = write(tmp_path / "telemetry.json", [make_entry(1)])
    code = (
        "import json, sys\n"
        "from betty_otel.cli import main\n"
        f"main(['report', '--file', {str(log)!r}, '-o', {str(tmp_path / 'r.html')!r}])\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] == 'wrapt'"
        " or m.startswith('opentelemetry.sdk')]))"
    )
    result = python(code)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_report_of_a_missing_file_is_an_empty_page(tmp_path: Path) -> None:
    out = betty_otel.report(tmp_path / "nothing.json", tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert health_cell(page, "entries") == "0"
    assert "chart-timeline" not in figures(page)


def test_figure_json_cannot_close_its_script_element(tmp_path: Path) -> None:
    skill = "</script><!--<script>"
    log = write(tmp_path / "telemetry.json", [make_entry(1, skill=skill)])
    page = betty_otel.report(log, tmp_path / "r.html").read_text(encoding="utf-8")
    for body in (body for _, body in FIGURE_SCRIPT.findall(page)):
        assert "<" not in body
        assert ">" not in body
    names = [t["name"] for t in figures(page)["chart-trends"]["data"]]
    assert names[0] == "&lt;/script&gt;&lt;!--&lt;script&gt;"  # plotly shows it as typed
