"""Deep and damaged traces: `trace`, ``betty-telemetry trace`` and the report's waterfall.

A chain of 100,000 nested calls is read, printed in every format and drawn without
recursion, in output linear in the number of executions; links that cannot form a
tree (cycles, self-parents, parents not in the log, shared span ids) are broken and
noted. Also the call forms of `trace`: the log first, as every reader takes it, the
id alone, the order of earlier versions, and wrong calls failing loudly.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from betty_otel import TelemetryCapture
from betty_otel._report.charts import WATERFALL_ROWS, waterfall
from betty_otel.query import TraceNode, trace
from cli_helpers import run
from helpers import canonical, make_entry

TRACE = "ab" * 16
DEEP = 100_000
START = datetime(2025, 10, 24, tzinfo=timezone.utc)
FORMATS = ("tree", "json", "jsonl")
LOW_RECURSION_LIMIT = 200
"""Far below the depths read here: any recursion over the tree's depth would fail."""


def span_id(number: int) -> str:
    return f"{number + 1:016x}"


def execution(number: int, parent: object, **extra: Any) -> dict[str, Any]:
    """Execution number of TRACE: it starts 1 ms after the previous one, lasting 0.5 ms."""
    end = START + timedelta(milliseconds=number, microseconds=500)
    fields = {"span_id": span_id(number), "parent_span_id": parent, **extra}
    return make_entry(
        number,
        timestamp=end.isoformat(timespec="microseconds"),
        duration_ms=0.5,
        trace_id=TRACE,
        **fields,
    )


def chain(length: int) -> list[dict[str, Any]]:
    """A call chain: each execution the child of the one before, recorded innermost first."""
    entries = [execution(n, span_id(n - 1) if n else None) for n in range(length)]
    entries.reverse()  # a child ends, and is written, before its parent
    return entries


