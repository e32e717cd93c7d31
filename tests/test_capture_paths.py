"""The two paths of a capture write the same entry: the span path (TelemetryCapture.capture
through the SDK, taken when something besides the file receives spans) and the direct
path (`betty_otel._direct`, taken otherwise: no SDK). Only the entry's own ids and
timestamp may differ; parent, redaction, validation and messages never do."""

from __future__ import annotations

import itertools
import json
import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel import TelemetryCapture
from betty_otel._direct import spans_wanted, write_directly
from betty_otel._entry import STATUSES
from betty_otel._environment import traces_exporters
from betty_otel._manual import manual_execution
from betty_otel._store import TelemetryStore
from cli_helpers import run_main
from collector import free_port
from helpers import read_entries
from hostile import HOSTILE

OWN = ("timestamp", "trace_id", "span_id")
"""What each path makes for itself; the rest of the entry must be equal."""

PARENT = f"00-{'0af7651916cd43dd8448eb211c80319c'}-{'b7ad6b7169203331'}-01"
HEX = frozenset(string.hexdigits.lower())


def same_but_own_ids(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert list(first) == list(second)
    assert {k: v for k, v in first.items() if k not in OWN} == {
        k: v for k, v in second.items() if k not in OWN
    }
    for entry in (first, second):
        for key, digits in (("trace_id", 32), ("span_id", 16)):
            assert len(entry[key]) == digits
            assert set(entry[key]) <= HEX
            assert int(entry[key], 16) != 0


# ---------------------------------------------------------------------------
# In one process: both paths on the same arguments
# ---------------------------------------------------------------------------

SECRETS = ("password", "api_key", "Authorization", "token", "name")
hostile_text = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(["\x1b[31mred", "\ud800lone", "a\nb\x00", "ghp_" + "a1" * 18, " x "]),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
mapping = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(SECRETS) | st.text(max_size=8), json_value, max_size=4),
    st.sampled_from(sorted(HOSTILE)).map(lambda name: {"value": HOSTILE[name]()}),
    st.builds(HOSTILE["bad-mapping"]),
)
capture_args = st.fixed_dictionaries(
    {
        "skill": hostile_text.filter(str.strip),
        "status": st.sampled_from(STATUSES),
        "duration_ms": st.floats(0, 1e9) | st.integers(0, 10**9),
        "caller": hostile_text.filter(str.strip),
        "inputs": mapping,
        "error_message": st.none() | hostile_text | st.just("x" * 100_000),
        "metadata": mapping,
    }
)
counter = itertools.count()


@pytest.mark.parametrize(
    "env",
    [{}, {"TRACEPARENT": PARENT}, {"TRACEPARENT": PARENT, "OTEL_SDK_DISABLED": "true"}],
    ids=["no-parent", "traceparent", "disabled"],
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=capture_args)
def test_both_paths_write_the_same_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: dict[str, Any]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    number = next(counter)
    span_file, direct_file = tmp_path / f"span-{number}.json", tmp_path / f"direct-{number}.json"
    outcomes: list[dict[str, Any] | str] = []
    writes: list[Callable[[], dict[str, Any]]] = [
        lambda: TelemetryCapture(span_file).capture(**args),
        lambda: write_directly(TelemetryStore(direct_file), manual_execution(**args)),
    ]
    for write in writes:
        try:
            outcomes.append(write())
        except (TypeError, ValueError) as exc:  # e.g. a lone surrogate in skill: not UTF-8
            outcomes.append(f"{type(exc).__name__}: {exc}")
    by_span, direct = outcomes
    if isinstance(by_span, str) or isinstance(direct, str):
        assert by_span == direct  # the same exception and message
        assert not span_file.exists()
        assert not direct_file.exists()
        return
    same_but_own_ids(by_span, direct)
    assert read_entries(span_file) == [by_span]
    assert read_entries(direct_file) == [direct]
    if env == {"TRACEPARENT": PARENT}:
        assert by_span["trace_id"] == direct["trace_id"] == PARENT[3:35]
        assert direct["parent_span_id"] == PARENT[36:52]
    else:
        assert direct["parent_span_id"] is None


@pytest.mark.parametrize(
    "args",
    [
        ("a", "bogus", 1, "CLI"),
        ("a", "failed", 1, "CLI"),
        ("", "success", 1, "CLI"),
        ("a", "success", 1, " "),
        (None, "success", 1, "CLI"),
        ("a", "success", -1, "CLI"),
        ("a", "success", float("nan"), "CLI"),
        ("a", "success", True, "CLI"),
        ("a", "success", 10**400, "CLI"),
        ("a", "success", 1e300, "CLI"),
        ("a", "success", 1, "CLI", [1]),
        ("a", "success", 1, "CLI", None, 3),
        ("a", "success", 1, "CLI", None, None, "meta"),
        ("a", "success", 1, "CLI", None, None, HOSTILE["hostile"]()),
    ],
)
def test_both_paths_reject_the_same_arguments_alike(tmp_path: Path, args: tuple[Any, ...]) -> None:
    with pytest.raises((ValueError, TypeError)) as by_span:
        TelemetryCapture(tmp_path / "span.json").capture(*args)
    with pytest.raises((ValueError, TypeError)) as direct:
        manual_execution(*args)
    assert type(by_span.value) is type(direct.value)
    assert str(by_span.value) == str(direct.value)
    assert not (tmp_path / "span.json").exists()


