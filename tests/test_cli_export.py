"""``betty-telemetry export --otlp`` against a real collector (rotel-agent).

The entries of a file, ours and the old tools', arrive as spans with their
original times, ids, parent links, statuses and betty.* attributes.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import LEGACY_FILE, run, write
from collector import ReceivedSpan, RotelCollector, free_port

pytestmark = pytest.mark.collector

TRACE = "5b8efff798038103d269b633813fc60c"


def end_ns(entry: dict[str, Any]) -> int:
    """The entry's timestamp in nanoseconds since the epoch, exactly (microseconds)."""
    moment = datetime.fromisoformat(entry["timestamp"])
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def ours() -> list[dict[str, Any]]:
    """A workflow with two steps (one failed), a timeout elsewhere, odd values."""

    def entry(stamp: str, skill: str, span: str, parent: str | None, **more: Any) -> dict[str, Any]:
        value: dict[str, Any] = {
            "timestamp": f"2025-10-24T14:30:{stamp}+00:00",
            "skill": skill,
            "status": "success",
            "duration_ms": 1234.567,
            "caller": "workflow.compose",
            "inputs": {"path": "skills/x.yaml", "nested": {"list": [1, "two", None]}},
            "error_message": None,
            "metadata": {"attempt": 1},
            "trace_id": TRACE,
            "span_id": span,
            "parent_span_id": parent,
        }
        value.update(more)
        return value

    return [
        entry("41.000001", "step.fetch", "1111111111111111", "aaaaaaaaaaaaaaaa"),
        entry(
            "44.500000",
            "step.parse",
            "2222222222222222",
            "aaaaaaaaaaaaaaaa",
            status="failure",
            error_message="ValueError: bad document",
            duration_ms=12,
        ),
        entry(
            "45.123456",
            "workflow.compose",
            "aaaaaaaaaaaaaaaa",
            None,
            caller="CLI",
            duration_ms=5000.25,
            inputs={},
            metadata={},
        ),
        entry(
            "50.000000",
            "api.validate",
            "3333333333333333",
            None,
            trace_id="0123456789abcdef0123456789abcdef",
            status="timeout",
            error_message="Timed out after 30s",
            caller="API",
        ),
    ]


@pytest.fixture
def ours_file(tmp_path: Path) -> Path:
    return write(tmp_path / "telemetry.json", ours())


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    found = {span.span_id: span for span in spans}
    assert len(found) == len(spans), "span ids are unique"
    return found


