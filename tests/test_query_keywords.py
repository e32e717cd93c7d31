"""The readers' keywords: one filter list (`FilterArgs`), ignore_case, and telemetry_file.

Every reading function (query, iter_query, stats, report, TelemetryCapture.query and
.stats) takes the same filter keywords, checked in one place; the log is
``telemetry_file`` everywhere (the original skill's name), ``path`` still working
with a DeprecationWarning.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import TelemetryCapture
from betty_otel.query import (
    FilterArgs,
    FilterOptions,
    iter_query,
    make_filters,
    query,
    stats,
    trace,
)
from cli_helpers import write
from helpers import indent2, make_entry

SAMPLE: dict[str, Any] = {
    "skill": "docs.validate",
    "status": "failure",
    "caller": "CLI",
    "since": "2025-01-01T00:00:00+00:00",
    "until": "2099-01-01T00:00:00+00:00",
    "trace_id": f"{1:032x}",
    "min_duration_ms": 10,
    "ignore_case": True,
}
"""A value for every filter keyword: the test below fails when a filter is added without one."""

_MATCH: dict[str, Any] = {
    "skill": "docs.validate",
    "status": "failure",
    "caller": "CLI",
    "trace_id": f"{1:032x}",
}
SELECTIVE_LOG = [
    make_entry(1, **_MATCH),
    make_entry(2, **{**_MATCH, "caller": "cli"}),
    make_entry(3, **{**_MATCH, "skill": "docs.publish"}),
    make_entry(4, **{**_MATCH, "status": "success"}),
    make_entry(5, **{**_MATCH, "caller": "api"}),
    make_entry(6, **_MATCH, timestamp="2024-12-31T23:59:59.000000+00:00"),
    make_entry(7, **_MATCH, timestamp="2099-06-01T00:00:00.000000+00:00"),
    make_entry(8, **{**_MATCH, "trace_id": f"{2:032x}"}),
    make_entry(9, **_MATCH, duration_ms=5.0),
]
"""Entry 1 passes every SAMPLE filter, entry 2 only with ignore_case; each other entry
fails exactly one filter: the one LEFT_OUT names."""
LEFT_OUT: dict[str, set[int]] = {
    "skill": {3},
    "status": {4},
    "caller": {2, 5},
    "since": {6},
    "until": {7},
    "trace_id": {8},
    "min_duration_ms": {9},
    "ignore_case": set(),
}
"""The SELECTIVE_LOG entries (by number) that each SAMPLE keyword, given alone, leaves out."""


def test_sample_covers_every_filter() -> None:
    assert set(SAMPLE) == set(FilterArgs.__annotations__)
    assert set(FilterOptions.__annotations__) == set(SAMPLE) - {"skill", "status", "caller"}


def _report_count(log: Path, out: Path, **filter_args: Any) -> int:
    """The executions the report's per-skill table counts."""
    page = betty_otel.report(log, out, **filter_args).read_text(encoding="utf-8")
    table = page[page.index('<section id="skills">') :]
    table = table[: table.index("</tbody>")]
    counts = re.findall(r'<tr><td class="text">[^<]*</td><td class="num">([\d,]+)</td>', table)
    return sum(int(count.replace(",", "")) for count in counts)


def readers(tmp_path: Path) -> dict[str, Callable[..., int]]:
    """Each reading function, called on the log with filter keywords: how many it selects."""
    log = tmp_path / "telemetry.json"
    out = tmp_path / "report.html"
    return {
        "query": lambda **kw: len(query(log, **kw)),
        "iter_query": lambda **kw: len(list(iter_query(log, **kw))),
        "stats": lambda **kw: sum(group.count for group in stats(log, **kw).values()),
        "report": lambda **kw: _report_count(log, out, **kw),
        "TelemetryCapture.stats": lambda **kw: sum(
            group.count for group in TelemetryCapture(log).stats(**kw).values()
        ),
    }