# ---------------------------------------------------------------------------
# The environment: which path, which parent, which ids
# ---------------------------------------------------------------------------

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none, zipkin"}, False),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, False),
        ({"OTEL_TRACES_EXPORTER": " None ", **ENDPOINT}, False),
        ({"OTEL_TRACES_EXPORTER": ",", **ENDPOINT}, False),
        ({"OTEL_TRACES_EXPORTER": "  ", **ENDPOINT}, True),
        ({"OTEL_SDK_DISABLED": "true", **ENDPOINT}, False),
        ({"BETTY_TELEMETRY_DISABLED": "1", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "10"}, True),
        ({"OTEL_ATTRIBUTE_COUNT_LIMIT": "2", "OTEL_SDK_DISABLED": "true"}, True),
        ({"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}, True),
        ({"OTEL_PYTHON_ID_GENERATOR": "xray"}, True),
        ({"OTEL_SERVICE_NAME": "x", "TRACEPARENT": PARENT}, False),
    ],
)
def test_a_span_is_made_only_when_something_would_receive_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], wanted: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert spans_wanted() is wanted
    # Never the direct path where the pipeline would send spans anywhere but the file.
    disabled = {"OTEL_SDK_DISABLED", "BETTY_TELEMETRY_DISABLED"} & set(env)
    if traces_exporters() and not disabled:
        assert wanted


# ---------------------------------------------------------------------------
# The command line: both paths, same output, same file, same errors
# ---------------------------------------------------------------------------

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACE"))}


def span_path_env() -> dict[str, str]:
    """OTLP configured, the collector down: the span path (its exit budget bounds the wait)."""
    return {**CLEAN_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}


CLI_CASES = [
    ["plugin.build", "success", "320", "CLI"],
    [
        "\x1b]0;title\x07skill",
        "timeout",
        "0.0000001",
        "caller\u202e",
        '{"password": "hunter2", "n": 1e400, "deep": [[[[{"token": "abc"}]]]]}',
        "boom AKIAIOSFODNN7EXAMPLE\r\nline2",
        "--metadata",
        '{"user": "\\ud800", "big": 123456789012345678901234567890, "k": null}',
    ],
]


@pytest.mark.parametrize("args", CLI_CASES, ids=["plain", "hostile"])
@pytest.mark.parametrize("traceparent", [None, PARENT])
def test_cli_paths_print_and_write_the_same_entry(
    tmp_path: Path, args: list[str], traceparent: str | None
) -> None:
    parent = {} if traceparent is None else {"TRACEPARENT": traceparent}
    results = {}
    for name, env in (("direct", CLEAN_ENV), ("span", span_path_env())):
        path = tmp_path / f"{name}.json"
        result, heavy = run_main(["capture", *args, "--file", str(path)], {**env, **parent})
        assert result.returncode == 0, result.stderr
        assert bool(heavy) is (name == "span")  # the two paths really ran
        text, _, last = result.stdout.rstrip("\n").rpartition("\n")
        assert last == f"✓ Telemetry captured to {path}"
        results[name] = json.loads(text)
        assert read_entries(path) == [results[name]]
    same_but_own_ids(results["direct"], results["span"])
    if traceparent is not None:
        assert results["direct"]["trace_id"] == results["span"]["trace_id"] == PARENT[3:35]


ERROR_CASES = [
    ["a", "success", "1", "CLI", "{bad"],
    ["a", "bogus", "1", "CLI"],
    ["a", "success", "nan", "CLI"],
    ["a", "success", "1e999", "CLI"],
    ["a", "success", "1e300", "CLI"],
    ["a", "success", "1", "CLI", "[1, 2]"],
    ["a", "success", "1", "CLI", "{}", "x", "--metadata", "{"],
    ["a", "success", "1", "CLI", '{"a": ' * 5_000],
    ["", "success", "1", "CLI"],
    ["a", "success", "1", " "],
]


@pytest.mark.parametrize("args", ERROR_CASES)
def test_cli_paths_fail_alike(tmp_path: Path, args: list[str]) -> None:
    """Same exit status, same message, nothing written, on either path."""
    outcomes = []
    for name, env in (("direct", CLEAN_ENV), ("span", span_path_env())):
        path = tmp_path / f"{name}.json"
        result, _ = run_main(["capture", *args, "--file", str(path)], env)
        outcomes.append((result.returncode, result.stdout, result.stderr))
        assert not path.exists()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 1
    assert outcomes[0][2].startswith("Error: ")


def test_warnings_on_the_direct_path_are_printed_by_the_cli(tmp_path: Path) -> None:
    """The direct path imports logging only when it logs; the CLI's handler is in place
    before the first message: its prefix, one line each, controls escaped."""
    path = tmp_path / "bad\x1b[2Jname.json"
    path.write_text("not a JSON array")
    env = {**CLEAN_ENV, "OTEL_TRACES_EXPORTER": "zipkin"}
    result, heavy = run_main(["capture", "a", "success", "1", "CLI", "--file", str(path)], env)
    assert result.returncode == 0, result.stderr
    assert heavy == []  # the direct path ran
    unknown, moved = result.stderr.splitlines()
    assert unknown == (
        "betty-telemetry: WARNING: betty_otel: OTEL_TRACES_EXPORTER='zipkin': ignoring"
        " 'zipkin' (betty_otel supports otlp, console, none)"
    )
    assert moved.startswith(f"betty-telemetry: WARNING: {tmp_path}/bad\\u001b[2Jname.json is not")
    assert "moved it aside" in moved
    assert "\x1b" not in result.stderr
    assert read_entries(path)[0]["skill"] == "a"
