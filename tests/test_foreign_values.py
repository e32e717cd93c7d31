"""Every value ``json.load`` reads is an entry: the log's contract is "readable by json.load".

NaN, Infinity and -Infinity (what ``json.dump`` writes by default), numbers beyond a double
(``1e400``, ``10**400``) and lone surrogates (``"\\ud800"``, in a
value or a key) are entries to every reader, never damage; placed last in the log they never
make a writer move the log aside. Filters select by the text readers group by, ``trace``
reads any foreign id, and what the report or an export carries of a text is bounded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

import betty_otel
from betty_otel import _setup, capture_telemetry
from betty_otel._jsontext import loads
from betty_otel._leaves import MAX_TEXT, truncation_suffix
from betty_otel._report import render_report
from betty_otel._store import check_file, iter_entries
from betty_otel.query import make_filters, query, stats, trace
from cli_helpers import run
from helpers import append_entries, load_strict, make_entry

# Values json.load reads that strict JSON (and orjson) does not, as (name, JSON text).
FOREIGN: list[tuple[str, str]] = [
    ("nan", "NaN"),
    ("infinity", "Infinity"),
    ("minus-infinity", "-Infinity"),
    ("overflowing-float", "1e400"),
    ("int-beyond-double", str(10**400)),
    ("lone-surrogate", '"\\ud800"'),
    ("low-surrogate", '"x\\udfff"'),
]
PLACES = ["duration_ms", "skill", "inputs", "key"]


def _entry_text(place: str, value: str) -> str:
    """An entry line holding value at place (a key: a lone surrogate as an inputs key)."""
    base = json.dumps(make_entry(1))[:-1]
    if place == "key":
        key = value if value.startswith('"') else f'"{value}"'
        return base + f', "inputs2": {{{key}: {value}}}}}'
    if place == "inputs":
        return base + f', "inputs3": {{"x": [{value}]}}}}'
    return json.dumps({k: v for k, v in make_entry(1).items() if k != place})[:-1] + (
        f', "{place}": {value}}}'
    )


def _same(left: Any, right: Any) -> bool:
    """Equal as values, NaN equal to itself (json.load's NaN is not)."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


@pytest.mark.parametrize(("name", "value"), FOREIGN, ids=[name for name, _ in FOREIGN])
def test_loads_reads_what_json_load_reads(name: str, value: str) -> None:
    assert _same(loads(value.encode()), json.loads(value))
    assert _same(loads(f"[{value}]"), json.loads(f"[{value}]"))


def test_loads_refuses_what_json_load_refuses() -> None:
    for bad in [b"[1,]", b"{", b"\xff", b"[" * 5000 + b"]" * 5000, b"nan", b"'x'"]:
        with pytest.raises(json.JSONDecodeError):
            loads(bad)


def test_an_integer_beyond_64_bits_parsed_by_json_is_exact() -> None:
    assert loads(str(10**400)) == 10**400
    assert loads(f"[{10**30}, NaN]")[0] == 10**30


@pytest.mark.parametrize("layout", ["canonical", "indent2"])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize(("name", "value"), FOREIGN, ids=[name for name, _ in FOREIGN])
def test_every_reader_reads_an_entry_json_load_reads(
    tmp_path: Path, name: str, value: str, place: str, layout: str
) -> None:
    """The entry comes back as json.load gives it; check finds no damage."""
    line = _entry_text(place, value)
    others = [json.dumps(make_entry(n)) for n in (2, 3)]
    if layout == "canonical":
        text = "[\n" + ",\n".join([others[0], line, others[1]]) + "\n]\n"
    else:
        text = json.dumps(json.loads("[" + ",".join([others[0], line, others[1]]) + "]"), indent=2)
    log = tmp_path / "telemetry.json"
    log.write_text(text, encoding="utf-8", errors="surrogatepass")
    expected = load_strict(log)
    found = list(iter_entries(log, newest_first=False))
    assert len(query(log, limit=None)) == 3
    assert _same(found, expected)
    report = check_file(log)
    assert report.ok, report.damage
    assert report.entries == 3
    assert sum(group.count for group in stats(log).values()) == 3


@pytest.mark.parametrize(("name", "value"), FOREIGN, ids=[name for name, _ in FOREIGN])
def test_cli_outputs_stay_valid_and_exit_zero(tmp_path: Path, name: str, value: str) -> None:
    log = tmp_path / "telemetry.json"
    text = "[\n" + ",\n".join([_entry_text(place, value) for place in PLACES]) + "\n]\n"
    log.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = run("query", "--file", str(log), "--format", "json", "--limit", "all")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in output"))
    assert len(shown) == len(PLACES)
    for args in (["query", "--format", "table"], ["stats"], ["tail"], ["check"]):
        result = run(*args, "--file", str(log))
        assert result.returncode == 0, (args, result.stderr)
        assert "damaged" not in result.stderr
    report = tmp_path / "r.html"
    assert run("report", "--file", str(log), "-o", str(report)).returncode == 0
    assert report.read_text(encoding="utf-8")


def _last_is_foreign(log: Path, value: str) -> int:
    """A canonical log whose last entry holds value; returns its number of entries."""
    head = [json.dumps(make_entry(n), separators=(",", ":")) for n in range(3)]
    log.write_text(
        "[\n" + ",\n".join([*head, f'{{"skill":"odd","duration_ms":{value}}}']) + "\n]\n",
        encoding="utf-8",
    )
    return 4


def _after_append(log: Path, before: int) -> None:
    """The log was appended to, never moved aside: json.load reads one more entry."""
    assert [p.name for p in log.parent.iterdir() if p.name.startswith(log.name + ".")] == []
    assert len(load_strict(log)) == before + 1


@pytest.mark.parametrize(("name", "value"), FOREIGN, ids=[name for name, _ in FOREIGN])
def test_an_api_append_after_a_foreign_last_entry_keeps_the_log(
    tmp_path: Path, name: str, value: str
) -> None:
    log = tmp_path / "telemetry.json"
    before = _last_is_foreign(log, value)
    append_entries(log, [make_entry(9)])
    _after_append(log, before)


@pytest.mark.parametrize(("name", "value"), FOREIGN, ids=[name for name, _ in FOREIGN])
def test_a_cli_capture_after_a_foreign_last_entry_keeps_the_log(
    tmp_path: Path, name: str, value: str
) -> None:
    log = tmp_path / "telemetry.json"
    before = _last_is_foreign(log, value)
    result = run("capture", "--file", str(log), "x", "success", "1", "CLI")
    assert result.returncode == 0, result.stderr
    assert "moved" not in result.stderr
    _after_append(log, before)


@capture_telemetry
def _recorded() -> int:
    return 1


@pytest.mark.parametrize(("name", "value"), FOREIGN[:5], ids=[name for name, _ in FOREIGN[:5]])
def test_a_batch_export_after_a_foreign_last_entry_keeps_the_log(
    tmp_path: Path, name: str, value: str
) -> None:
    log = tmp_path / "telemetry.json"
    before = _last_is_foreign(log, value)
    betty_otel.configure(log, batch=True, otlp=False)
    try:
        _recorded()
        assert _setup.current_pipeline().force_flush() is True
    finally:
        betty_otel.shutdown()
    _after_append(log, before)


@pytest.mark.parametrize("key", ["skill", "caller", "status"])
@pytest.mark.parametrize("value", [123, {"b": 1, "a": 2}, [1, "X"], 1.5, True])
def test_a_group_stats_shows_can_be_selected(
    tmp_path: Path, key: Literal["skill", "caller", "status"], value: Any
) -> None:
    log = tmp_path / "telemetry.json"
    log.write_text(json.dumps([make_entry(1, **{key: value}), make_entry(2)]), encoding="utf-8")
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"))  # as the README says
    assert shown in stats(log, by=key)
    given: dict[str, Any] = {key: shown}
    upper: dict[str, Any] = {key: shown.upper()}
    selected = make_filters(**given)
    folded = make_filters(ignore_case=True, **upper)
    assert [e[key] for e in query(log, filters=selected)] == [value]
    assert [e[key] for e in query(log, filters=folded)] == [value]
    assert sum(g.count for g in stats(log, by=key, filters=selected).values()) == 1
    result = run("query", "--file", str(log), f"--{key}", shown, "--format", "json")
    assert [e[key] for e in json.loads(result.stdout)] == [value]


@pytest.mark.parametrize("trace_id", [123, "g" * 32, "a" * 31, "ab" * 32, "x y"])
def test_trace_reads_any_foreign_trace_id(tmp_path: Path, trace_id: Any) -> None:
    log = tmp_path / "telemetry.json"
    entries = [make_entry(1, trace_id=trace_id), make_entry(2, trace_id=trace_id)]
    entries[1]["parent_span_id"] = entries[0]["span_id"]
    log.write_text(json.dumps(entries), encoding="utf-8")
    wanted = str(trace_id)
    assert len(query(log, trace_id=wanted)) == 2
    roots = trace(log, wanted)
    assert [len(root.children) for root in roots] == [1]
    result = run("trace", "--file", str(log), wanted)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("wrong", ["", "logs/telemetry.json", "telemetry.json"])
def test_trace_still_refuses_a_path_or_nothing_where_the_id_belongs(
    tmp_path: Path, wrong: str
) -> None:
    log = tmp_path / "telemetry.json"
    log.write_text(json.dumps([make_entry(1)]), encoding="utf-8")
    with pytest.raises(ValueError, match="trace's id"):
        trace(log, wrong)
    assert run("trace", "--file", str(log), wrong).returncode == 2


@pytest.mark.parametrize("key", ["skill", "caller", "status", "error_message", "trace_id"])
def test_the_report_bounds_every_text_it_embeds(tmp_path: Path, key: str) -> None:
    """A megabyte of text in one entry reaches the page at most MAX_TEXT at a time."""
    log = tmp_path / "telemetry.json"
    huge = "é" + "x" * 1_000_000
    entry = make_entry(5, **{key: huge})  # entry 5 is a failure: its error is shown
    log.write_text(json.dumps([entry, make_entry(1)]), encoding="utf-8")
    chosen = make_filters(trace_id=huge) if key == "trace_id" else None
    page = render_report(log, filters=chosen)
    assert "x" * (MAX_TEXT + 1) not in page
    marker = truncation_suffix(len(huge) - MAX_TEXT)  # HTML or JSON escapes its brackets
    assert marker.removeprefix("...<").removesuffix(">") in page
    assert len(page) < 128 * MAX_TEXT  # a bounded text, repeated where the charts show it


def test_a_non_finite_duration_shows_as_written_and_stays_out_of_the_figures(
    tmp_path: Path,
) -> None:
    log = tmp_path / "telemetry.json"
    durations = ["NaN", "Infinity", str(10**400), "5"]
    lines = [
        json.dumps(make_entry(1, skill="s"))[:-1] + f', "duration_ms": {d}}}' for d in durations
    ]
    log.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    (group,) = stats(log).values()
    assert (group.count, group.durations, group.max, group.mean) == (4, 1, 5.0, 5.0)
    table = run("query", "--file", str(log), "--format", "table")
    assert table.returncode == 0
    assert "NaN" in table.stdout
    assert "Infinity" in table.stdout
    assert "duration_ms is not a number" in table.stderr
    assert query(log, min_duration_ms=0) == [e for e in query(log) if e["duration_ms"] == 5]