@pytest.mark.parametrize(
    "name", ["query", "iter_query", "stats", "report", "TelemetryCapture.stats"]
)
def test_every_reader_takes_every_filter_keyword(tmp_path: Path, name: str) -> None:
    """Each keyword alone leaves out exactly the entries that fail it; all together select
    the entry that passes them all and the one that passes them with ignore_case."""
    write(tmp_path / "telemetry.json", SELECTIVE_LOG)
    call = readers(tmp_path)[name]
    assert call() == len(SELECTIVE_LOG)
    for key, value in SAMPLE.items():
        assert call(**{key: value}) == len(SELECTIVE_LOG) - len(LEFT_OUT[key]), key
    assert call(**SAMPLE) == 2
    assert call(**{**SAMPLE, "ignore_case": False}) == 1


def test_capture_query_keeps_its_positional_arguments_and_takes_the_other_filters(
    tmp_path: Path,
) -> None:
    """The original skill's query(skill, status, caller, limit); the rest by keyword."""
    log = write(tmp_path / "telemetry.json", [make_entry(n, caller="cli") for n in range(6)])
    capture = TelemetryCapture(log)
    assert len(capture.query("workflow.step0", "failure", "cli", 1)) == 1
    options = {key: value for key, value in SAMPLE.items() if key in FilterOptions.__annotations__}
    for key, value in options.items():
        capture.query(**{key: value})
    assert len(capture.query(caller="CLI", ignore_case=True)) == 6
    assert capture.query(caller="CLI") == []


@pytest.mark.parametrize(
    "name", ["query", "iter_query", "stats", "report", "TelemetryCapture.stats"]
)
def test_an_unknown_filter_is_a_type_error_listing_the_filters(tmp_path: Path, name: str) -> None:
    call = readers(tmp_path)[name]
    with pytest.raises(TypeError, match="unknown filter 'skil'; the filters are: caller, "):
        call(skil="docs.validate")
    with pytest.raises(TypeError, match="not both"):
        call(filters=make_filters(skill="x"), caller="CLI")
    with pytest.raises(TypeError, match="ignore_case must be True or False"):
        call(ignore_case="yes")
    assert not (tmp_path / "report.html").exists()


# ---------------------------------------------------------------------------
# ignore_case
# ---------------------------------------------------------------------------

MIXED = [
    make_entry(1, caller="cli", skill="docs.validate", status="success"),
    make_entry(2, caller="CLI", skill="Docs.Validate", status="Failed"),
    make_entry(3, caller="Cli", skill="docs.validate", status="Weird"),
    make_entry(4, caller="api", skill="DOCS.VALIDATE", status="weird"),
    make_entry(5, caller="STRASSE", skill="ǅemal", status="FAILED"),
    make_entry(6, caller=None, skill=7, status=None),
    make_entry(7, caller="other", trace_id="abcdef" + "0" * 26),
]


def _numbers(entries: list[dict[str, Any]]) -> list[int]:
    return sorted(entry["inputs"]["n"] for entry in entries)


def _casefold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


@pytest.mark.parametrize("layout", ["canonical", "indent2"])
@pytest.mark.parametrize(
    ("key", "wanted"),
    [
        ("caller", "CLI"),
        ("caller", "straße"),
        ("skill", "docs.validate"),
        ("skill", "ǆemal"),
        ("status", "WEIRD"),
    ],
)
def test_ignore_case_selects_what_casefolded_equality_selects(
    tmp_path: Path, layout: str, key: str, wanted: str
) -> None:
    """query, iter_query, stats and the stats fast path agree with a plain casefold comparison."""
    path = tmp_path / "telemetry.json"
    if layout == "canonical":
        write(path, MIXED)
    else:
        path.write_bytes(indent2(MIXED))
    expected = [
        entry["inputs"]["n"] for entry in MIXED if _casefold(entry[key]) == wanted.casefold()
    ]
    assert expected  # the case is not vacuous
    given: dict[str, Any] = {key: wanted}
    assert _numbers(query(path, ignore_case=True, **given)) == expected
    assert _numbers(list(iter_query(path, ignore_case=True, **given))) == expected
    total = stats(path, ignore_case=True, **given)
    assert sum(group.count for group in total.values()) == len(expected)
    exact = [entry["inputs"]["n"] for entry in MIXED if entry[key] == wanted]
    assert _numbers(query(path, **given)) == exact


