"""Every foreign entry is readable: no value an entry holds stops a reader or an output format.

Entries as other tools may write them (any JSON value under any key, keys missing,
timestamps that are no time, that have no date in UTC or no offset, durations of every
type and size, shared timestamps, values nested deeper than orjson writes, elements of
the array that are no object) are written as JSON text, in the store's layout and in the
old tools' indent=2, then read by every reader in process and by every command and format
of the CLI. None may fail; each entry is shown (or sent) once, as well as it can be; the
CLI says on stderr what it made of odd values; a value that is not text shows and groups
by one rule everywhere (`value_text`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from betty_otel._entry import STATUSES, canonical_status, value_text
from betty_otel._replay import ATTR_NOTE, entry_to_span
from betty_otel._report import render_report
from betty_otel._report.collect import NO_SKILL, TOP
from betty_otel._report.figures import summarize
from betty_otel._report.ingest import read_log
from betty_otel._store import check_file
from betty_otel.cli.render import entry_cells, number_cell
from betty_otel.query import iter_query, make_filters, query, stats, trace
from cli_helpers import run
from collector import RotelCollector
from helpers import make_entry

RESOURCE = Resource.create({})
SCOPE = InstrumentationScope("betty_otel")
OTLP_LAST = 2**64 - 1
TRACES = ("a" * 32, "b" * 32)
SHARED_TIME = "2025-10-24T14:30:45.123456+00:00"
NO_UTC_DATE = ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00")
"""Times whose UTC equivalent is outside datetime's range (the issue's examples)."""
EDGE_TIMES = (
    *("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00", "2025-10-24"),
    *("1969-07-20T20:17:40Z", "2600-01-01T00:00:00", "2025-10-24T14:30:45.123456+23:59"),
)
"""Readable times at the ends of datetime's and OTLP's ranges, a date, no offset."""


def nested(depth: int) -> Any:
    """A value depth levels deep (objects and arrays in turn): orjson writes 254 at most."""
    value: Any = "core"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=8,
)
_ANY = _VALUES | st.integers(255, 600).map(nested) | st.integers(2_000, 30_000).map("x".__mul__)
_OFFSETS = st.integers(-(24 * 3600 - 1), 24 * 3600 - 1).map(
    lambda s: timezone(timedelta(seconds=s))
)
_TIMES = (
    st.sampled_from([*NO_UTC_DATE, *EDGE_TIMES, SHARED_TIME, SHARED_TIME])
    | st.datetimes(timezones=st.none() | _OFFSETS).map(datetime.isoformat)
    | _ANY
)
_DURATIONS = st.sampled_from([0, -1, 1e308, -1e308, 2**64 - 1, True, "12", None]) | _ANY
_SPAN_IDS = st.sampled_from(["1" * 16, "2" * 16, "3" * 16])
_FIELDS = {
    "timestamp": _TIMES,
    "skill": st.sampled_from(["api.validate", "step"]) | _ANY,
    "status": st.sampled_from([*STATUSES, "failed", "Failed", "ok"]) | _ANY,
    "duration_ms": _DURATIONS,
    "caller": st.just("CLI") | _ANY,
    "inputs": _ANY,
    "error_message": _ANY,
    "metadata": _ANY,
    "trace_id": st.sampled_from(TRACES) | _ANY,
    "span_id": _SPAN_IDS | _ANY,
    "parent_span_id": _SPAN_IDS | _ANY,
    "error": _ANY,
    "exit_code": _ANY,
}
_FOREIGN = st.fixed_dictionaries({}, optional=_FIELDS) | st.dictionaries(_TEXT, _ANY, max_size=4)
_VALID = st.integers(0, 10_000).map(
    lambda n: make_entry(n, trace_id=TRACES[n % 2], **({"timestamp": SHARED_TIME} if n % 3 else {}))
)
ELEMENTS = st.lists(_FOREIGN | _VALID | _ANY, max_size=40)
"""Arrays of foreign entries, valid ones and elements that are no object."""


def write_log(path: Path, elements: list[Any], indent: bool) -> Path:
    """elements as a JSON array: the old tools' indent=2, or one compact entry per line."""
    if indent:
        path.write_text(json.dumps(elements, indent=2), encoding="utf-8")
    else:
        lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in elements]
        path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    return path


def objects(elements: list[Any]) -> list[dict[str, Any]]:
    return [element for element in elements if isinstance(element, dict)]


def signature(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True)


def seconds(entry: dict[str, Any]) -> float | None:
    """The entry's time in epoch seconds, by the documented rule; None when it has none."""
    stamp = entry.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp[-1:] in "zZ" else stamp)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    return moment.timestamp()


