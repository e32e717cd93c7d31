"""Old Betty logs through the CLI and export: legacy status words and keys keep their meaning.

The real registry/telemetry.json of a Betty repository (225 entries: 22 ``"failed"``, 3
``"failure"``, error text under ``"error"``, ``exit_code``, ``execution_id``, ...):

- tables (query, tail, stats, trace) show the canonical status and the word the file
  holds where it differs (``failure (failed)``), the old ``error`` text in the error
  column, a non-zero ``exit_code`` where there is no error text; an unknown word is
  shown as itself; JSON output keeps each entry exactly as the file holds it;
- ``export --otlp`` makes every failure an ERROR span with its error text, the canonical
  ``betty.status``, the old word as ``betty.legacy.status``, ``betty.exit_code``,
  ``betty.execution_id`` and ``betty.legacy.<key>`` for every other key, sanitized.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import StatusCode

from betty_otel._replay import entry_to_span
from cli_helpers import LEGACY_FILE, run
from collector import RotelCollector

TRACE = "0af7651916cd43dd8448eb211c80319c"
FAILURES = 25  # 22 "failed" + 3 "failure" in the fixture


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.json"
    shutil.copyfile(LEGACY_FILE, path)
    return path


def legacy_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(LEGACY_FILE.read_text(encoding="utf-8"))
    return entries


def failures() -> list[dict[str, Any]]:
    return [entry for entry in legacy_entries() if entry["status"] in ("failed", "failure")]


def test_the_fixture_is_the_real_log_this_file_describes() -> None:
    assert Counter(entry["status"] for entry in legacy_entries()) == Counter(
        {"success": 200, "failed": 22, "failure": 3}
    )


def test_query_table_shows_old_failures_as_failures_with_their_error_text(legacy: Path) -> None:
    result = run("query", "--limit", "all", "--format", "table", "--file", str(legacy))
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[2:]
    assert len(rows) == 225
    assert sum("failure (failed)" in row for row in rows) == 22
    assert sum("failure " in row and "(failed)" not in row for row in rows) == 3
    assert sum("Path does not exist: nonexistent" in row for row in rows) == 10
    assert sum("Exited with code 1" in row for row in rows) == 7
    # test.failure has only an exit code: the error column says so
    (row,) = [row for row in rows if "test.failure" in row]
    assert row.rstrip().endswith("exit code 1")


def test_json_output_keeps_every_entry_exactly_as_the_file_holds_it(legacy: Path) -> None:
    result = run("query", "--limit", "all", "--format", "json", "--file", str(legacy))
    assert result.returncode == 0, result.stderr
    newest_first = json.loads(result.stdout)
    assert sorted(newest_first, key=lambda e: e["timestamp"]) == sorted(
        legacy_entries(), key=lambda e: e["timestamp"]
    )
    assert legacy.read_bytes() == LEGACY_FILE.read_bytes()


def test_stats_table_names_the_old_word_beside_the_canonical_status(legacy: Path) -> None:
    result = run("stats", "--format", "table", "--file", str(legacy))
    assert result.returncode == 0, result.stderr
    (compose,) = [
        line for line in result.stdout.splitlines() if line.startswith("workflow.compose")
    ]
    assert "failure (failed) 12" in compose


def test_stats_json_counts_every_old_failure_as_a_failure(legacy: Path) -> None:
    result = run("stats", "--format", "json", "--file", str(legacy))
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)
    assert sum(group["failures"] for group in groups) == FAILURES
    (compose,) = [group for group in groups if group["key"] == "workflow.compose"]
    assert compose["failures"] == 12
    assert compose["failure_rate"] > 0


def test_query_status_failure_finds_every_old_failure(legacy: Path) -> None:
    result = run(
        "query", "--status", "failure", "--limit", "all", "--format", "json", "--file", str(legacy)
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found) == FAILURES
    assert Counter(entry["status"] for entry in found) == Counter({"failed": 22, "failure": 3})


def _old_tool_trace(path: Path) -> Path:
    """A workflow and its step as Betty's other telemetry module writes them, with ids."""
    common = {"trace_id": TRACE, "inputs": {}, "caller": "cli"}
    entries = [
        {
            **common,
            "timestamp": "2025-10-25T20:29:43.467849+00:00",
            "skill": "workflow.compose",
            "status": "FAILED",
            "duration_ms": 364,
            "span_id": "b7ad6b7169203331",
            "execution_id": "af2db97b-7379-46ed-b543-b7cdb0750b3e",
            "error": "Path does not exist: nonexistent_skill.yaml",
        },
        {
            **common,
            "timestamp": "2025-10-25T20:29:43.351678+00:00",
            "skill": "skill.define",
            "status": "crashed-ish",
            "duration_ms": 126,
            "span_id": "00f067aa0ba902b7",
            "parent_span_id": "b7ad6b7169203331",
            "exit_code": 3,
        },
    ]
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return path


