"""``stats --format openmetrics``: the log's durations as the live metric's histogram.

The text is parsed with prometheus_client's strict OpenMetrics parser and checked
against `stats` and the entries themselves: the same series names, labels and buckets
as the live metric (compared with a live scrape of the same executions), the whole log
with its rotated files, filters, bounded label values, and entries of any shape.
"""

from __future__ import annotations

import bisect
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import betty_otel
from betty_otel import TelemetryCapture
from betty_otel._metrics.conventions import BUCKETS
from betty_otel._store import TelemetryStore
from betty_otel.query import openmetrics, stats
from cli_helpers import LEGACY_FILE, run, write
from collector import free_port
from helpers import make_entry
from test_metrics_export import scrape

NAME = "betty_execution_duration_seconds"
LABELS = ("betty_skill", "betty_status", "betty_caller")


def parse(text: str) -> list[Sample]:
    """The histogram's samples; the parser fails on anything that is not OpenMetrics."""
    families = list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call]
    assert [(f.name, f.type, f.unit) for f in families] == [(NAME, "histogram", "seconds")]
    samples: list[Sample] = families[0].samples
    return samples


def counts(samples: list[Sample]) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels[label] for label in LABELS): s.value
        for s in samples
        if s.name == f"{NAME}_count"
    }


def test_the_cli_prints_valid_openmetrics_that_agrees_with_stats(tmp_path: Path) -> None:
    """On a real Betty registry file: counts per skill and status equal stats', sums equal
    count x mean, and every bucket holds the entries whose durations reach its bound."""
    result = run("stats", "--format", "openmetrics", "--file", str(LEGACY_FILE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("# EOF\n")
    samples = parse(result.stdout)
    per_skill: Counter[str] = Counter()
    sums: dict[str, float] = {}
    for sample in samples:
        if sample.name == f"{NAME}_count":
            per_skill[sample.labels["betty_skill"]] += int(sample.value)
        elif sample.name == f"{NAME}_sum":
            skill = sample.labels["betty_skill"]
            sums[skill] = sums.get(skill, 0.0) + sample.value
    by_skill = stats(LEGACY_FILE)
    assert dict(per_skill) == {skill: group.count for skill, group in by_skill.items()}
    for key, group in by_skill.items():
        assert key is not None
        assert group.mean is not None
        assert sums[key] == pytest.approx(group.mean * group.count / 1000)
    by_status = stats(LEGACY_FILE, by="status")
    statuses: Counter[str] = Counter()
    for (_, status, _), value in counts(samples).items():
        statuses[status] += int(value)
    assert dict(statuses) == {status: group.count for status, group in by_status.items()}


def _expected_buckets(durations_ms: list[float]) -> list[int]:
    """Cumulative counts per bound (le), computed from the entries directly."""
    per_bucket = [0] * (len(BUCKETS) + 1)
    for duration in durations_ms:
        per_bucket[bisect.bisect_left(BUCKETS, duration / 1000)] += 1
    return [sum(per_bucket[: index + 1]) for index in range(len(per_bucket))]


def test_buckets_count_each_entry_at_its_bound_over_the_whole_rotated_log(tmp_path: Path) -> None:
    """Durations on the bounds themselves count in that bucket (le); the rotated backups
    are read with the current file."""
    path = tmp_path / "telemetry.json"
    durations = [bound * 1000 for bound in BUCKETS] + [0, 1, 7_200_000, 4.9, 5.1]
    store = TelemetryStore(path, max_bytes=2_000, backups=50)
    for number, duration in enumerate(durations):
        store.append(
            [make_entry(number, skill="rotated.skill", status="success", duration_ms=duration)]
        )
    store.close()
    assert len(list(tmp_path.glob("telemetry.json.*"))) > 1
    samples = parse(openmetrics(path))
    buckets = [s.value for s in samples if s.name == f"{NAME}_bucket"]
    assert buckets == _expected_buckets(durations)
    assert [s.labels["le"] for s in samples if s.name == f"{NAME}_bucket"][-1] == "+Inf"
    assert counts(samples) == {("rotated.skill", "success", "CLI"): len(durations)}


def test_the_file_has_the_live_metrics_names_labels_and_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same captures, scraped live from the Prometheus endpoint and read from the
    file: the same series, label values, bucket bounds and counts."""
    port = free_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path)
    capture = TelemetryCapture(path)
    for number in range(30):
        status = ("success", "failure", "timeout")[number % 3]
        capture.capture(f"same.{number % 4}", status, number * 97.5, ("CLI", "ci")[number % 2])
    live = [s for s in scrape(port)[NAME] if s.name != f"{NAME}_created"]
    betty_otel.shutdown()
    from_file = parse(openmetrics(path))

    def series(samples: list[Sample]) -> dict[tuple[Any, ...], float]:
        return {
            (
                s.name,
                *(s.labels[label] for label in LABELS),
                s.labels.get("le"),
            ): s.value
            for s in samples
        }

    assert series(from_file) == pytest.approx(series(live))
    file_labels = {frozenset(s.labels) - {"le"} for s in from_file}
    assert file_labels == {frozenset(LABELS)}


def test_filters_select_the_entries_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "telemetry.json", [make_entry(number) for number in range(40)])
    result = run(
        "stats", "--format", "openmetrics", "--status", "failure", "--skill", "workflow.step0",
        "--file", str(path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = [
        e for e in (make_entry(n) for n in range(40))
        if e["status"] == "failure" and e["skill"] == "workflow.step0"
    ]  # fmt: skip
    assert counts(parse(result.stdout)) == {("workflow.step0", "failure", "CLI"): len(expected)}


def test_skills_and_callers_beyond_the_bound_are_counted_as_other_with_one_warning(
    tmp_path: Path,
) -> None:
    """The most frequent keep their series; nothing is lost from the totals."""
    entries = [
        make_entry(number, skill=f"s{number % 5}", caller=f"c{number % 4}")
        for number in range(100)
        if number % 5 < 3 or number % 3 == 0
    ]
    path = write(tmp_path / "telemetry.json", entries)
    env = dict(os.environ, BETTY_TELEMETRY_METRICS_MAX_SERIES="2")
    result = run("stats", "--format", "openmetrics", "--file", str(path), env=env)
    assert result.returncode == 0, result.stderr
    found = counts(parse(result.stdout))
    skills = Counter(entry["skill"] for entry in entries)
    kept = {skill for skill, _ in sorted(skills.items(), key=lambda i: (-i[1], i[0]))[:2]}
    assert {skill for skill, _, _ in found} == kept | {"other"}
    assert len({caller for _, _, caller in found}) == 3
    assert sum(found.values()) == len(entries)
    assert result.stderr.count("WARNING") == 1, result.stderr
    assert "other" in result.stderr


HOSTILE: list[dict[str, Any]] = [
    {"skill": 'quote" back\\slash\nnewline', "duration_ms": 1.0},
    {"skill": "\x1b[31mred\u202e\x00", "duration_ms": 2.0, "caller": "line\u2028sep"},
    {"skill": 42, "status": ["odd"], "caller": {"k": None}, "duration_ms": 3},
    {"skill": None, "duration_ms": 5},
    {"duration_ms": 10**400},
    {"skill": "x", "duration_ms": -1},
    {"skill": "x", "duration_ms": "12"},
    {"skill": "x", "duration_ms": True},
    {"skill": "x"},
    {"skill": "x", "status": "Timed out", "duration_ms": 1e308},
    {"skill": "x", "status": "Timed out", "duration_ms": 1e308},
]


def test_entries_of_any_shape_never_stop_the_output(tmp_path: Path) -> None:
    """Odd values become label text (unprintable characters as ``\\uXXXX``), entries
    without a usable duration are left out with one warning, old words are statuses."""
    path = tmp_path / "telemetry.json"
    text = "[\n" + ",\n".join(_json(entry) for entry in HOSTILE) + "\n]\n"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = run("stats", "--format", "openmetrics", "--file", str(path))
    assert result.returncode == 0, result.stderr
    found = counts(parse(result.stdout))
    skills = {skill for skill, _, _ in found}
    assert 'quote" back\\slash\nnewline' in skills
    assert "\\u001b[31mred\\u202e\\u0000" in skills
    assert {"42", "(none)", "x"} <= skills
    assert found[("x", "timeout", "(none)")] == 2
    assert sum(found.values()) == 6
    assert "entries without a usable duration_ms left out" in result.stderr
    assert all(char.isprintable() or char == "\n" for char in result.stdout)


def _json(entry: dict[str, Any]) -> str:
    import json

    return json.dumps(entry)  # a lone surrogate as its JSON escape, as writers write it


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "skill": st.one_of(st.text(max_size=8), st.integers(), st.none()),
                "status": st.one_of(st.sampled_from(["success", "failed", "error"]), st.text()),
                "caller": st.text(max_size=8),
                "duration_ms": st.one_of(
                    st.floats(allow_nan=False), st.integers(), st.none(), st.booleans()
                ),
            },
        ),
        max_size=12,
    )
)
def test_any_entries_make_valid_openmetrics(tmp_path: Path, entries: list[dict[str, Any]]) -> None:
    path = tmp_path / "telemetry.json"
    path.write_text(
        "[\n" + ",\n".join(_json(e) for e in entries) + "\n]\n",
        encoding="utf-8",
        errors="surrogatepass",
    )
    samples = parse(openmetrics(path, max_series=3))
    usable = [
        e for e in entries
        if isinstance(e.get("duration_ms"), (int, float))
        and not isinstance(e.get("duration_ms"), bool)
        and math.isfinite(e["duration_ms"] / 1000)
        and e["duration_ms"] >= 0
    ]  # fmt: skip
    assert sum(counts(samples).values()) == len(usable)