def group_key(by: str, value: Any) -> str | None:
    """The group of a value, by the one rule: missing is None, else its `value_text`."""
    if value is None:
        return None
    key = value_text(value)
    return canonical_status(key) if by == "status" else key


def nodes(roots: list[Any]) -> Iterator[Any]:
    for root in roots:
        for _, node in root.walk():
            yield node


def check_query(path: Path, entries: list[dict[str, Any]]) -> None:
    """Every entry once, newest first; entries without a readable time last."""
    found = query(path)
    assert Counter(map(signature, found)) == Counter(map(signature, entries))
    assert Counter(map(signature, iter_query(path))) == Counter(map(signature, entries))
    times = [seconds(entry) for entry in found]
    timed = [moment for moment in times if moment is not None]
    assert times[: len(timed)] == timed
    assert timed == sorted(timed, reverse=True)
    for row in map(entry_cells, found):
        assert len(row) == 6
        assert all(isinstance(cell, str) for cell in row)


def check_stats(path: Path, entries: list[dict[str, Any]]) -> None:
    """Groups named by the one rule, counted exactly, the same again from the summary."""
    for by in ("skill", "caller", "status"):
        expected = Counter(group_key(by, entry.get(by)) for entry in entries)
        first = stats(path, by=by)
        assert {key: group.count for key, group in first.items()} == expected
        assert stats(path, by=by) == first
    stats(path, since="0001-01-02T00:00:00+00:00", min_duration_ms=0, status="failure")


def check_report(path: Path, entries: list[dict[str, Any]]) -> None:
    """Every entry counted; skills named by the one rule; the page renders."""
    data = summarize(read_log(path, make_filters()))
    assert (data.health.entries, data.matched) == (len(entries), len(entries))
    skills = Counter(
        NO_SKILL if e.get("skill") is None else value_text(e["skill"]) for e in entries
    )
    assert {row.skill: row.count for row in data.skills} == skills
    assert data.health.untimed == sum(seconds(entry) is None for entry in entries)
    bounds = make_filters(
        since="0001-01-01T00:00:00+00:00", until="9999-12-31T23:59:59.999999+00:00", caller="CLI"
    )
    assert render_report(path, filters=bounds).endswith("</html>\n")


def check_export(entries: list[dict[str, Any]]) -> None:
    """A span for every entry with a time, within OTLP's range, encodable as OTLP."""
    spans = []
    for entry in entries:
        span = entry_to_span(entry, RESOURCE, SCOPE, otlp=True)
        moment = seconds(entry)
        assert (span is None) == (moment is None)
        if span is None or moment is None:
            continue
        assert span.start_time is not None
        assert span.end_time is not None
        assert 0 <= span.start_time <= span.end_time <= OTLP_LAST
        moved = not 0 <= moment < OTLP_LAST / 1e9
        assert (ATTR_NOTE in (span.attributes or {})) == moved
        spans.append(span)
    encode_spans(spans).SerializeToString()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(elements=ELEMENTS, indent=st.booleans())
def test_every_reader_reads_any_entries(
    tmp_path_factory: pytest.TempPathFactory, elements: list[Any], indent: bool
) -> None:
    path = write_log(tmp_path_factory.mktemp("log") / "telemetry.json", elements, indent)
    entries = objects(elements)
    check_query(path, entries)
    query(path, limit=3, status="failure", since="1970-01-01T00:00:00Z")
    check_stats(path, entries)
    for trace_id in TRACES:
        found = list(nodes(trace(trace_id, path)))
        assert len(found) == sum(entry.get("trace_id") == trace_id for entry in entries)
    check_report(path, entries)
    check_export(entries)
    report = check_file(path)
    assert (report.entries, report.not_objects) == (len(entries), len(elements) - len(entries))
    assert report.ok


def run_ok(*args: str) -> tuple[str, str]:
    """Run a reading command: it must succeed without an error line; (stdout, stderr)."""
    result = run(*args)
    assert result.returncode == 0, (args, result.stderr)
    assert "Error:" not in result.stderr, result.stderr
    return result.stdout, result.stderr