def test_trace_shows_the_old_words_errors_exit_codes_and_execution_ids(tmp_path: Path) -> None:
    path = _old_tool_trace(tmp_path / "telemetry.json")
    result = run("trace", TRACE, "--file", str(path))
    assert result.returncode == 0, result.stderr
    root, child = result.stdout.splitlines()
    assert root.startswith("workflow.compose  failure (FAILED)  364.0 ms  caller=cli")
    assert "execution=af2db97b-7379-46ed-b543-b7cdb0750b3e" in root
    assert root.endswith("error=Path does not exist: nonexistent_skill.yaml")
    # an unknown word is shown as itself, never as success
    assert child.startswith("└── skill.define  crashed-ish  126.0 ms")
    assert child.endswith("error=exit code 3")


def test_tail_shows_the_canonical_status_and_the_old_error(tmp_path: Path) -> None:
    path = _old_tool_trace(tmp_path / "telemetry.json")
    result = run("tail", "-n", "5", "--format", "table", "--file", str(path))
    assert result.returncode == 0, result.stderr
    (compose,) = [line for line in result.stdout.splitlines() if "workflow.compose" in line]
    assert "failure (FAILED)" in compose
    assert compose.endswith("Path does not exist: nonexistent_skill.yaml")


RESOURCE = Resource.create({})
SCOPE = InstrumentationScope("betty_otel")


def test_export_keeps_old_keys_as_documented_attributes_sanitized() -> None:
    entry = {
        "timestamp": "2025-10-25T20:29:43.467849+00:00",
        "skill": "workflow.compose",
        "status": "Failed",
        "duration_ms": 364,
        "caller": "cli",
        "execution_id": "af2db97b-7379-46ed-b543-b7cdb0750b3e",
        "exit_code": 1,
        "error": "boom: Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789",
        "api_key": "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "steps": {"total": 2, "failed": 1},
        "workflow": "temp_fail_fast.yaml",
    }
    span = entry_to_span(entry, RESOURCE, SCOPE)
    assert span is not None
    attributes = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["betty.status"] == "failure"
    assert attributes["betty.legacy.status"] == "Failed"
    assert attributes["betty.exit_code"] == 1
    assert attributes["betty.execution_id"] == entry["execution_id"]
    assert attributes["betty.legacy.workflow"] == "temp_fail_fast.yaml"
    assert json.loads(str(attributes["betty.legacy.steps"])) == {"total": 2, "failed": 1}
    assert attributes["betty.legacy.api_key"] == "***REDACTED***"
    error = str(attributes["betty.error_message"])
    assert error.startswith("boom: ")
    assert "abcdefghijklmnopqrstuvwxyz" not in error
    assert span.status.description == error
    assert "betty.legacy.error" not in attributes  # it is the error text


def test_export_keeps_an_error_key_beside_an_error_message() -> None:
    entry = {
        "timestamp": "2025-10-25T20:29:43.467849+00:00",
        "skill": "s",
        "status": "error",
        "error_message": "the message",
        "error": "the old text",
    }
    span = entry_to_span(entry, RESOURCE, SCOPE)
    assert span is not None
    attributes = dict(span.attributes or {})
    assert attributes["betty.error_message"] == "the message"
    assert attributes["betty.legacy.error"] == "the old text"
    assert "betty.legacy.status" not in attributes  # the word is the canonical status


@pytest.mark.collector
def test_export_sends_every_old_failure_as_an_error_span_with_its_message(
    legacy: Path, rotel_collector: RotelCollector
) -> None:
    result = run(
        "export", "--otlp", "--endpoint", rotel_collector.http_endpoint, "--file", str(legacy)
    )
    assert result.returncode == 0, result.stderr
    spans = rotel_collector.spans(expect=225, timeout=60)
    errors = [span for span in spans if span.status_code == "Error"]
    assert len(errors) == FAILURES
    assert {span.attributes["betty.status"] for span in errors} == {"failure"}
    assert Counter(span.attributes.get("betty.legacy.status") for span in errors) == Counter(
        {"failed": 22, None: 3}
    )
    expected = Counter(entry.get("error_message") or entry.get("error") for entry in failures())
    assert Counter(span.attributes.get("betty.error_message") for span in errors) == expected
    assert Counter(span.status_message or None for span in errors) == expected
    exit_codes = [span for span in spans if "betty.exit_code" in span.attributes]
    assert len(exit_codes) == sum("exit_code" in entry for entry in legacy_entries())
    assert all(span.attribute_types["betty.exit_code"] == "Int" for span in exit_codes)
    executions = {span.attributes.get("betty.execution_id") for span in spans}
    assert {entry["execution_id"] for entry in legacy_entries() if "execution_id" in entry} <= (
        executions
    )
    assert all(span.status_code == "Unset" for span in spans if span not in errors)