def test_ignore_case_keeps_canonical_statuses_and_exact_trace_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "telemetry.json", MIXED)
    assert _numbers(query(path, status="failure")) == [2, 5]  # Failed, FAILED: synonyms anyway
    assert _numbers(query(path, status="FAILURE", ignore_case=True)) == [2, 5]
    assert _numbers(query(path, status="weird")) == [4]  # an unknown word matches itself only
    assert _numbers(query(path, status="weird", ignore_case=True)) == [3, 4]
    upper = "ABCDEF" + "0" * 26
    assert query(path, trace_id=upper, ignore_case=True) == []  # ids compare exactly
    assert _numbers(query(path, trace_id=upper.lower())) == [7]


def test_stats_groups_stay_as_written(tmp_path: Path) -> None:
    path = write(tmp_path / "telemetry.json", MIXED)
    result = stats(path, by="caller", caller="cli", ignore_case=True)
    assert {key: group.count for key, group in result.items()} == {"cli": 1, "CLI": 1, "Cli": 1}


# ---------------------------------------------------------------------------
# telemetry_file: one keyword for the log
# ---------------------------------------------------------------------------


def test_telemetry_file_is_the_keyword_of_every_reader(tmp_path: Path) -> None:
    log = write(tmp_path / "telemetry.json", [make_entry(n) for n in range(3)])
    newest = query(log)
    assert query(telemetry_file=log) == newest
    assert list(iter_query(telemetry_file=log)) == newest
    assert stats(telemetry_file=log) == stats(log)
    trace_id = newest[0]["trace_id"]
    assert trace(trace_id, telemetry_file=log)[0].entry == newest[0]
    out = betty_otel.report(telemetry_file=log, output=tmp_path / "r.html")
    assert out.exists()
    capture = TelemetryCapture(telemetry_file=log)
    assert capture.query() == newest
    assert capture.path == log


@pytest.mark.parametrize("name", ["query", "iter_query", "stats", "trace", "report"])
def test_path_still_works_with_a_deprecation_warning_at_the_callers_line(
    tmp_path: Path, name: str
) -> None:
    log = write(tmp_path / "telemetry.json", [make_entry(1)])
    calls: dict[str, Callable[..., Any]] = {
        "query": query,
        "iter_query": lambda **kw: list(iter_query(**kw)),
        "stats": stats,
        "trace": lambda **kw: [node.entry for node in trace(f"{2:032x}", **kw)],
        "report": lambda **kw: betty_otel.report(output=tmp_path / "r.html", **kw),
    }
    call = calls[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = call(path=log)
    (warning,) = caught
    assert warning.category is DeprecationWarning
    assert "use telemetry_file=" in str(warning.message)
    assert warning.filename == __file__  # points at the caller, not at betty_otel
    if name != "report":
        assert old == call(telemetry_file=log)
    with pytest.raises(TypeError, match="not both"):
        call(telemetry_file=log, path=log)


def test_the_original_skills_keyword_and_positional_paths_keep_working(tmp_path: Path) -> None:
    """TelemetryCapture(telemetry_file=...) from telemetry.capture.md, and positional paths."""
    log = tmp_path / "custom" / "telemetry.json"
    capture = TelemetryCapture(telemetry_file=str(log))
    entry = capture.capture(skill="plugin.build", status="success", duration_ms=320.5, caller="CLI")
    assert capture.query(status="success", limit=10) == [entry]
    assert query(str(log)) == [entry]
    assert trace(entry["trace_id"], log)[0].entry == entry
    assert json.loads(log.read_text(encoding="utf-8")) == [entry]