def check_cli(path: Path, entries: list[dict[str, Any]]) -> None:
    file = ("--file", str(path))
    shown, _ = run_ok("query", "--limit", "all", "--format", "json", *file)
    assert len(orjson.loads(shown)) == len(entries)
    lines, _ = run_ok("query", "--limit", "all", "--format", "jsonl", *file)
    assert len(lines.splitlines()) == len(entries)
    _, notes = run_ok("query", "--format", "table", *file)
    if any(seconds(entry) is None for entry in entries):
        assert "without a readable timestamp" in notes
    run_ok("query", "--format", "table", "--status", "failure", "--since", "30000d", *file)
    tail, _ = run_ok("tail", "-n", "1000", "--format", "jsonl", *file)
    assert tail.splitlines() == lines.splitlines()[::-1]
    run_ok("tail", "-n", "5", "--format", "table", *file)
    for by in ("skill", "caller", "status"):
        counted, _ = run_ok("stats", "--by", by, "--format", "json", *file)
        assert sum(group["count"] for group in orjson.loads(counted)) == len(entries)
        run_ok("stats", "--by", by, "--format", "table", *file)
    for trace_id in TRACES:
        if any(entry.get("trace_id") == trace_id for entry in entries):
            run_ok("trace", trace_id, "--format", "json", *file)
            run_ok("trace", trace_id, *file)
    run_ok("report", "-o", str(path.with_name("report.html")), *file)
    checked, _ = run_ok("check", *file)
    assert f"{len(entries):,} entries, OK" in checked


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(elements=st.lists(_FOREIGN | _VALID | _ANY, min_size=20, max_size=60), indent=st.booleans())
def test_every_command_and_format_reads_any_entries(
    tmp_path_factory: pytest.TempPathFactory, elements: list[Any], indent: bool
) -> None:
    path = write_log(tmp_path_factory.mktemp("cli") / "telemetry.json", elements, indent)
    check_cli(path, objects(elements))


def test_times_with_no_date_in_utc_are_shown_as_written_with_a_note(tmp_path: Path) -> None:
    """The issue's example: year 1 at +05:00 and year 9999 at -05:00 stopped the table,
    the report and export with "date value out of range"."""
    entries = [make_entry(n, timestamp=stamp) for n, stamp in enumerate(NO_UTC_DATE)]
    path = write_log(tmp_path / "telemetry.json", [*entries, make_entry(7)], indent=False)
    table, notes = run_ok("query", "--format", "table", "--file", str(path))
    rows = table.splitlines()[2:]
    assert rows[0].startswith("2025-10-24 14:00:07")
    assert {row.split()[0] for row in rows[1:]} == set(NO_UTC_DATE)
    assert "note: 2 entries without a readable timestamp" in notes
    run_ok("report", "--file", str(path), "-o", str(tmp_path / "r.html"))
    assert [entry_to_span(entry, RESOURCE, SCOPE, otlp=True) for entry in entries] == [None] * 2


def test_failures_sharing_a_timestamp_do_not_stop_the_report(tmp_path: Path) -> None:
    """Parsed entries and canonical lines tie on time: the report's lists never compare them
    (it failed with "'<' not supported between instances of 'bytes' and 'dict'")."""
    failed = {"timestamp": SHARED_TIME, "status": "failure", "error_message": "boom"}
    write_log(tmp_path / "telemetry.json.1", [make_entry(0, **failed)], indent=True)
    elements = [make_entry(n, **failed) for n in range(1, 3 * TOP)]
    path = write_log(tmp_path / "telemetry.json", elements, indent=False)
    data = summarize(read_log(path, make_filters()))
    assert len(data.failures) == TOP
    assert all(entry["timestamp"] == SHARED_TIME for entry in data.failures)
    run_ok("report", "--file", str(path), "-o", str(tmp_path / "r.html"))


def test_a_foreign_value_shows_and_groups_the_same_in_stats_the_cli_and_the_report(
    tmp_path: Path,
) -> None:
    """A skill that is an object is named by its JSON with sorted keys, everywhere."""
    skills: list[Any] = [
        {"b": 1, "a": [2, {"d": 0, "c": None}]},
        {"a": [2, {"c": None, "d": 0}], "b": 1},
    ]
    path = write_log(
        tmp_path / "telemetry.json",
        [make_entry(n, skill=skill) for n, skill in enumerate(skills)],
        indent=False,
    )
    name = '{"a":[2,{"c":null,"d":0}],"b":1}'
    assert list(stats(path)) == [name]
    assert stats(path)[name].count == 2
    grouped, _ = run_ok("stats", "--format", "json", "--file", str(path))
    assert [group["key"] for group in orjson.loads(grouped)] == [name]
    table, notes = run_ok("query", "--format", "table", "--file", str(path))
    assert [row.split()[2] for row in table.splitlines()[2:]] == [name, name]
    assert "2 entries whose skill, status or caller is not text: shown as JSON" in notes
    assert [row.skill for row in summarize(read_log(path, make_filters())).skills] == [name]


def test_values_nested_deeper_than_orjson_writes_are_printed_whole(tmp_path: Path) -> None:
    deep = nested(600)
    entry = make_entry(1, inputs=deep, caller=deep, trace_id=TRACES[0])
    path = write_log(tmp_path / "telemetry.json", [entry], indent=True)
    for args in (("query", "--format", "json"), ("trace", TRACES[0], "--format", "json")):
        shown, _ = run_ok(*args, "--file", str(path))
        assert shown.count('"core"') == 2
    line, _ = run_ok("tail", "--format", "jsonl", "--file", str(path))
    assert signature(orjson.loads(line)) == signature(entry)
    assert value_text(deep).count("[") == 300