def write_log(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_bytes(canonical(entries))
    return path


@pytest.fixture(scope="module")
def deep_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_log(tmp_path_factory.mktemp("deep") / "telemetry.json", chain(DEEP))


def run_cli_with_low_recursion_limit(*args: str) -> subprocess.CompletedProcess[str]:
    """betty-telemetry's main() in a fresh interpreter whose recursion limit is 200."""
    code = (
        "import sys\n"
        "from betty_otel.cli.app import main\n"
        f"sys.setrecursionlimit({LOW_RECURSION_LIMIT})\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


# ---------------------------------------------------------------------------
# Reading the output back without recursion
# ---------------------------------------------------------------------------

_SPACE = re.compile(r"\s*")


def _expect(text: str, pos: int, token: str) -> int:
    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    assert text.startswith(token, pos), (token, text[pos : pos + 80])
    return pos + len(token)


def nested_nodes(text: str) -> list[tuple[int, Any, Any]]:
    """(depth, entry, note) of every node of ``trace --format json`` output, in document
    order, parsed without recursion (json.loads stops at about 1,000 levels): a strict
    reader of ``[{"entry": ..., "note"?: ..., "children": [...]}, ...]``."""
    decoder = json.JSONDecoder()
    found: list[tuple[int, Any, Any]] = []
    pos = _expect(text, 0, "[")
    depth, item_next = 0, True  # just after "[": a node or "]" comes next
    while True:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if text[pos] == "]":  # the end of a children list, or of the whole
            pos += 1
            if depth == 0:
                break
            depth -= 1
            pos, item_next = _expect(text, pos, "}"), False
            continue
        if not item_next:
            pos = _expect(text, pos, ",")
        pos = _expect(text, _expect(text, _expect(text, pos, "{"), '"entry"'), ":")
        entry, pos = decoder.raw_decode(text, _SPACE.match(text, pos).end())  # type: ignore[union-attr]
        pos, note = _expect(text, pos, ","), None
        if text.startswith('"note"', _SPACE.match(text, pos).end()):  # type: ignore[union-attr]
            pos = _expect(text, _expect(text, pos, '"note"'), ":")
            note, pos = decoder.raw_decode(text, _SPACE.match(text, pos).end())  # type: ignore[union-attr]
            pos = _expect(text, pos, ",")
        pos = _expect(text, _expect(text, _expect(text, pos, '"children"'), ":"), "[")
        found.append((depth, entry, note))
        depth, item_next = depth + 1, True
    assert text[pos:].strip() == "", "text after the JSON value"
    return found


def walked(roots: list[TraceNode]) -> Iterator[tuple[int, TraceNode]]:
    for root in roots:
        yield from root.walk()


def nested(nodes: list[TraceNode]) -> list[dict[str, Any]]:
    """The JSON shape of a (shallow) tree, built the obvious, recursive way."""
    shaped: list[dict[str, Any]] = []
    for node in nodes:
        item: dict[str, Any] = {"entry": node.entry}
        if node.note is not None:
            item["note"] = node.note
        item["children"] = nested(node.children)
        shaped.append(item)
    return shaped


# ---------------------------------------------------------------------------
# 100,000 levels
# ---------------------------------------------------------------------------


def test_query_trace_reads_a_chain_of_100000_calls(deep_log: Path) -> None:
    """One root; each execution the only child of the one before; nothing noted; the
    nodes print, and walk in order, without recursion (pytest's limit is 1,000)."""
    (root,) = trace(deep_log, TRACE)
    depths = [(depth, node.span_id, node.note) for depth, node in root.walk()]
    assert depths == [(n, span_id(n), None) for n in range(DEEP)]
    assert repr(root) == (f"TraceNode(skill='workflow.step0', span_id='{span_id(0)}', children=1)")
    assert TelemetryCapture(deep_log).trace(TRACE)[0].entry == root.entry


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_prints_a_chain_of_100000_calls_in_every_format(deep_log: Path, fmt: str) -> None:
    """Every format prints all 100,000 executions in depth order, with a recursion limit of
    200, and no line grows with depth (the tree says ``[depth N]`` past 16 levels)."""
    result = run_cli_with_low_recursion_limit(
        "trace", TRACE, "--file", str(deep_log), "--format", fmt
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) < 400
    if fmt == "tree":
        assert len(lines) == DEEP
        assert lines[0].startswith("workflow.step0  failure  0.5 ms  caller=CLI")
        assert lines[1].startswith(
            f"└── workflow.step1  success  0.5 ms  caller=CLI  span={span_id(1)}"
        )
        assert lines[15].startswith(f"{' ' * 56}└── workflow.step1  failure")
        for depth in (16, 17, 5000, DEEP - 1):
            assert lines[depth].startswith(f"{' ' * 60}└── [depth {depth:,}] workflow.step")
            assert f"span={span_id(depth)}" in lines[depth]
        return
    if fmt == "jsonl":
        printed = [(item["depth"], item["entry"]) for item in map(json.loads, lines)]
    else:
        printed = [(depth, entry) for depth, entry, _ in nested_nodes(result.stdout)]
    assert [depth for depth, _ in printed] == list(range(DEEP))
    assert [entry["span_id"] for _, entry in printed] == [span_id(n) for n in range(DEEP)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_output_grows_linearly_with_the_depth(tmp_path: Path, fmt: str) -> None:
    """Twice the depth, about twice the output (an indentation growing with depth would
    make it four times): chains of 2,000 and 4,000, both far past the indentation cap."""
    sizes = []
    for length in (2000, 4000):
        log = write_log(tmp_path / f"chain-{length}.json", chain(length))
        result = run("trace", TRACE, "--file", str(log), "--format", fmt)
        assert result.returncode == 0, result.stderr
        sizes.append(len(result.stdout.encode()))
    assert 1.9 < sizes[1] / sizes[0] < 2.1, sizes


def test_report_of_a_chain_of_100000_calls_draws_its_first_200(
    deep_log: Path, tmp_path: Path
) -> None:
    """The report is written, with a recursion limit of 200 past plotly's import; its
    waterfall has 200 bars (the first, depth first) and its title says how many there are."""
    page = tmp_path / "report.html"
    code = (
        "import sys\n"
        "import betty_otel\n"
        "from betty_otel._report import charts\n"
        f"sys.setrecursionlimit({LOW_RECURSION_LIMIT})\n"
        f"betty_otel.report({str(deep_log)!r}, {str(page)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = page.read_text(encoding="utf-8")
    assert f"Trace {TRACE}: 200 of 100,000 executions shown (depth first)" in html
    figure = waterfall(TRACE, trace(deep_log, TRACE))
    (bars,) = figure["data"]
    assert len(bars["y"]) == WATERFALL_ROWS == 200
    labels = figure["layout"]["yaxis"]["ticktext"]
    assert labels[199] == f"{'  ' * 16}└ [depth 199] workflow.step3"
    assert list(bars["base"]) == pytest.approx(list(range(200)), abs=1e-3)  # ms since the root


# ---------------------------------------------------------------------------
# Links that cannot form a tree
# ---------------------------------------------------------------------------


def test_a_cycle_is_broken_at_its_earliest_execution_and_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """a -> b -> a: a (the earlier) becomes the root, b its child; what hangs from the cycle
    stays under its parent; one warning names the damage."""
    hanging = execution(0, span_id(1))  # starts first, under a
    a = execution(1, span_id(2))
    b = execution(2, span_id(1))
    log = write_log(tmp_path / "t.json", [b, hanging, a])
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        (root,) = trace(log, TRACE)
    assert root.entry == a
    assert [child.entry for child in root.children] == [hanging, b]
    assert root.note == f"cycle: its parent {span_id(2)} descends from it (2 in the cycle)"
    assert [node.note for node in root.children] == [None, None]
    assert [record.getMessage() for record in caplog.records] == [
        f"trace {TRACE}: broken links in the log (1 cycle); each is noted on its execution"
    ]


def test_a_ring_of_100000_executions_is_one_chain(tmp_path: Path) -> None:
    """A cycle through every execution of a deep trace: no root at all in the file. It is
    broken once, at the earliest, which leaves a chain 100,000 deep."""
    entries = [execution(n, span_id((n - 1) % DEEP)) for n in range(DEEP)]
    log = write_log(tmp_path / "t.json", entries)
    (root,) = trace(log, TRACE)
    assert root.note is not None
    assert root.note.startswith(f"cycle: its parent {span_id(DEEP - 1)} descends from it")
    assert [(depth, node.span_id) for depth, node in root.walk()] == [
        (n, span_id(n)) for n in range(DEEP)
    ]


def test_self_parents_orphans_and_shared_span_ids_are_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = execution(0, None)
    shared = execution(1, None, span_id=span_id(0))  # the same span id as first
    child = execution(2, span_id(0))
    selfish = execution(3, span_id(3))
    orphan = execution(4, "f" * 16)
    odd = execution(5, 12345)
    log = write_log(tmp_path / "t.json", [odd, orphan, selfish, child, shared, first])
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        roots = trace(log, TRACE)
    assert [(node.entry, node.note) for node in roots] == [
        (first, None),
        (
            shared,
            f"duplicate span id: {span_id(0)} is also an earlier execution's;"
            " its children are there",
        ),
        (selfish, "self-parent: its parent_span_id is its own span_id"),
        (orphan, f"orphan: its parent {'f' * 16} is not in the log"),
        (odd, "orphan: parent_span_id 12345 is not a span id"),
    ]
    assert [node.entry for node in roots[0].children] == [child]
    (record,) = caplog.records  # a parent outside the log is normal (a remote caller)
    assert "(1 self-parent, 1 duplicate span id)" in record.getMessage()


def test_a_sound_trace_has_no_notes_and_logs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = write_log(tmp_path / "t.json", [*chain(50), execution(60, "f" * 16)])
    with caplog.at_level(logging.DEBUG, logger="betty_otel"):
        roots = trace(log, TRACE)
    assert [node.note for _, node in walked(roots)] == [None] * 50 + [
        f"orphan: its parent {'f' * 16} is not in the log"
    ]
    assert caplog.records == []


links = st.lists(
    st.tuples(
        st.integers(0, 7),  # span id number (shared ids happen)
        st.one_of(st.none(), st.just(""), st.integers(0, 9), st.just(12345)),  # parent
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(links=links)
def test_any_links_make_a_forest_holding_every_execution_once(
    tmp_path_factory: pytest.TempPathFactory, links: list[tuple[int, Any]]
) -> None:
    """Whatever the links (cycles, self-parents, shared ids, missing and odd parents): every
    execution is in the forest exactly once; every child names its parent's span id; and
    a root that names a parent is noted, with the reason."""
    entries = [
        execution(n, span_id(parent) if isinstance(parent, int) and parent < 10 else parent)
        | {"span_id": span_id(span)}
        for n, (span, parent) in enumerate(links)
    ]
    log = write_log(tmp_path_factory.mktemp("links") / "t.json", entries)
    roots = trace(log, TRACE) if entries else []
    nodes = [node for _, node in walked(roots)]
    assert sorted(node.entry["timestamp"] for node in nodes) == [
        entry["timestamp"] for entry in entries
    ]
    assert len({id(node) for node in nodes}) == len(entries)
    for node in nodes:
        for child in node.children:
            assert child.entry["parent_span_id"] == node.span_id
    for root in roots:
        if root.entry["parent_span_id"] not in (None, ""):
            assert root.note is not None
            assert re.search(r"(^|; )(cycle|self-parent|orphan):", root.note), root.note


def test_the_cli_marks_broken_links_in_every_format_and_says_so_on_stderr(
    tmp_path: Path,
) -> None:
    a = execution(0, span_id(1))
    b = execution(1, span_id(0))
    log = write_log(tmp_path / "t.json", [a, b])
    note = f"cycle: its parent {span_id(1)} descends from it (2 in the cycle)"
    for fmt in FORMATS:
        result = run("trace", TRACE, "--file", str(log), "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert result.stderr == (
            f"betty-telemetry: WARNING: trace {TRACE}: broken links in the log (1 cycle);"
            " each is noted on its execution\n"
        )
        if fmt == "tree":
            assert result.stdout.splitlines()[0].endswith(f"  [{note}]")
        elif fmt == "jsonl":
            assert json.loads(result.stdout.splitlines()[0])["note"] == note
        else:
            assert json.loads(result.stdout)[0]["note"] == note


def test_shallow_json_is_laid_out_as_before(tmp_path: Path) -> None:
    """Up to the indentation cap, --format json is exactly the indented JSON of the nested
    tree that earlier versions printed (with "note" where a link is broken)."""
    entries = [*chain(12), execution(20, span_id(3)), execution(30, "f" * 16)]
    entries[0]["inputs"] = {"nested": {"list": [1, {"x": []}]}, "empty": {}}
    log = write_log(tmp_path / "t.json", entries)
    result = run("trace", TRACE, "--file", str(log), "--format", "json")
    expected = orjson.dumps(nested(trace(log, TRACE)), option=orjson.OPT_INDENT_2).decode()
    assert result.stdout == expected + "\n"


# ---------------------------------------------------------------------------
# How trace is called
# ---------------------------------------------------------------------------


def test_trace_takes_the_log_first_like_every_reader_and_the_old_forms_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = write_log(tmp_path / "telemetry.json", chain(3))
    expected = [node.entry for _, node in walked(trace(log, TRACE))]
    assert len(expected) == 3
    calls: list[Callable[[], list[TraceNode]]] = [
        lambda: trace(str(log), TRACE),
        lambda: trace(TRACE, log),  # the order of earlier versions
        lambda: trace(TRACE, telemetry_file=log),
        lambda: trace(log, trace_id=TRACE),
        lambda: trace(telemetry_file=log, trace_id=TRACE),
        lambda: trace(None, TRACE, telemetry_file=log),
        lambda: TelemetryCapture(log).trace(TRACE),
    ]
    for call in calls:
        assert [node.entry for _, node in walked(call())] == expected
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(log))
    assert [node.entry for _, node in walked(trace(TRACE))] == expected  # the README's form
    assert trace(log, "cd" * 16) == []  # a well-formed id that is not in the log


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda log: trace(str(log)), ValueError, "looks like a path: the log comes first"),
        (trace, TypeError, "got PosixPath"),
        (lambda log: trace(log, "logs/telemetry.json"), ValueError, "looks like a path"),
        (lambda log: trace(log, ""), ValueError, "32 hex digits for W3C"),
        (lambda log: trace(log, TRACE.encode()), TypeError, "got bytes"),  # type: ignore[arg-type]
        (lambda _log: trace(), TypeError, "needs a trace id"),
        (lambda log: trace(log, TRACE, log), TypeError, "at most 2"),
        (lambda _log: trace(TRACE, TRACE), ValueError, "two trace ids"),
        (lambda log: trace(log, TRACE, telemetry_file=log), TypeError, "the log twice"),
        (lambda log: trace(log, TRACE, trace_id=TRACE), TypeError, "the trace id twice"),
        (lambda log: TelemetryCapture(log).trace("x.json"), ValueError, "32 hex digits"),
        (lambda log: TelemetryCapture(log).trace(log), TypeError, "got PosixPath"),
        # A trace id where the log goes: never read as the log's name.
        (lambda _log: trace(TRACE, trace_id=TRACE), TypeError, "reads as a trace id"),
        (lambda _log: trace(TRACE, trace_id="cd" * 16), TypeError, "reads as a trace id"),
        (lambda _log: trace(TRACE, "abc123"), TypeError, "reads as a trace id"),
        (lambda _log: trace("ab" * 15, TRACE), TypeError, "reads as a trace id"),
        (lambda log: trace(str(log), str(log)), ValueError, "32 hex digits"),
        (lambda log: trace(TRACE, log, telemetry_file=log), TypeError, "the log twice"),
        (lambda log: trace(log, trace_id=TRACE, telemetry_file=log), TypeError, "the log twice"),
        (lambda log: trace(trace_id=TRACE, telemetry_file=log, path=log), TypeError, "path"),
    ],
)
def test_a_wrong_call_fails_loudly_instead_of_returning_nothing(
    tmp_path: Path, call: Any, error: type[Exception], message: str
) -> None:
    log = write_log(tmp_path / "telemetry.json", chain(3))
    with pytest.raises(error, match=re.escape(message)):
        call(log)


def test_the_cli_refuses_a_trace_id_that_is_not_one(tmp_path: Path) -> None:
    """trace()'s own check, as a usage error (exit 2), before the log is looked for;
    a trace id that is one, in a log that is not there, is a failed command (exit 1)."""
    log = write_log(tmp_path / "telemetry.json", chain(3))
    missing = str(tmp_path / "missing.json")
    for value, file in ((str(log), str(log)), ("", missing)):
        result = run("trace", value, "--file", file)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.splitlines()[-1] == (
            "betty-telemetry: error: trace_id must be a trace's id (32 hex digits for W3C), "
            f"got {value!r}"
        )
    result = run("trace", TRACE, "--file", missing)
    assert result.returncode == 1
    assert result.stderr == f"Error: {missing} does not exist (check the --file path)\n"


def test_the_waterfall_marks_broken_links(tmp_path: Path) -> None:
    """A broken link is flagged ⚠ on the row and its note is in the hover text."""
    log = write_log(tmp_path / "t.json", [execution(0, span_id(1)), execution(1, span_id(0))])
    figure = waterfall(TRACE, trace(log, TRACE))
    (bars,) = figure["data"]
    assert list(figure["layout"]["yaxis"]["ticktext"]) == [
        "workflow.step0 ⚠",
        "  └ workflow.step1",
    ]
    assert bars["hovertext"][0].endswith(
        f"<br>note: cycle: its parent {span_id(1)} descends from it (2 in the cycle)"
    )
    assert figure["layout"]["title"]["text"] == f"Trace {TRACE}"