def assert_span(span: ReceivedSpan, entry: dict[str, Any]) -> None:
    """The span says what the entry says."""
    assert span.name == entry["skill"]
    assert span.kind == "Internal"
    assert span.end_time_ns == end_ns(entry)
    assert span.duration_ns == round(entry["duration_ms"] * 1_000_000)
    assert span.attributes["betty.skill"] == entry["skill"]
    assert span.attributes["betty.status"] == entry["status"]
    assert span.attributes["betty.caller"] == entry["caller"]
    for key in ("inputs", "metadata"):
        if entry.get(key):
            assert span.attribute_types[f"betty.{key}"] == "Str"
            assert json.loads(str(span.attributes[f"betty.{key}"])) == entry[key]
        else:
            assert f"betty.{key}" not in span.attributes
    if entry.get("error_message") is not None:
        assert span.attributes["betty.error_message"] == entry["error_message"]
    else:
        assert "betty.error_message" not in span.attributes
    if entry["status"] in ("failure", "error", "timeout"):
        assert (span.status_code, span.status_message) == ("Error", entry["error_message"])
    else:
        assert span.status_code == "Unset"
    assert span.scope_name == "betty_otel"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_export_our_entries(
    ours_file: Path, rotel_collector: RotelCollector, protocol: str
) -> None:
    endpoint = (
        rotel_collector.grpc_endpoint if protocol == "grpc" else rotel_collector.http_endpoint
    )
    result = run(
        "export",
        "--otlp",
        "--endpoint",
        endpoint,
        "--protocol",
        protocol,
        "--service-name",
        "betty-test",
        "--file",
        str(ours_file),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Exported 4 spans from {ours_file} to {endpoint}")
    spans = by_id(rotel_collector.spans(expect=4))
    assert len(spans) == 4
    for entry in ours():
        span = spans[entry["span_id"]]
        assert span.trace_id == entry["trace_id"]
        assert span.parent_span_id == entry["parent_span_id"]
        assert span.resource_attributes["service.name"] == "betty-test"
        assert_span(span, entry)


def test_export_filters(ours_file: Path, rotel_collector: RotelCollector) -> None:
    result = run(
        "export",
        "--otlp",
        "--endpoint",
        rotel_collector.http_traces_endpoint,  # the full URL works too
        "--status",
        "failure",
        "--status",
        "timeout",
        "--file",
        str(ours_file),
    )
    assert result.returncode == 0, result.stderr
    spans = rotel_collector.spans(expect=2)
    assert sorted(span.name for span in spans) == ["api.validate", "step.parse"]


def test_export_the_legacy_file(tmp_path: Path, rotel_collector: RotelCollector) -> None:
    """Old entries without ids get stable generated ids, each its own trace."""
    path = tmp_path / "legacy.json"
    shutil.copyfile(LEGACY_FILE, path)
    entries = json.loads(path.read_text(encoding="utf-8"))
    assert all("trace_id" not in entry for entry in entries)
    result = run(
        "export",
        "--otlp",
        "--endpoint",
        rotel_collector.http_endpoint,
        "--batch-size",
        "50",
        "--file",
        str(path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Exported 225 spans")
    spans = rotel_collector.spans(expect=225, timeout=60)
    assert len(spans) == 225
    assert len({span.span_id for span in spans}) == 225
    assert len({span.trace_id for span in spans}) == 225
    # Same order as the file (oldest first), batch after batch.
    for span, entry in zip(spans, entries, strict=True):
        assert span.parent_span_id is None
        assert len(span.trace_id) == 32
        assert len(span.span_id) == 16
        assert span.name == entry["skill"]
        assert span.end_time_ns == end_ns(entry)
        assert span.duration_ns == round(entry["duration_ms"] * 1_000_000)
        # The old word "failed" is a failure (issue 10): canonical status, an ERROR span.
        failed = entry["status"] in ("failure", "failed")
        assert span.attributes["betty.status"] == ("failure" if failed else entry["status"])
        assert span.attributes["betty.caller"] == entry["caller"]
        if entry.get("inputs"):
            assert json.loads(str(span.attributes["betty.inputs"])) == entry["inputs"]
        assert span.status_code == ("Error" if failed else "Unset")
    assert path.read_bytes() == LEGACY_FILE.read_bytes()


def test_generated_ids_are_stable(tmp_path: Path) -> None:
    """Exporting the same old file twice gives the same ids (a backend can deduplicate)."""
    path = tmp_path / "legacy.json"
    shutil.copyfile(LEGACY_FILE, path)
    seen = []
    for _ in range(2):
        with RotelCollector() as collector:
            result = run(
                "export", "--otlp", "--endpoint", collector.http_endpoint, "--file", str(path)
            )
            assert result.returncode == 0, result.stderr
            seen.append([(s.trace_id, s.span_id) for s in collector.spans(expect=225, timeout=60)])
    assert seen[0] == seen[1]


def test_export_unreachable_collector_fails(ours_file: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = run(
        "export", "--otlp", "--endpoint", endpoint, "--timeout", "2", "--file", str(ours_file)
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: the collector at {endpoint} rejected the spans")
    assert "exported 0" in result.stderr


class _Rejecting(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(400)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def rejecting() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_export_rejected_fails(ours_file: Path, rejecting: str) -> None:
    result = run("export", "--otlp", "--endpoint", rejecting, "--file", str(ours_file))
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: the collector at {rejecting} rejected the spans")


def test_export_missing_file(tmp_path: Path) -> None:
    result = run("export", "--otlp", "--file", str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