def test_huge_numbers_are_shown_short() -> None:
    assert number_cell(1e308) == "1.000e+308"
    assert number_cell(-(2**64)) == "-1.845e+19"
    assert number_cell(1234.5) == "1,234.5"


def test_a_time_filter_with_no_date_in_utc_is_refused_plainly(tmp_path: Path) -> None:
    path = write_log(tmp_path / "telemetry.json", [make_entry(1)], indent=False)
    for bound in NO_UTC_DATE:
        with pytest.raises(ValueError, match="no date in UTC"):
            make_filters(since=bound)
        result = run("report", "--since", bound, "--file", str(path), "-o", str(tmp_path / "r"))
        assert result.returncode in (1, 2)
        assert "no date in UTC" in result.stderr


def test_check_counts_elements_that_are_no_object_apart_from_entries(tmp_path: Path) -> None:
    path = write_log(tmp_path / "telemetry.json", [make_entry(1), 3, [1], "x", None], indent=True)
    checked, _ = run_ok("check", "--file", str(path))
    assert "1 entries, OK" in checked
    assert "note: 4 elements of the array are not JSON objects" in checked
    report = check_file(path)
    assert (report.entries, report.not_objects, report.ok) == (1, 4, True)


@pytest.mark.collector
def test_export_sends_every_entry_with_a_time_and_notes_what_it_moved(
    tmp_path: Path, rotel_collector: RotelCollector
) -> None:
    """One batch of odd entries reaches a real collector: times before 1970 or after 2554 at
    the nearest time OTLP carries (with betty.note), entries without a time counted."""
    moved = ["1969-07-20T20:17:40+00:00", "0001-01-01T00:00:00+00:00", "2600-01-01T00:00:00Z"]
    odd = [make_entry(n, timestamp=stamp, skill=f"moved{n}") for n, stamp in enumerate(moved)] + [
        make_entry(10, timestamp=NO_UTC_DATE[0]),
        make_entry(11, timestamp=None),
        make_entry(12, skill={"b": 1}, duration_ms=1e308, caller=nested(600), exit_code=2**64 - 1),
        make_entry(13, skill="long", inputs={"text": "x" * 100_000}, status=["failure"]),
        make_entry(14, span_id="1" * 16, parent_span_id="1" * 16, duration_ms=-5),
    ]
    path = write_log(tmp_path / "telemetry.json", [*odd, 42], indent=True)
    result = run(
        "export", "--otlp", "--endpoint", rotel_collector.http_endpoint, "--file", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Exported 6 spans")
    assert "2 entries without a readable timestamp skipped" in result.stdout
    assert "3 entries with a time outside what OTLP carries" in result.stdout
    spans = {span.name: span for span in rotel_collector.spans(expect=6)}
    assert set(spans) == {"moved0", "moved1", "moved2", '{"b":1}', "long", "workflow.step0"}
    assert spans["moved0"].end_time_ns == spans["moved1"].end_time_ns == 0
    assert spans["moved2"].end_time_ns == OTLP_LAST
    for name in ("moved0", "moved1", "moved2"):
        assert ATTR_NOTE in spans[name].attributes
        assert spans[name].attributes["betty.timestamp"] == moved[int(name[-1])]
    assert ATTR_NOTE not in spans["long"].attributes


@pytest.mark.collector
def test_export_splits_what_a_collector_would_refuse_as_one_request(
    tmp_path: Path, rotel_collector: RotelCollector
) -> None:
    """Over gRPC a collector takes requests of 4 MiB at most: a batch of large entries (and
    one skill of 5 MB, sent cut with the sanitizer's marker) is sent in several requests."""
    big = [make_entry(n, inputs={"text": "é" * 60_000}) for n in range(70)]
    huge = make_entry(70, skill="s" * 5_000_000)
    path = write_log(tmp_path / "telemetry.json", [*big, huge], indent=False)
    endpoint = rotel_collector.grpc_endpoint
    args = ("--protocol", "grpc", "--endpoint", endpoint, "--file", str(path))
    result = run("export", "--otlp", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Exported 71 spans")
    spans = rotel_collector.spans(expect=71, timeout=60)
    assert len(spans) == 71
    (cut,) = (span for span in spans if span.name.startswith("sss"))
    assert cut.name.endswith("...<truncated 4934464 chars>")
    assert cut.attributes["betty.skill"] == cut.name
